// The capability forwarding table: longest-prefix match on names, health-weighted choice.
//
// Concurrency model (one writer, many lock-free readers):
// - Every entry is a chain of immutable versions, newest first, each stamped with the
//   generation that created it; a removal is a tombstone version. A batch creates all its
//   versions with generation G+1 and becomes visible at once when G+1 is published.
// - A reader announces the generation it reads in its slot; a version superseded at
//   generation R is freed only once every announced generation is >= R (epoch-based
//   reclamation), so readers never take a lock and never see freed memory.
// - The index is open addressing over 8-byte words: a 16-bit fingerprint and a 48-bit
//   pointer to the chain head, replaced with one atomic store. Growing it builds a new
//   array published with the batch; the old one is reclaimed like a version.
#pragma once

#include <atomic>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "arena.hpp"
#include "name.hpp"
#include "readers.hpp"
#include "registry.hpp"
#include "status.hpp"

namespace dmsc {

struct Staging;  // batch.cpp
struct StagingDeleter {
  void operator()(Staging* s) const;
};
constexpr uint32_t kMaxNextHopsPerEntry = 64;
constexpr uint32_t kMaxKeys = CounterArray::kChunkSize * CounterArray::kChunks;

struct Hop {
  uint32_t nh;       // next-hop index in the registry
  uint16_t weight;   // 0 = drained
  uint16_t prio;     // lower is preferred
};

// An entry's version: this header, its next hops, their tag masks if any hop has a tag
// (bit i = tag i of the dictionary; most entries have none and save 8 bytes a hop), then
// the name's bytes.
struct Version {
  uint64_t born;                  // generation that created this version
  std::atomic<Version*> next;     // the version it superseded
  uint32_t key_id;                // dense id of the name, for per-prefix counters
  uint16_t key_len;
  uint8_t depth : 7;              // number of components (at most 32)
  uint8_t tagged : 1;             // tag masks follow the hops
  uint8_t nhops;                  // 0 = tombstone

  Hop* hops() { return reinterpret_cast<Hop*>(this + 1); }
  const Hop* hops() const { return reinterpret_cast<const Hop*>(this + 1); }
  uint64_t* masks() { return reinterpret_cast<uint64_t*>(hops() + nhops); }
  // The tags of hop i, as bits of the dictionary.
  uint64_t tags(uint32_t i) const { return tagged ? reinterpret_cast<const uint64_t*>(hops() + nhops)[i] : 0; }
  const uint8_t* key() const { return reinterpret_cast<const uint8_t*>(hops() + nhops) + (tagged ? nhops * sizeof(uint64_t) : 0); }
  uint8_t* key() { return reinterpret_cast<uint8_t*>(hops() + nhops) + (tagged ? nhops * sizeof(uint64_t) : 0); }
  static size_t bytes_for(uint32_t nhops, uint32_t key_len, bool tagged) {
    return sizeof(Version) + nhops * (sizeof(Hop) + (tagged ? sizeof(uint64_t) : 0)) + key_len;
  }
  size_t bytes() const { return bytes_for(nhops, key_len, tagged); }
};
static_assert(sizeof(Version) == 24, "Version header layout");
static_assert(sizeof(Hop) == 8, "Hop layout");

// A slot word: 16-bit fingerprint (the hash's top bits) | 48-bit pointer to the chain head.
constexpr uint64_t kSlotPtrMask = (1ULL << 48) - 1;

struct SlotArray {
  uint64_t valid_from;                // first generation this array serves
  uint64_t mask;                      // capacity - 1
  uint64_t used;                      // occupied slots (owner only)
  std::atomic<uint64_t> depth_mask;   // bit d: some key has d components
  std::atomic<uint64_t> slots[1];

