// Batches: chunks are decoded into a staging area, then committed as one generation.
//
// A batch arrives as one or more chunks (Table::stage), then commits (Table::commit) or is
// discarded as a whole, so a caller can stream a million-prefix load through one small
// buffer. Encoding of a chunk (built by src/fastpath/encode.ts; every field is checked here
// again, since the core is also driven by the fuzzer):
//   words: nOps, nIds, nTags, nIds x (offset, length), nTags x (offset, length), then per op
//          kind (0 upsert, 1 remove), nameOffset, nameLength, nHops, and per hop
//          idRef, weight, priority, nTags, tagRef x nTags
//   bytes: the UTF-8 of every name, id and tag the words point into
// Ids and tags are numbered per chunk. All checks and allocations happen before the first
// change, so a batch is all or nothing.
//
// A batch's first chunk is decoded as it comes; the others go to a thread of the batch's
// own, which decodes them in order while the caller encodes the next, so a bulk load takes
// about the longer of encoding and decoding rather than their sum. A batch of one chunk
// (what a controller's push sends) makes no thread. A decoding error is returned by the
// next stage() or by commit(); either way nothing is applied.
#include <algorithm>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <mutex>
#include <string_view>
#include <stdexcept>
#include <system_error>
#include <thread>
#include <unordered_map>

#include "flow_hash.hpp"
#include "table.hpp"

namespace dmsc {

struct StagedOp {
  bool remove;
  uint32_t name;  // offset into Staging::names
  uint32_t len;
  uint32_t depth;
  uint64_t hash;
  uint32_t hop_begin, nhops;
  bool tagged;  // some next hop has a tag: the entry carries tag masks
};

struct StagedHop {
  uint32_t id;  // batch-wide id ref
  uint16_t weight, prio;
  uint32_t tag_begin, ntags;  // into tag_refs
};

// Ids or tags of a batch, numbered once however many chunks name them. A bulk load
// names a few thousand ids millions of times, so this is an open-addressed index of
// (hash, ref) pairs in one array, compared by hash before bytes: std::unordered_map's
// node per key and bucket chains cost a fifth of a 1M-entry apply.
class StringSet {
 public:
  // The number of `s`, or -1 when the set does not hold it.
  int64_t find(std::string_view s) const {
    if (slots_.empty()) return -1;
    const uint32_t h = hash(s);
    for (size_t i = h & (slots_.size() - 1);; i = (i + 1) & (slots_.size() - 1)) {
      const Slot& slot = slots_[i];
      if (slot.ref == kEmpty) return -1;
      if (slot.hash == h) {
        const std::string& held = list_[slot.ref];
        if (held.size() == s.size() && same_bytes(reinterpret_cast<const uint8_t*>(held.data()),
                                                  reinterpret_cast<const uint8_t*>(s.data()),
                                                  static_cast<uint32_t>(s.size())))
          return slot.ref;
      }
    }
  }
  // Adds `s`, which the set does not hold; returns its number.
  uint32_t add(std::string_view s) {
    if (2 * (list_.size() + 1) > slots_.size()) grow();
    const uint32_t h = hash(s);
    size_t i = h & (slots_.size() - 1);
    while (slots_[i].ref != kEmpty) i = (i + 1) & (slots_.size() - 1);
    const auto ref = static_cast<uint32_t>(list_.size());
    list_.emplace_back(s);
    slots_[i] = {h, ref};
    return ref;
  }
  std::string_view at(uint32_t i) const { return list_[i]; }
  uint32_t size() const { return static_cast<uint32_t>(list_.size()); }

