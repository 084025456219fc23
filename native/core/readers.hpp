// Reader slots: epoch announcements for safe reclamation, and per-reader counters.
//
// Each reader (the owner's own lookups, or one attached view in a worker) owns a slot, so
// its counters are written by one thread only: plain relaxed stores, no shared cache line
// bouncing between cores. stats() sums the slots.
#pragma once

#include <atomic>
#include <cstdint>
#include <cstdlib>

#include "arena.hpp"

namespace dmsc {

constexpr uint64_t kIdle = UINT64_MAX;
constexpr uint32_t kMaxReaders = 64;

// A counter per dense id, grown by the one thread that owns the slot.
class CounterArray {
 public:
  static constexpr uint32_t kChunkBits = 18;  // 2 MiB of counters: one huge page
  static constexpr uint32_t kChunkSize = 1u << kChunkBits;
  static constexpr uint32_t kChunks = 64;

  ~CounterArray() {
    for (auto& c : dir_) free_huge(c.load(std::memory_order_relaxed), kChunkSize * sizeof(uint64_t));
  }
  void bump(uint32_t i) {
    auto& slot = dir_[i >> kChunkBits];
    std::atomic<uint64_t>* chunk = slot.load(std::memory_order_relaxed);
    if (!chunk) {
      chunk = static_cast<std::atomic<uint64_t>*>(alloc_zeroed_huge(kChunkSize * sizeof(uint64_t)));
      if (!chunk) return;  // counting is best effort under memory pressure
      bytes_.fetch_add(kChunkSize * sizeof(uint64_t), std::memory_order_relaxed);
      slot.store(chunk, std::memory_order_release);
    }
    auto& c = chunk[i & (kChunkSize - 1)];
    c.store(c.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  }
  // Brings the counter's line in ahead of a bump.
  void prefetch(uint32_t i) const {
    const std::atomic<uint64_t>* chunk = dir_[i >> kChunkBits].load(std::memory_order_relaxed);
    if (chunk) __builtin_prefetch(chunk + (i & (kChunkSize - 1)), 1);
  }
  uint64_t get(uint32_t i) const {
    const std::atomic<uint64_t>* chunk = dir_[i >> kChunkBits].load(std::memory_order_acquire);
    return chunk ? chunk[i & (kChunkSize - 1)].load(std::memory_order_relaxed) : 0;
  }
  uint64_t bytes() const { return bytes_.load(std::memory_order_relaxed); }

 private:
  std::atomic<std::atomic<uint64_t>*> dir_[kChunks] = {};
  std::atomic<uint64_t> bytes_{0};
};

// splitmix64: the per-slot generator for weighted choice without a flow.
struct Rng {
  uint64_t s = 0x9E3779B97F4A7C15ULL;
  uint64_t next() {
    uint64_t z = (s += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
  }
  uint64_t below(uint64_t bound) {
    return static_cast<uint64_t>((static_cast<__uint128_t>(next()) * bound) >> 64);
  }
};

struct alignas(64) ReaderSlot {
  std::atomic<uint64_t> announced{kIdle};  // snapshot generation in use, or kIdle
  std::atomic<bool> in_use{false};
  std::atomic<uint64_t> lookups{0}, misses{0}, failovers{0}, invalid{0};
  Rng rng;
  CounterArray prefix_hits;     // by key id
  CounterArray nh_selections;   // by next-hop index
  // The owner slot's last hit of a single lookup, counted at its next single lookup that
  // finds a route, or before the table reads or rebases counters (commit, stats): on a
  // table too large for the cache its counters' lines come in meanwhile, rather than
  // stall the lookup that found them.
  uint32_t held_key = 0, held_nh = 0;
  bool held = false;

  static void add(std::atomic<uint64_t>& c, uint64_t n) {
    c.store(c.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
};

}  // namespace dmsc