  static SlotArray* make(uint64_t capacity, uint64_t valid_from);
  static void destroy(SlotArray* a);
  static size_t bytes_for(uint64_t capacity) {
    return sizeof(SlotArray) + (capacity - 1) * sizeof(std::atomic<uint64_t>);
  }
  uint64_t capacity() const { return mask + 1; }
};

// Counter baselines by key id, nearly all zero: a key id needs one only once it is
// reused, or its name added again, after lookups counted hits on it. Blocks are made
// ahead (ensure) by a batch before it commits, so that setting one never allocates; a
// table loaded once and never churned holds none, where a dense array cost 8 bytes or
// more per prefix.
class SparseBaselines {
 public:
  static constexpr uint32_t kBits = 12;
  uint64_t get(uint32_t id) const {
    const size_t b = id >> kBits;
    return b < blocks_.size() && blocks_[b] ? blocks_[b][id & kMask] : 0;
  }
  // May throw std::bad_alloc; the caller has not changed anything yet.
  void ensure(uint32_t id) {
    const size_t b = id >> kBits;
    if (b >= blocks_.size()) blocks_.resize(b + 1);
    if (!blocks_[b]) blocks_[b].reset(new uint64_t[kMask + 1]());
  }
  // `id` was ensured, or `v` is 0 where no block is.
  void set(uint32_t id, uint64_t v) {
    const size_t b = id >> kBits;
    if (b < blocks_.size() && blocks_[b]) blocks_[b][id & kMask] = v;
  }
  size_t bytes() const {
    size_t n = blocks_.capacity() * sizeof(blocks_[0]);
    for (const auto& b : blocks_) n += b ? (kMask + 1) * sizeof(uint64_t) : 0;
    return n;
  }

 private:
  static constexpr uint32_t kMask = (1u << kBits) - 1;
  std::vector<std::unique_ptr<uint64_t[]>> blocks_;
};

struct Query {
  uint64_t need = 0;       // required tag bits
  bool unsatisfiable = false;  // a required tag the table has never seen
  bool has_flow = false;
  uint32_t flow = 0;
};

struct LookupResult {
  int32_t nh = -1;               // next-hop index, -1: no route
  uint64_t id_epoch = 0;         // Table::id_epoch within the lookup's read section
  uint32_t key_id = 0;           // dense id of the matched prefix
  uint32_t prefix_len = 0;       // bytes of the matched prefix
  bool ascii = false;            // the name is ASCII: its bytes are its UTF-16 units
  bool failover = false;
};

// Result codes written by lookup_packed.
constexpr int32_t kNoRoute = -1;
constexpr int32_t kBadName = -2;

struct PrefixHits {
  std::string prefix;
  uint64_t hits;
  const std::string& name() const { return prefix; }
};
struct NextHopSelections {
  std::string id;
  uint64_t selections;
  const std::string& name() const { return id; }
};

struct HopView {
  std::string id;
  uint16_t weight, prio;
  std::vector<std::string> tags;
  uint32_t state, loadq;
};
struct EntryView {
  std::string prefix;
  std::vector<HopView> hops;
};

struct Stats {
  uint64_t lookups = 0, misses = 0, failovers = 0, invalid = 0;
  uint64_t size = 0, generation = 0, next_hops = 0, tags = 0, counter_bytes = 0;
  uint64_t memory_bytes = 0;  // held: the index, ids, and the entry slab as reserved
  uint64_t used_bytes = 0;    // of which in use
  uint64_t pending_reclaim = 0, readers = 0;
  std::vector<PrefixHits> prefix_hits;            // non-zero only, most hit first
  std::vector<NextHopSelections> nh_selections;   // non-zero only, most selected first
};

class Table {
 public:
  Table();
  ~Table();
  Table(const Table&) = delete;
  Table& operator=(const Table&) = delete;

  // ---- Owner thread ----
  // Applies an encoded batch (see batch.cpp) all-or-nothing. *changed is false when the
  // batch changed nothing (removes of absent names only); the generation then stays.
  Status apply(const uint8_t* bytes, size_t nbytes, const uint32_t* words, size_t nwords,
               bool* changed);
  // The same in pieces: stage chunks, then commit them as one batch (or discard them). A
  // chunk that fails to decode discards everything staged.
  Status stage(const uint8_t* bytes, size_t nbytes, const uint32_t* words, size_t nwords);
  Status commit(bool* changed);
  void discard();
  // state: -1 keeps it; loadq: -1 keeps it. False for an id no entry references.
  bool set_health(const uint8_t* id, size_t len, int state, int loadq);
  // The next-hop index of an id an entry references, or -1. Its health word is
  // health_word(index) until id_epoch moves.
  int64_t index_of(const uint8_t* id, size_t len) const;
  // Owner thread: the health words of next hops [c, c + 1) * NextHopRegistry::kChunkSize,
  // which never move while the table lives; null for a chunk not made yet.
  std::atomic<uint32_t>* health_chunk(uint32_t c) const { return nhs_.health_chunk(c); }
  // Any thread: a next hop a lookup returned (its index, and the id epoch of that
  // lookup) is down, unless its index was given to another since. Heartbeats bring it
  // back through set_health.
  bool mark_down(uint32_t index, uint64_t epoch);
  Stats stats(size_t top);  // also frees what no reader can see any more
  std::vector<EntryView> entries() const;  // the current generation, in index order
  // The first `limit` entries in byte order of their names among those equal to `under`
  // or below it (`under` empty: all), in no order, without making views of the others:
  // listing part of a table of millions costs the matches, not the table.
  std::vector<EntryView> entries_under(std::string_view under, size_t limit) const;
  uint64_t size() const { return live_keys_.load(std::memory_order_relaxed); }
  ReaderSlot& owner_slot() { return readers_[0]; }