 private:
  static constexpr uint32_t kEmpty = UINT32_MAX;
  struct Slot {
    uint32_t hash = 0;
    uint32_t ref = kEmpty;
  };
  // Eight bytes at a time: ids and tags are short. The last word overlaps the one
  // before it (the length is hashed too), so that no copy or loop of a length that
  // varies from string to string is made.
  static uint32_t hash(std::string_view s) {
    const auto* p = reinterpret_cast<const uint8_t*>(s.data());
    const size_t n = s.size();
    const auto step = [](uint64_t h, uint64_t w) {
      h = (h ^ w) * 0xff51afd7ed558ccdULL;
      return h ^ (h >> 32);
    };
    // The length mixed in first: short strings' last words repeat their bytes, and a
    // length merely XORed in would let them cancel it ("1", "21" and "311" alike).
    uint64_t h = step(0x9E3779B97F4A7C15ULL, n);
    uint64_t last;
    if (n >= 8) {
      for (size_t i = 0; i + 8 < n; i += 8) {
        uint64_t w;
        std::memcpy(&w, p + i, 8);
        h = step(h, w);
      }
      std::memcpy(&last, p + n - 8, 8);
    } else if (n >= 4) {
      uint32_t lo, hi;
      std::memcpy(&lo, p, 4);
      std::memcpy(&hi, p + n - 4, 4);
      last = lo | static_cast<uint64_t>(hi) << 32;
    } else {
      last = n == 0 ? 0 : p[0] | static_cast<uint64_t>(p[n / 2]) << 8 | static_cast<uint64_t>(p[n - 1]) << 16;
    }
    // The full product, folded: every bit of the last word reaches the low bits the slot
    // index is taken from (a plain multiply leaves them to the word's low bytes, which ids
    // that share a prefix all have alike).
    const uint64_t f = mum(h ^ last, 0xc4ceb9fe1a85ec53ULL);
    return static_cast<uint32_t>(f ^ (f >> 32));
  }
  void grow() {
    std::vector<Slot> next(slots_.empty() ? 64 : slots_.size() * 2);
    for (const Slot& slot : slots_) {
      if (slot.ref == kEmpty) continue;
      size_t i = slot.hash & (next.size() - 1);
      while (next[i].ref != kEmpty) i = (i + 1) & (next.size() - 1);
      next[i] = slot;
    }
    slots_.swap(next);
  }
  std::deque<std::string> list_;  // a deque: interned strings never move
  std::vector<Slot> slots_;
};

// A chunk as staged: a private copy, since the caller's memory may change while it is
// read (a SharedArrayBuffer), and what is validated must be what is used.
struct Chunk {
  std::vector<uint8_t> bytes;
  std::vector<uint32_t> words;
};

struct Staging {
  // What the chunks decoded to. While the decoder thread runs, only it touches these.
  std::vector<uint8_t> names;
  StringSet ids, tags;
  std::vector<StagedOp> ops;
  std::vector<StagedHop> hops;
  std::vector<uint32_t> tag_refs;
  std::vector<uint32_t> seen;  // per id ref: last op that used it (duplicate check)
  const uint8_t* name(const StagedOp& op) const { return names.data() + op.name; }

  // The decoder thread and the chunks waiting for it. A few suffice to keep it busy, and
  // bound what a caller that encodes faster than it decodes holds in memory.
  static constexpr size_t kMaxWaiting = 4;
  uint64_t chunks = 0;
  // What the upserts' entries will take in the slab, and chunks of it the decoder thread
  // faulted in meanwhile (Slab::adopt_spare): zeroing a bulk load's fresh pages cost as
  // much as the rest of its commit.
  uint64_t entry_bytes = 0;
  uint64_t slab_unused = 0;  // what the slab had free when the batch began: used first
  std::vector<void*> spare;
  void prefault();
  std::thread decoder;
  std::mutex mu;
  std::condition_variable cv;  // a chunk came or was taken, the input ended, or it failed
  std::deque<Chunk> waiting;
  bool ended = false;    // no chunk will come: decode what waits, then stop
  bool dropped = false;  // the batch is discarded: stop now
  Status failure;        // the first chunk that failed to decode

