// Owner-side machinery of the table: the index, reclamation, health and statistics.
// Batches are decoded and committed in batch.cpp; the read path is in lookup.cpp.
#include "table.hpp"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <new>

#include "flow_hash.hpp"

namespace dmsc {
namespace {


inline uint64_t slot_word(uint64_t hash, const Version* v) {
  return (hash & ~kSlotPtrMask) | reinterpret_cast<uintptr_t>(v);
}

uint64_t capacity_for(uint64_t keys) {
  uint64_t cap = 16;
  while (cap / 2 < keys) cap <<= 1;
  return cap;
}

}  // namespace

SlotArray* SlotArray::make(uint64_t capacity, uint64_t valid_from) {
  void* mem = alloc_zeroed_huge(bytes_for(capacity));
  if (!mem) return nullptr;
  auto* a = static_cast<SlotArray*>(mem);
  a->valid_from = valid_from;
  a->mask = capacity - 1;
  a->used = 0;
  return a;
}

void SlotArray::destroy(SlotArray* a) { free_huge(a, bytes_for(a->capacity())); }

Table::Table() {
  SlotArray* a = SlotArray::make(16, 0);
  if (!a) throw std::bad_alloc();
  memory_bytes_ += SlotArray::bytes_for(16);
  array_.store(a, std::memory_order_release);
  readers_[0].in_use.store(true, std::memory_order_relaxed);
  (void)log2_table();
}

Table::~Table() {
  staging_.reset();
  // Versions live in the slab, which goes with the table.
  for (size_t i = retired_head_; i < retired_.size(); ++i) {
    const Retired& r = retired_[i];
    if (r.kind == Retired::kArray) SlotArray::destroy(static_cast<SlotArray*>(r.ptr));
    else if (r.kind == Retired::kBlob) std::free(r.ptr);
  }
  SlotArray::destroy(array_.load(std::memory_order_relaxed));
}

void Table::insert_slot(SlotArray* a, uint64_t hash, Version* v) {
  uint64_t i = hash & a->mask;
  while (a->slots[i].load(std::memory_order_relaxed) != 0) i = (i + 1) & a->mask;
  a->depth_mask.fetch_or(1ULL << v->depth, std::memory_order_relaxed);
  a->slots[i].store(slot_word(hash, v), std::memory_order_release);
  ++a->used;
}

void Table::replace_slot(SlotArray* a, uint64_t hash, const Version* old_head, Version* v) {
  const uint64_t want = slot_word(hash, old_head);
  uint64_t i = hash & a->mask;
  while (a->slots[i].load(std::memory_order_relaxed) != want) i = (i + 1) & a->mask;
  a->slots[i].store(slot_word(hash, v), std::memory_order_release);
}

// Builds the index for the next generation: live keys only (tombstoned keys leave here),
// sized for `need` keys. Nothing is published; the caller publishes it with its batch.
SlotArray* Table::grow(uint64_t need) {
  const SlotArray* old = array_.load(std::memory_order_relaxed);
  const uint64_t next_gen = gen_.load(std::memory_order_relaxed) + 1;
  uint64_t cap = capacity_for(need);
  SlotArray* a = SlotArray::make(cap, next_gen);
  if (!a) return nullptr;
  constexpr uint64_t kAhead = 16;  // entries are scattered: fetch them ahead of the scan
  for (uint64_t i = 0; i <= old->mask; ++i) {
    if (i + kAhead <= old->mask) {
      uint64_t ahead = old->slots[i + kAhead].load(std::memory_order_relaxed);
      if (ahead) __builtin_prefetch(reinterpret_cast<const void*>(ahead & kSlotPtrMask));
    }
    uint64_t w = old->slots[i].load(std::memory_order_relaxed);
    if (!w) continue;
    auto* head = reinterpret_cast<Version*>(w & kSlotPtrMask);
    if (head->nhops == 0) {
      retire({Retired::kVersion, true, next_gen, head, nullptr});
      continue;
    }
    insert_slot(a, name_hash(head->key(), head->key_len), head);
  }
  memory_bytes_ += SlotArray::bytes_for(cap);
  return a;
}

uint32_t Table::allocate_key() {
  uint32_t id;
  if (!free_keys_.empty()) {
    id = free_keys_.back();
    free_keys_.pop_back();
    // Reused: its hits so far were another name's (its block was ensured by the batch).
    key_base_.set(id, hits_of(id));
  } else {
    id = next_key_++;  // never counted: no baseline
  }
  return id;
}

void Table::retire(Retired r) {
  try {
    retired_.push_back(r);  // reserved ahead by batches; reclaim() may still grow it
  } catch (const std::bad_alloc&) {
    // Out of memory after a generation was published: keep the object rather than fail
    // or free it under a reader. Only a leak.
  }
}

void Table::unref_hop(uint32_t index) {
  if (--nhs_.total_refs(index) != 0 || nhs_.live_refs(index) != 0) return;
  // Views may still be reading the id through a stale handle: retire, don't free.
  Blob* id = nhs_.id(index).exchange(nullptr, std::memory_order_acq_rel);
  retire({Retired::kBlob, false, gen_.load(std::memory_order_relaxed) + 1, id, nullptr});
  nhs_.release(index);
  id_epoch.fetch_add(1, std::memory_order_release);
}

void Table::free_version(Version* v, bool drop_key) {
  for (uint32_t i = 0; i < v->nhops; ++i) unref_hop(v->hops()[i].nh);
  if (drop_key) free_keys_.push_back(v->key_id);
  slab_.free(v, v->bytes());
}

void Table::reclaim() {
  // Freeing a version can retire an id blob (unref_hop swaps its pointer out first). A
  // view that read that pointer had announced itself before, so the blob must wait for
  // every reader announced at the swap: the announcements are scanned again after each
  // pass, and passes repeat while they free something.
  for (bool progress = true; progress;) {
    progress = false;
    uint64_t oldest = kIdle;
    for (uint32_t i = 1; i < kMaxReaders; ++i)
      oldest = std::min(oldest, readers_[i].announced.load(std::memory_order_seq_cst));
    const size_t end = retired_.size();  // this pass frees what was retired before it
    while (retired_head_ < end && retired_[retired_head_].gen <= oldest) {
      Retired r = retired_[retired_head_++];
      progress = true;
      switch (r.kind) {
        case Retired::kVersion:
          if (r.newer) r.newer->next.store(nullptr, std::memory_order_relaxed);
          free_version(static_cast<Version*>(r.ptr), r.drop_key);
          break;
        case Retired::kArray: {
          auto* a = static_cast<SlotArray*>(r.ptr);
          memory_bytes_ -= SlotArray::bytes_for(a->capacity());
          SlotArray::destroy(a);
          break;
        }
        case Retired::kBlob:
          memory_bytes_ -= sizeof(Blob) + static_cast<Blob*>(r.ptr)->len;
          std::free(r.ptr);
          break;
      }
    }
  }
  if (retired_head_ > 1024 && retired_head_ * 2 > retired_.size()) {
    retired_.erase(retired_.begin(), retired_.begin() + static_cast<ptrdiff_t>(retired_head_));
    retired_head_ = 0;
  }
}

bool Table::set_health(const uint8_t* id, size_t len, int state, int loadq) {
  if (state > static_cast<int>(kDown)) return false;
  auto it = nhs_.by_id.find(std::string_view(reinterpret_cast<const char*>(id), len));
  if (it == nhs_.by_id.end()) return false;
  std::atomic<uint32_t>& health = nhs_.health(it->second);
  uint32_t cur = health.load(std::memory_order_relaxed);
  uint32_t s = state < 0 ? health_state(cur) : static_cast<uint32_t>(state);
  uint32_t l = loadq < 0 ? health_loadq(cur) : std::min<uint32_t>(loadq, kMaxLoadQ);
  health.store(pack_health(s, l), std::memory_order_release);
  return true;
}

uint64_t Table::hits_of(uint32_t key_id) const {
  uint64_t sum = 0;
  for (const auto& r : readers_) sum += r.prefix_hits.get(key_id);
  return sum;
}

uint64_t Table::selections_of(uint32_t index) const {
  uint64_t sum = 0;
  for (const auto& r : readers_) sum += r.nh_selections.get(index);
  return sum;
}

int64_t Table::index_of(const uint8_t* id, size_t len) const {
  auto it = nhs_.by_id.find(std::string_view(reinterpret_cast<const char*>(id), len));
  return it == nhs_.by_id.end() ? -1 : static_cast<int64_t>(it->second);
}

bool Table::mark_down(uint32_t index, uint64_t epoch) {
  if (index >= nhs_.high_water() || id_epoch.load(std::memory_order_acquire) != epoch) return false;
  std::atomic<uint32_t>& health = nhs_.health(index);
  uint32_t cur = health.load(std::memory_order_relaxed);
  uint32_t down = 0;
  do {
    if (health_state(cur) == kDown) return true;
    down = pack_health(kDown, health_loadq(cur));
  } while (!health.compare_exchange_weak(cur, down, std::memory_order_acq_rel, std::memory_order_relaxed));
  // The index went to another next hop meanwhile: that one is left as it was.
  if (id_epoch.load(std::memory_order_acquire) != epoch) {
    health.compare_exchange_strong(down, cur, std::memory_order_acq_rel, std::memory_order_relaxed);
    return false;
  }
  return true;
}

ReaderSlot* Table::acquire_reader() {
  for (uint32_t i = 1; i < kMaxReaders; ++i) {
    bool expected = false;
    if (readers_[i].in_use.compare_exchange_strong(expected, true, std::memory_order_acq_rel)) {
      readers_[i].rng.s ^= reinterpret_cast<uintptr_t>(&expected) * 0x9E3779B97F4A7C15ULL + i;
      return &readers_[i];
    }
  }
  return nullptr;
}

void Table::release_reader(ReaderSlot* rs) {
  rs->announced.store(kIdle, std::memory_order_release);
  rs->in_use.store(false, std::memory_order_release);
}

std::string Table::next_hop_id(ReaderSlot& rs, bool owner, uint32_t index, uint64_t epoch) {
  if (index >= nhs_.high_water()) return {};
  ReadGuard guard(*this, rs, owner);
  const Blob* b = nhs_.id(index).load(std::memory_order_acquire);
  std::string out = b ? std::string(b->view()) : std::string();
  // A handle from before the index was recycled must not name the new id.
  if (epoch != kAnyEpoch && id_epoch.load(std::memory_order_acquire) != epoch) return {};
  return out;
}

namespace {

std::string_view key_of(const Version& v) { return {reinterpret_cast<const char*>(v.key()), v.key_len}; }

}  // namespace

EntryView Table::view_of(const Version& v) const {
  EntryView e{std::string(key_of(v)), {}};
  e.hops.reserve(v.nhops);
  for (uint32_t h = 0; h < v.nhops; ++h) {
    const Hop& hop = v.hops()[h];
    uint32_t health = nhs_.health(hop.nh).load(std::memory_order_relaxed);
    HopView hv{std::string(nhs_.id(hop.nh).load(std::memory_order_relaxed)->view()), hop.weight, hop.prio, {},
               health_state(health), health_loadq(health)};
    for (uint64_t bits = v.tags(h); bits; bits &= bits - 1)
      hv.tags.emplace_back(tags_.name(static_cast<uint32_t>(__builtin_ctzll(bits))));
    e.hops.push_back(std::move(hv));
  }
  return e;
}

std::vector<EntryView> Table::entries() const {
  std::vector<EntryView> out;
  out.reserve(live_keys_.load(std::memory_order_relaxed));
  for_each_live([&](const Version& v) { out.push_back(view_of(v)); });
  return out;
}

std::vector<EntryView> Table::entries_under(std::string_view under, size_t limit) const {
  std::vector<const Version*> match;
  for_each_live([&](const Version& v) {
    std::string_view k = key_of(v);
    if (under.empty() || (k.substr(0, under.size()) == under && (k.size() == under.size() || k[under.size()] == '/')))
      match.push_back(&v);
  });
  auto less = [](const Version* a, const Version* b) { return key_of(*a) < key_of(*b); };
  if (match.size() > limit) {
    std::nth_element(match.begin(), match.begin() + static_cast<std::ptrdiff_t>(limit), match.end(), less);
    match.resize(limit);
  }
  std::vector<EntryView> out;
  out.reserve(match.size());
  for (const Version* v : match) out.push_back(view_of(*v));
  return out;
}

Stats Table::stats(size_t top) {
  settle_held(readers_[0]);
  reclaim();
  Stats s;
  for (const auto& r : readers_) {
    s.lookups += r.lookups.load(std::memory_order_relaxed);
    s.misses += r.misses.load(std::memory_order_relaxed);
    s.failovers += r.failovers.load(std::memory_order_relaxed);
    s.invalid += r.invalid.load(std::memory_order_relaxed);
    s.counter_bytes += r.prefix_hits.bytes() + r.nh_selections.bytes();
    if (&r != &readers_[0] && r.in_use.load(std::memory_order_relaxed)) ++s.readers;
  }
  s.size = live_keys_.load(std::memory_order_relaxed);
  s.generation = gen_.load(std::memory_order_relaxed);
  s.next_hops = nhs_.by_id.size();
  s.tags = tags_.count();
  s.memory_bytes = memory_bytes_ + slab_.reserved();
  s.used_bytes = memory_bytes_ + slab_.in_use();
  s.pending_reclaim = retired_.size() - retired_head_;

  for_each_live([&](const Version& v) {
    const uint64_t sum = hits_of(v.key_id) - key_base_.get(v.key_id);
    if (sum) s.prefix_hits.push_back({std::string(key_of(v)), sum});
  });
  for (const auto& [id, index] : nhs_.by_id) {
    const uint64_t sum = selections_of(index) - nh_base_[index];
    if (sum) s.nh_selections.push_back({std::string(id), sum});
  }
  // Most first; ties by name (bytes), as ReferenceTable orders them.
  auto trim = [top](auto& v, auto key) {
    auto cmp = [key](const auto& x, const auto& y) {
      return key(x) != key(y) ? key(x) > key(y) : x.name() < y.name();
    };
    if (v.size() > top) {
      std::partial_sort(v.begin(), v.begin() + static_cast<ptrdiff_t>(top), v.end(), cmp);
      v.resize(top);
    } else {
      std::sort(v.begin(), v.end(), cmp);
    }
  };
  trim(s.prefix_hits, [](const PrefixHits& p) { return p.hits; });
  trim(s.nh_selections, [](const NextHopSelections& p) { return p.selections; });
  return s;
}

}  // namespace dmsc