  // ---- Any thread ----
  uint64_t generation() const { return gen_.load(std::memory_order_acquire); }
  // Readers now inside a lookup of a generation older than `gen`. Once it is 0 after
  // `gen` was published, every reader (worker views, the relay) sees `gen` or later.
  uint32_t readers_behind(uint64_t gen) const {
    uint32_t n = 0;
    for (uint32_t i = 1; i < kMaxReaders; ++i) {
      uint64_t a = readers_[i].announced.load(std::memory_order_seq_cst);
      if (a != kIdle && a < gen) ++n;
    }
    return n;
  }
  int tag_bit(const void* p, size_t n) const { return tags_.find(p, n); }
  uint32_t tag_count() const { return tags_.count(); }
  // Copies the id of a next-hop index: empty when the index is free, or when `epoch` is
  // given and an index was recycled since (the handle is stale).
  static constexpr uint64_t kAnyEpoch = UINT64_MAX;
  std::string next_hop_id(ReaderSlot& rs, bool owner, uint32_t index, uint64_t epoch = kAnyEpoch);
  LookupResult lookup(ReaderSlot& rs, bool owner, const uint8_t* name, size_t len,
                      const Query& q, NameError* err);
  // Looks up n names of one packed buffer in one snapshot. out[i]: next-hop index,
  // kNoRoute or kBadName. Offsets are validated before any lookup.
  // Returns, in *epoch, id_epoch as it was within the read section.
  Status lookup_packed(ReaderSlot& rs, bool owner, const uint8_t* bytes, size_t nbytes,
                       const uint32_t* offsets, size_t n, int32_t* out, const Query& q,
                       const uint32_t* flows, uint64_t* epoch = nullptr);
  ReaderSlot* acquire_reader();
  void release_reader(ReaderSlot* rs);

  std::atomic<bool> closed{false};
  // Bumped when a next-hop index is recycled or its id forgotten: a handle or index taken
  // at one epoch still names the same id while the epoch is unchanged.
  std::atomic<uint64_t> id_epoch{0};

 private:
  // Owner thread: counts the hit the owner's slot holds (see ReaderSlot::held).
  static void settle_held(ReaderSlot& rs) {
    if (!rs.held) return;
    rs.held = false;
    rs.prefix_hits.bump(rs.held_key);
    rs.nh_selections.bump(rs.held_nh);
  }
  struct Retired {
    enum Kind : uint8_t { kVersion, kArray, kBlob } kind;
    bool drop_key;           // version: the key leaves the table with it
    uint64_t gen;            // safe to free once every reader announces >= gen
    void* ptr;
    Version* newer;          // version: the one that superseded it (to unlink)
  };
  struct Snapshot { const SlotArray* array; uint64_t gen; };
  // Holds a read section open for its scope, whatever leaves it (a throw included).
  class ReadGuard {
   public:
    ReadGuard(Table& t, ReaderSlot& rs, bool owner) : rs_(rs), owner_(owner), snap_(t.begin_read(rs, owner)) {}
    ~ReadGuard() { end_read(rs_, owner_); }
    ReadGuard(const ReadGuard&) = delete;
    ReadGuard& operator=(const ReadGuard&) = delete;
    const Snapshot& snapshot() const { return snap_; }

   private:
    ReaderSlot& rs_;
    bool owner_;
    Snapshot snap_;
  };