  Status decode(Chunk&& c);
  Status enqueue(Chunk&& c);
  Status finish();
  void run();
  ~Staging() {
    if (decoder.joinable()) {
      {
        std::lock_guard<std::mutex> lock(mu);
        dropped = true;
      }
      cv.notify_all();
      decoder.join();
    }
    for (void* c : spare) free_huge(c, kHugePage);
  }
};

void StagingDeleter::operator()(Staging* s) const { delete s; }

namespace {

// Room for `n` elements, grown by half at least: std::vector::reserve and
// unordered_map::reserve take the exact size asked, so reserving "what this batch adds"
// would move the whole container on every batch (quadratic over a bulk load).
template <class Vec>
void reserve_for(Vec& v, size_t n) {
  if (n > v.capacity()) v.reserve(std::max(n, v.capacity() + v.capacity() / 2));
}
template <class Map>
void reserve_map_for(Map& m, size_t n) {
  if (static_cast<float>(n) > static_cast<float>(m.bucket_count()) * m.max_load_factor()) m.reserve(std::max(n, m.size() + m.size() / 2));
}

std::string where(size_t op) { return "ops[" + std::to_string(op) + "]"; }
std::string where(size_t op, size_t hop) {
  return where(op) + ".nextHops[" + std::to_string(hop) + "]";
}

class Reader {
 public:
  Reader(const uint32_t* w, size_t n) : w_(w), n_(n) {}
  bool next(uint32_t& v) {
    if (i_ >= n_) return false;
    v = w_[i_++];
    return true;
  }
  bool done() const { return i_ == n_; }
  size_t remaining() const { return n_ - i_; }

 private:
  const uint32_t* w_;
  size_t n_, i_ = 0;
};

Status malformed(const std::string& what) {
  return Status::Error(Code::kMalformedBatch, "malformed batch: " + what);
}

// Decodes one chunk into the staging area.
class ChunkDecoder {
 public:
  ChunkDecoder(Staging& st, const uint8_t* bytes, size_t nbytes, const uint32_t* words, size_t nwords)
      : st_(st), bytes_(bytes), nbytes_(nbytes), in_(words, nwords) {}

  Status run() {
    uint32_t nops, nids, ntags;
    if (!in_.next(nops) || !in_.next(nids) || !in_.next(ntags)) return malformed("no header");
    // Each id and tag takes two words and each op at least four: bound the counts by the
    // input before sizing anything by them.
    if (2ULL * nids + 2ULL * ntags + 4ULL * nops > in_.remaining())
      return malformed("counts exceed the words given");
    if (Status s = strings(nids, kMaxIdBytes, "a next-hop id", st_.ids, ids_); !s.ok()) return s;
    if (Status s = strings(ntags, kMaxTagBytes, "a tag", st_.tags, tags_); !s.ok()) return s;
    st_.seen.resize(st_.ids.size(), UINT32_MAX);
    for (uint32_t i = 0; i < nops; ++i)
      if (Status s = op(); !s.ok()) return s;
    if (!in_.done()) return malformed("trailing words");
    return Status::Ok();
  }

 private:
  Status strings(uint32_t count, size_t max_len, const char* what, StringSet& set,
                 std::vector<uint32_t>& refs) {
    refs.reserve(count);
    for (uint32_t i = 0; i < count; ++i) {
      uint32_t off, len;
      if (!in_.next(off) || !in_.next(len)) return malformed("truncated string table");
      if (off > nbytes_ || len > nbytes_ - off) return malformed("string out of bounds");
      const uint8_t* p = bytes_ + off;
      const std::string_view sv(reinterpret_cast<const char*>(p), len);
      // Bytes the batch already holds were checked when they first came.
      int64_t ref = set.find(sv);
      if (ref < 0) {
        if (len == 0 || len > max_len)
          return Status::Error(Code::kInvalidArgument, std::string(what) + " must be 1 to " +
                                                           std::to_string(max_len) + " bytes");
        if (!valid_utf8(p, len) || std::memchr(p, 0, len))
          return Status::Error(Code::kInvalidArgument,
                               std::string(what) + " must be UTF-8 without NUL bytes");
        ref = set.add(sv);
      }
      refs.push_back(static_cast<uint32_t>(ref));
    }
    return Status::Ok();
  }

  Status op() {
    const size_t i = st_.ops.size();
    uint32_t kind, off, len, nhops;
    if (!in_.next(kind) || !in_.next(off) || !in_.next(len) || !in_.next(nhops))
      return malformed("truncated op");
    if (kind > 1) return malformed(where(i) + " has an unknown kind");
    if (off > nbytes_ || len > nbytes_ - off) return malformed(where(i) + " name out of bounds");
    NameError ne = parse_name(bytes_ + off, len, pn_);
    if (ne != NameError::kOk)
      return Status::Error(Code::kInvalidName, where(i) + ".prefix: " + name_error_message(ne));
    if (kind == 1 && nhops != 0) return malformed(where(i) + " is a remove with next hops");
    if (kind == 0 && nhops == 0)
      return Status::Error(Code::kInvalidArgument, where(i) + ".nextHops must not be empty");
    if (nhops > kMaxNextHopsPerEntry)
      return Status::Error(Code::kLimitExceeded,
                           where(i) + " has more than 64 next hops (" + std::to_string(nhops) + ")");
    if (st_.names.size() + len > UINT32_MAX)
      return Status::Error(Code::kLimitExceeded, "a batch holds at most 4 GiB of names");
    StagedOp op{kind == 1, static_cast<uint32_t>(st_.names.size()), len, pn_.ncomp,
                pn_.hash[pn_.ncomp], static_cast<uint32_t>(st_.hops.size()), nhops, false};
    st_.names.insert(st_.names.end(), bytes_ + off, bytes_ + off + len);
    for (uint32_t h = 0; h < nhops; ++h) {
      uint32_t id, weight, prio, ntags;
      if (!in_.next(id) || !in_.next(weight) || !in_.next(prio) || !in_.next(ntags))
        return malformed("truncated hop");
      if (id >= ids_.size()) return malformed(where(i, h) + " id ref out of range");
      if (weight > 65535)
        return Status::Error(Code::kOutOfRange, where(i, h) + ".weight must be 0 to 65535");
      if (prio > 65535)
        return Status::Error(Code::kOutOfRange, where(i, h) + ".priority must be 0 to 65535");
      const uint32_t ref = ids_[id];
      if (st_.seen[ref] == i)
        return Status::Error(Code::kDuplicateNextHop,
                             where(i, h) + ": next hop '" + std::string(st_.ids.at(ref)) +
                                 "' appears twice in one entry");
      st_.seen[ref] = static_cast<uint32_t>(i);
      if (ntags > kMaxTags)
        return Status::Error(Code::kLimitExceeded, where(i, h) + " has more than 64 tags");
      StagedHop sh{ref, static_cast<uint16_t>(weight), static_cast<uint16_t>(prio),
                   static_cast<uint32_t>(st_.tag_refs.size()), ntags};
      for (uint32_t k = 0; k < ntags; ++k) {
        uint32_t tag;
        if (!in_.next(tag)) return malformed("truncated tags");
        if (tag >= tags_.size()) return malformed(where(i, h) + " tag ref out of range");
        st_.tag_refs.push_back(tags_[tag]);
      }
      op.tagged |= ntags > 0;
      st_.hops.push_back(sh);
    }
    if (!op.remove) st_.entry_bytes += Slab::block_bytes(Version::bytes_for(nhops, len, op.tagged));
    st_.ops.push_back(op);
    return Status::Ok();
  }

  Staging& st_;
  const uint8_t* bytes_;
  size_t nbytes_;
  Reader in_;
  std::vector<uint32_t> ids_, tags_;  // chunk ref -> batch ref
  ParsedName pn_;
};

}  // namespace

// Commits a staged batch as generation G+1.
class BatchApplier {
 public:
  BatchApplier(Table& t, Staging& st) : t_(t), st_(st), ops_(st.ops), hops_(st.hops), tag_refs_(st.tag_refs) {}
  Status run(bool* changed);

 private:
  void keep_last_per_name();