  Snapshot begin_read(ReaderSlot& rs, bool owner);
  static void end_read(ReaderSlot& rs, bool owner);
  // Longest-prefix match from depth `top` down; `hint`: the head at `top`, if a probe
  // already found it (checked again here, as a fingerprint match only).
  bool resolve(const SlotArray* a, uint64_t snap, const uint8_t* name, const ParsedName& pn,
               const Query& q, ReaderSlot& rs, LookupResult& out, int top, const Version* hint);
  int select(const Version* v, const Query& q, ReaderSlot& rs, bool& failover) const;

  static Version* find_head(const SlotArray* a, uint64_t hash, const uint8_t* name, uint32_t len);
  EntryView view_of(const Version& v) const;
  // Calls f(const Version&) for the head of every live entry of the current index.
  template <typename F>
  void for_each_live(F&& f) const {
    const SlotArray* a = array_.load(std::memory_order_relaxed);
    for (uint64_t i = 0; i <= a->mask; ++i) {
      uint64_t w = a->slots[i].load(std::memory_order_relaxed);
      if (!w) continue;
      auto* v = reinterpret_cast<const Version*>(w & kSlotPtrMask);
      if (v->nhops) f(*v);
    }
  }
  SlotArray* grow(uint64_t need);
  void insert_slot(SlotArray* a, uint64_t hash, Version* v);
  void replace_slot(SlotArray* a, uint64_t hash, const Version* old_head, Version* v);
  void retire(Retired r);
  void reclaim();
  void free_version(Version* v, bool drop_key);
  void unref_hop(uint32_t nh);
  uint32_t allocate_key();
  // Counts summed over every reader slot, since the table began (baselines not taken off).
  uint64_t hits_of(uint32_t key_id) const;
  uint64_t selections_of(uint32_t index) const;

  std::atomic<uint64_t> gen_{0};
  std::atomic<uint64_t> live_keys_{0};  // written by the owner, read by views
  std::atomic<SlotArray*> array_{nullptr};
  ReaderSlot readers_[kMaxReaders];
  NextHopRegistry nhs_;
  TagDictionary tags_;
  Slab slab_;  // versions

  // Owner-thread state.
  uint64_t memory_bytes_ = 0;
  std::vector<Retired> retired_;     // in generation order
  size_t retired_head_ = 0;
  std::vector<uint32_t> free_keys_;
  uint32_t next_key_ = 0;
  SparseBaselines key_base_;         // counter baselines of recycled key ids
  std::vector<uint64_t> nh_base_;    // counter baselines of recycled next-hop indexes

  std::unique_ptr<Staging, StagingDeleter> staging_;

  friend class BatchApplier;
};

// Key comparison inlined for the short keys names are (a libc call costs more).
// Word at a time, the last word overlapping the one before it: no loop over a tail of
// 0-7 bytes, whose length varies from name to name and so mispredicts.
inline bool same_bytes(const uint8_t* a, const uint8_t* b, uint32_t n) {
  const auto word = [](const uint8_t* p) {
    uint64_t w;
    std::memcpy(&w, p, 8);
    return w;
  };
  if (n >= 8) {
    uint64_t diff = word(a + n - 8) ^ word(b + n - 8);
    for (uint32_t i = 0; i + 8 < n; i += 8) diff |= word(a + i) ^ word(b + i);
    return diff == 0;
  }
  if (n >= 4) {
    uint32_t x0, y0, x1, y1;
    std::memcpy(&x0, a, 4);
    std::memcpy(&y0, b, 4);
    std::memcpy(&x1, a + n - 4, 4);
    std::memcpy(&y1, b + n - 4, 4);
    return ((x0 ^ y0) | (x1 ^ y1)) == 0;
  }
  for (uint32_t i = 0; i < n; ++i)
    if (a[i] != b[i]) return false;
  return true;
}

// Probes the index for a name; the hot loop of every lookup, so it lives in the header.
inline Version* Table::find_head(const SlotArray* a, uint64_t hash, const uint8_t* name,
                                 uint32_t len) {
  const uint64_t mask = a->mask;
  const uint64_t fp = hash & ~kSlotPtrMask;
  for (uint64_t i = hash & mask;; i = (i + 1) & mask) {
    uint64_t w = a->slots[i].load(std::memory_order_acquire);
    if (w == 0) return nullptr;
    if ((w & ~kSlotPtrMask) == fp) {
      auto* v = reinterpret_cast<Version*>(w & kSlotPtrMask);
      if (v->key_len == len && same_bytes(v->key(), name, len)) return v;
    }
  }
}

}  // namespace dmsc