  Table& t_;
  Staging& st_;
  const std::vector<StagedOp>& ops_;
  const std::vector<StagedHop>& hops_;
  const std::vector<uint32_t>& tag_refs_;
  std::vector<uint32_t> survivors_;
};

// Within one batch the last operation on a name wins.
void BatchApplier::keep_last_per_name() {
  uint64_t cap = 16;
  while (cap < 2ULL * ops_.size()) cap <<= 1;
  std::vector<uint32_t> slot(cap, UINT32_MAX);
  std::vector<bool> last(ops_.size(), false);
  for (uint32_t i = 0; i < ops_.size(); ++i) {
    const StagedOp& op = ops_[i];
    uint64_t s = op.hash & (cap - 1);
    for (;; s = (s + 1) & (cap - 1)) {
      uint32_t j = slot[s];
      if (j == UINT32_MAX) {
        slot[s] = i;
        last[i] = true;
        break;
      }
      const StagedOp& o = ops_[j];
      if (o.hash == op.hash && o.len == op.len && std::memcmp(st_.name(o), st_.name(op), op.len) == 0) {
        last[j] = false;
        last[i] = true;
        slot[s] = i;
        break;
      }
    }
  }
  for (uint32_t i = 0; i < ops_.size(); ++i)
    if (last[i]) survivors_.push_back(i);
}

Status BatchApplier::run(bool* changed) {
  *changed = false;
  keep_last_per_name();
  const uint32_t nids_ = st_.ids.size(), ntags_ = st_.tags.size();

  // What changes, against the current generation.
  const SlotArray* cur = t_.array_.load(std::memory_order_relaxed);
  std::vector<uint32_t> work;
  std::vector<const Version*> relived;  // tombstones an upsert brings back
  uint64_t upserts = 0, absent = 0, old_hops = 0;
  // The index is far larger than the cache for big tables: fetch slots a few ops ahead.
  constexpr size_t kAhead = 8;
  auto prefetch_slot = [&](const SlotArray* a, size_t k, const std::vector<uint32_t>& list) {
    if (k < list.size()) __builtin_prefetch(&a->slots[ops_[list[k]].hash & a->mask]);
  };
  for (size_t k = 0; k < survivors_.size(); ++k) {
    prefetch_slot(cur, k + kAhead, survivors_);
    const uint32_t i = survivors_[k];
    const StagedOp& op = ops_[i];
    const Version* head = t_.find_head(cur, op.hash, st_.name(op), op.len);
    if (op.remove && (!head || head->nhops == 0)) continue;
    work.push_back(i);
    if (head) old_hops += head->nhops;
    if (!op.remove) {
      ++upserts;
      if (!head) ++absent;
      else if (head->nhops == 0) relived.push_back(head);
    }
  }
  if (work.empty()) return Status::Ok();

  // Tag bits: every tag the surviving upserts use must fit in the dictionary. And the
  // next-hop ids not known yet. One pass over the hops for both: a bulk load's are
  // millions, read from memory each time.
  std::vector<int> tag_bit(ntags_, -1);
  std::vector<uint32_t> new_tags;
  std::vector<uint32_t> new_ids;
  std::vector<int64_t> id_index(nids_, -1);
  for (uint32_t i : work) {
    const StagedOp& op = ops_[i];
    for (uint32_t h = op.hop_begin; h < op.hop_begin + op.nhops; ++h) {
      for (uint32_t k = 0; k < hops_[h].ntags; ++k) {
        uint32_t ref = tag_refs_[hops_[h].tag_begin + k];
        if (tag_bit[ref] >= 0) continue;
        int bit = t_.tags_.find(st_.tags.at(ref).data(), st_.tags.at(ref).size());
        if (bit < 0) {
          bit = static_cast<int>(t_.tags_.count() + new_tags.size());
          new_tags.push_back(ref);
        }
        tag_bit[ref] = bit;
      }
      uint32_t ref = hops_[h].id;
      if (id_index[ref] != -1) continue;
      auto it = t_.nhs_.by_id.find(st_.ids.at(ref));
      if (it != t_.nhs_.by_id.end()) {
        id_index[ref] = it->second;
      } else {
        id_index[ref] = -2;
        new_ids.push_back(ref);
      }
    }
  }
  if (t_.tags_.count() + new_tags.size() > kMaxTags)
    return Status::Error(Code::kLimitExceeded, "a table holds at most 64 distinct tags");
  if (new_ids.size() > t_.nhs_.available())
    return Status::Error(Code::kLimitExceeded, "the table's next-hop id space is exhausted");
  const uint64_t keys_in_use = t_.next_key_ - t_.free_keys_.size();
  if (keys_in_use + upserts > kMaxKeys)
    return Status::Error(Code::kLimitExceeded, "a table holds at most " + std::to_string(kMaxKeys) + " names");

  // Every allocation before the first change.
  std::vector<Version*> versions(work.size(), nullptr);
  std::vector<Blob*> blobs;
  auto undo = [&]() {
    for (size_t w = 0; w < work.size(); ++w)
      if (versions[w]) {
        const StagedOp& op = ops_[work[w]];
        t_.slab_.free(versions[w], Version::bytes_for(op.remove ? 0 : op.nhops, op.len, op.tagged));
      }
    for (Blob* b : blobs) std::free(b);
    return Status::Error(Code::kNoMemory, "out of memory while applying a batch");
  };
  {
    // The chunks the decoder thread faulted in, for these allocations only.
    struct Spare {
      Slab& slab;
      ~Spare() { slab.release_spare(); }
    } spare{t_.slab_};
    t_.slab_.adopt_spare(std::move(st_.spare));
    for (size_t w = 0; w < work.size(); ++w) {
      const StagedOp& op = ops_[work[w]];
      uint32_t n = op.remove ? 0 : op.nhops;
      versions[w] = static_cast<Version*>(t_.slab_.alloc(Version::bytes_for(n, op.len, op.tagged)));
      if (!versions[w] || (reinterpret_cast<uintptr_t>(versions[w]) >> 48) != 0) return undo();
    }
  }
  for (uint32_t ref : new_tags) {
    blobs.push_back(Blob::make(st_.tags.at(ref).data(), st_.tags.at(ref).size()));
    if (!blobs.back()) return undo();
  }
  for (uint32_t ref : new_ids) {
    blobs.push_back(Blob::make(st_.ids.at(ref).data(), st_.ids.at(ref).size()));
    if (!blobs.back()) return undo();
  }
  // Everything the commit section below will push or insert, reserved now: past that
  // point nothing may fail, or readers could see a half-built generation.
  std::vector<uint32_t> released;
  std::vector<std::unordered_map<std::string_view, uint32_t>::node_type> id_nodes;
  try {
    released.reserve(old_hops);
    if (!t_.nhs_.reserve(static_cast<uint32_t>(new_ids.size()))) return undo();
    reserve_map_for(t_.nhs_.by_id, t_.nhs_.by_id.size() + new_ids.size());
    std::unordered_map<std::string_view, uint32_t> fresh;
    for (size_t k = 0; k < new_ids.size(); ++k)
      fresh.emplace(blobs[new_tags.size() + k]->view(), 0);
    for (size_t k = 0; k < new_ids.size(); ++k)  // in new_ids order, for the commit below
      id_nodes.push_back(fresh.extract(blobs[new_tags.size() + k]->view()));
    reserve_for(t_.nh_base_, t_.nhs_.high_water() + new_ids.size());
    // Baselines the commit may set: of names added again, and of the key ids it will
    // reuse, taken from the back of the free list: one per absent name, and one per name
    // added again if the index grows (growing drops tombstones, so those names come
    // back under new key ids).
    for (const Version* h : relived) t_.key_base_.ensure(h->key_id);
    const uint64_t reused = std::min<uint64_t>(absent + relived.size(), t_.free_keys_.size());
    for (size_t k = 0; k < reused; ++k) t_.key_base_.ensure(t_.free_keys_[t_.free_keys_.size() - 1 - k]);
    // Superseded heads, plus the tombstoned keys a grow() drops, plus the old array.
    const uint64_t tombstoned = cur->used - t_.live_keys_.load(std::memory_order_relaxed);
    reserve_for(t_.retired_, t_.retired_.size() + work.size() + tombstoned + 2);
  } catch (const std::bad_alloc&) {
    return undo();
  }
  SlotArray* target = const_cast<SlotArray*>(cur);
  const uint64_t need = t_.live_keys_ + upserts;
  const bool too_full = (cur->used + absent) * 10 > cur->capacity() * 6;
  const bool too_sparse = cur->capacity() > 1024 && need * 16 < cur->capacity();
  if (too_full || too_sparse) {
    target = t_.grow(need);
    if (!target) return undo();
  }

  // Commit: nothing below fails.
  const uint64_t gen = t_.gen_.load(std::memory_order_relaxed) + 1;
  size_t b = 0;
  for (size_t k = 0; k < new_tags.size(); ++k) t_.tags_.add(blobs[b++]);
  for (size_t k = 0; k < new_ids.size(); ++k) {
    const uint32_t ref = new_ids[k];
    NextHopRegistry& nhs = t_.nhs_;
    uint32_t index = nhs.allocate();
    Blob* id = blobs[b++];
    nhs.set_idmix(index, id_mix(fnv1a32(reinterpret_cast<const uint8_t*>(id->bytes), id->len)));
    nhs.health(index).store(pack_health(kUp, 0), std::memory_order_relaxed);
    nhs.live_refs(index) = nhs.total_refs(index) = 0;
    nhs.id(index).store(id, std::memory_order_release);
    if (t_.nh_base_.size() <= index) t_.nh_base_.resize(index + 1, 0);  // reserved above
    t_.nh_base_[index] = t_.selections_of(index);
    t_.memory_bytes_ += sizeof(Blob) + id->len;
    id_index[ref] = index;
    id_nodes[k].mapped() = index;
    nhs.by_id.insert(std::move(id_nodes[k]));  // a pre-built node: no allocation
  }
  for (size_t w = 0; w < work.size(); ++w) {
    prefetch_slot(target, w + kAhead, work);
    const StagedOp& op = ops_[work[w]];
    Version* head = t_.find_head(target, op.hash, st_.name(op), op.len);
    Version* v = versions[w];
    v->born = gen;
    v->next.store(head, std::memory_order_relaxed);
    v->key_id = head ? head->key_id : t_.allocate_key();
    v->key_len = static_cast<uint16_t>(op.len);
    v->depth = static_cast<uint8_t>(op.depth);
    v->nhops = static_cast<uint8_t>(op.remove ? 0 : op.nhops);
    v->tagged = op.tagged;
    for (uint32_t h = 0; h < v->nhops; ++h) {
      const StagedHop& sh = hops_[op.hop_begin + h];
      uint32_t index = static_cast<uint32_t>(id_index[sh.id]);
      v->hops()[h] = Hop{index, sh.weight, sh.prio};
      if (v->tagged) {
        uint64_t mask = 0;
        for (uint32_t k = 0; k < sh.ntags; ++k)
          mask |= 1ULL << tag_bit[tag_refs_[sh.tag_begin + k]];
        v->masks()[h] = mask;
      }
      ++t_.nhs_.live_refs(index);
      ++t_.nhs_.total_refs(index);
    }
    std::memcpy(v->key(), st_.name(op), op.len);
    const bool was_live = head && head->nhops;
    if (head) {
      for (uint32_t h = 0; h < head->nhops; ++h) {
        uint32_t index = head->hops()[h].nh;
        if (--t_.nhs_.live_refs(index) == 0) released.push_back(index);
      }
      t_.replace_slot(target, op.hash, head, v);
      t_.retire({Table::Retired::kVersion, false, gen, head, v});
    } else {
      t_.insert_slot(target, op.hash, v);
    }
    if (was_live && !v->nhops) --t_.live_keys_;
    if (!was_live && v->nhops) {
      ++t_.live_keys_;
      // Per-prefix hits count from when the name was last added.
      if (head) t_.key_base_.set(v->key_id, t_.hits_of(v->key_id));
    }
  }
  // An id no entry of this generation references is forgotten (its health with it). The
  // id epoch moves too: a health handle holding the index must look the id up again, or
  // it would keep writing here after the id comes back at another index.
  bool forgot = false;
  for (uint32_t index : released) {
    if (t_.nhs_.live_refs(index) != 0) continue;
    const Blob* id = t_.nhs_.id(index).load(std::memory_order_relaxed);
    auto it = t_.nhs_.by_id.find(id->view());
    if (it != t_.nhs_.by_id.end() && it->second == index) {
      t_.nhs_.by_id.erase(it);
      forgot = true;
    }
  }
  if (forgot) t_.id_epoch.fetch_add(1, std::memory_order_release);

  if (target != cur) {
    t_.array_.store(target, std::memory_order_release);
    t_.retire({Table::Retired::kArray, false, gen, const_cast<SlotArray*>(cur), nullptr});
  }
  t_.gen_.store(gen, std::memory_order_seq_cst);
  t_.reclaim();
  *changed = true;
  return Status::Ok();
}

// Runs on the decoder thread too, where an exception would end the process.
Status Staging::decode(Chunk&& c) {
  try {
    return ChunkDecoder(*this, c.bytes.data(), c.bytes.size(), c.words.data(), c.words.size()).run();
  } catch (const std::bad_alloc&) {
    return Status::Error(Code::kNoMemory, "out of memory while staging a batch");
  } catch (const std::length_error&) {
    return Status::Error(Code::kNoMemory, "out of memory while staging a batch");
  }
}

// The decoder thread: chunks in the order they came, until the input ends or one fails.
void Staging::run() {
  for (;;) {
    Chunk c;
    {
      std::unique_lock<std::mutex> lock(mu);
      cv.wait(lock, [&] { return dropped || ended || !waiting.empty(); });
      if (dropped || waiting.empty()) return;
      c = std::move(waiting.front());
      waiting.pop_front();
    }
    cv.notify_all();  // room for the caller's next chunk
    Status s = decode(std::move(c));
    if (!s.ok()) {
      std::lock_guard<std::mutex> lock(mu);
      failure = std::move(s);
      waiting.clear();
      cv.notify_all();
      return;
    }
    prefault();
  }
}

// An estimate from above: an upsert the batch overrides, or one that leaves its entry as
// it was, takes nothing. A batch that names the same prefixes many times faults in memory
// the commit does not use; that is given back after it, and is no more than the staged
// batch itself holds meanwhile. Memory it cannot have ends the prefault, not the batch.
void Staging::prefault() {
  try {
    while (slab_unused + spare.size() * kHugePage < entry_bytes) {
      spare.reserve(spare.size() + 1);  // before the chunk is mapped: nothing leaks if it throws
      auto* c = static_cast<volatile char*>(alloc_zeroed_huge(kHugePage));
      if (!c) return;
      for (size_t i = 0; i < kHugePage; i += 4096) c[i] = 0;
      spare.push_back(const_cast<char*>(c));
    }
  } catch (const std::bad_alloc&) {
  }
}

Status Staging::enqueue(Chunk&& c) {
  if (!decoder.joinable()) {
    try {
      decoder = std::thread([this] { run(); });
    } catch (const std::system_error&) {
      return decode(std::move(c));  // no thread to be had: decode here, as for the first
    }
  }
  std::unique_lock<std::mutex> lock(mu);
  cv.wait(lock, [&] { return !failure.ok() || waiting.size() < kMaxWaiting; });
  if (!failure.ok()) return failure;
  waiting.push_back(std::move(c));
  lock.unlock();
  cv.notify_all();
  return Status::Ok();
}

// Waits for every chunk to be decoded; returns the first failure.
Status Staging::finish() {
  if (!decoder.joinable()) return Status::Ok();
  {
    std::lock_guard<std::mutex> lock(mu);
    ended = true;
  }
  cv.notify_all();
  decoder.join();
  return failure;
}

Status Table::stage(const uint8_t* bytes, size_t nbytes, const uint32_t* words, size_t nwords) {
  Status s;
  try {
    if (!staging_) {
      staging_.reset(new Staging());
      staging_->slab_unused = slab_.unused();
    }
    Chunk c{std::vector<uint8_t>(bytes, bytes + nbytes), std::vector<uint32_t>(words, words + nwords)};
    s = staging_->chunks++ == 0 ? staging_->decode(std::move(c)) : staging_->enqueue(std::move(c));
  } catch (const std::bad_alloc&) {
    s = Status::Error(Code::kNoMemory, "out of memory while staging a batch");
  }
  if (!s.ok()) staging_.reset();
  return s;
}

Status Table::commit(bool* changed) {
  *changed = false;
  if (!staging_) return Status::Ok();
  if (Status s = staging_->finish(); !s.ok()) {
    staging_.reset();
    return s;
  }
  // A commit may give a key id or a next-hop index to another name, with its count so far
  // as the new name's baseline: the owner's held hit belongs to the old one.
  settle_held(readers_[0]);
  std::unique_ptr<Staging, StagingDeleter> st = std::move(staging_);
  try {
    return BatchApplier(*this, *st).run(changed);
  } catch (const std::bad_alloc&) {  // only before the commit section: nothing changed
    return Status::Error(Code::kNoMemory, "out of memory while applying a batch");
  }
}

void Table::discard() { staging_.reset(); }

Status Table::apply(const uint8_t* bytes, size_t nbytes, const uint32_t* words, size_t nwords,
                    bool* changed) {
  discard();
  if (Status s = stage(bytes, nbytes, words, nwords); !s.ok()) return s;
  return commit(changed);
}

}  // namespace dmsc
