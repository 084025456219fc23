// Next hops and policy tags: the two dictionaries a table's entries point into.
//
// A next hop lives in a chunked array that never moves, so readers in other threads can
// read its health word with one atomic load while the owner adds ids; setHealth is that
// one atomic store, whatever number of entries reference the id.
#pragma once

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace dmsc {

enum HealthState : uint32_t { kUp = 0, kDegraded = 1, kDown = 2 };

constexpr uint32_t kMaxLoadQ = 9900;  // load is clamped to [0, 0.99], in units of 1e-4
constexpr size_t kMaxIdBytes = 256;
constexpr size_t kMaxTagBytes = 64;
constexpr uint32_t kMaxTags = 64;

inline uint32_t pack_health(uint32_t state, uint32_t loadq) { return state | (loadq << 2); }
inline uint32_t health_state(uint32_t h) { return h & 3u; }
inline uint32_t health_loadq(uint32_t h) { return h >> 2; }

// Immutable, length-prefixed copy of an id or tag.
struct Blob {
  uint32_t len;
  char bytes[1];
  static Blob* make(const void* p, size_t n) {
    Blob* b = static_cast<Blob*>(std::malloc(sizeof(Blob) + n));
    if (!b) return nullptr;
    b->len = static_cast<uint32_t>(n);
    std::memcpy(b->bytes, p, n);
    b->bytes[n] = 0;
    return b;
  }
  std::string_view view() const { return {bytes, len}; }
};

// Next-hop state, structure of arrays: the lookup path reads only `health` and `idmix`,
// dense 4-byte words, so the hot set of 10k next hops stays in L2.
class NextHopRegistry {
 public:
  static constexpr uint32_t kChunkBits = 12;
  static constexpr uint32_t kChunkSize = 1u << kChunkBits;
  static constexpr uint32_t kChunks = 4096;
  static constexpr uint32_t kMaxNextHops = kChunkSize * kChunks;

  struct Chunk {
    std::atomic<uint32_t> health[kChunkSize] = {};
    uint32_t idmix[kChunkSize] = {};
    std::atomic<Blob*> id[kChunkSize] = {};
    // Owner-thread bookkeeping.
    uint32_t live_refs[kChunkSize] = {};   // references from entries of the current generation
    uint32_t total_refs[kChunkSize] = {};  // references from every version not yet freed
  };

  ~NextHopRegistry() {
    for (auto& c : chunks_) {
      Chunk* p = c.load(std::memory_order_relaxed);
      if (!p) continue;
      for (uint32_t i = 0; i < kChunkSize; ++i) std::free(p->id[i].load(std::memory_order_relaxed));
      delete p;
    }
  }

  Chunk& chunk(uint32_t i) const { return *chunks_[i >> kChunkBits].load(std::memory_order_acquire); }
  std::atomic<uint32_t>* health_chunk(uint32_t c) const {
    Chunk* p = c < kChunks ? chunks_[c].load(std::memory_order_acquire) : nullptr;
    return p ? p->health : nullptr;
  }
  static uint32_t slot(uint32_t i) { return i & (kChunkSize - 1); }
  std::atomic<uint32_t>& health(uint32_t i) const { return chunk(i).health[slot(i)]; }
  uint32_t idmix(uint32_t i) const { return chunk(i).idmix[slot(i)]; }
  std::atomic<Blob*>& id(uint32_t i) const { return chunk(i).id[slot(i)]; }
  uint32_t& live_refs(uint32_t i) { return chunk(i).live_refs[slot(i)]; }
  uint32_t& total_refs(uint32_t i) { return chunk(i).total_refs[slot(i)]; }
  void set_idmix(uint32_t i, uint32_t v) { chunk(i).idmix[slot(i)] = v; }

  // Owner thread. The caller has checked available() > 0.
  uint32_t allocate() {
    uint32_t i;
    if (!free_.empty()) {
      i = free_.back();
      free_.pop_back();
    } else {
      i = next_.load(std::memory_order_relaxed);
      // The chunk exists (reserve) before views can see the index through high_water().
      next_.store(i + 1, std::memory_order_release);
    }
    return i;
  }
  // Creates the chunks `more` further allocations will need, so allocate() cannot fail.
  bool reserve(uint32_t more) {
    uint64_t last = static_cast<uint64_t>(next_.load(std::memory_order_relaxed)) + more;
    for (uint64_t c = next_.load(std::memory_order_relaxed) >> kChunkBits; c <= (last >> kChunkBits) && c < kChunks; ++c) {
      if (chunks_[c].load(std::memory_order_relaxed)) continue;
      Chunk* chunk = new (std::nothrow) Chunk();
      if (!chunk) return false;
      chunks_[c].store(chunk, std::memory_order_release);
    }
    return true;
  }
  void release(uint32_t i) { free_.push_back(i); }
  uint32_t available() const {
    return kMaxNextHops - next_.load(std::memory_order_relaxed) + static_cast<uint32_t>(free_.size());
  }
  // Indexes below this have a chunk; any thread.
  uint32_t high_water() const { return next_.load(std::memory_order_acquire); }

  // Known ids (live_refs > 0), owner only. Keys view the id blobs, which outlive the entry.
  std::unordered_map<std::string_view, uint32_t> by_id;

 private:
  std::atomic<Chunk*> chunks_[kChunks] = {};
  std::vector<uint32_t> free_;
  std::atomic<uint32_t> next_{0};
};

// Append-only tag dictionary: a tag keeps its bit for the table's lifetime.
class TagDictionary {
 public:
  ~TagDictionary() {
    for (auto& t : tags_) std::free(t.load(std::memory_order_relaxed));
  }
  // Any thread.
  int find(const void* p, size_t n) const {
    uint32_t count = count_.load(std::memory_order_acquire);
    for (uint32_t i = 0; i < count; ++i) {
      const Blob* b = tags_[i].load(std::memory_order_relaxed);
      if (b->len == n && std::memcmp(b->bytes, p, n) == 0) return static_cast<int>(i);
    }
    return -1;
  }
  uint32_t count() const { return count_.load(std::memory_order_acquire); }
  std::string_view name(uint32_t i) const { return tags_[i].load(std::memory_order_relaxed)->view(); }
  // Owner thread; the caller has checked count() < kMaxTags. Takes ownership of b.
  void add(Blob* b) {
    uint32_t i = count_.load(std::memory_order_relaxed);
    tags_[i].store(b, std::memory_order_relaxed);
    count_.store(i + 1, std::memory_order_release);
  }

 private:
  std::atomic<Blob*> tags_[kMaxTags] = {};
  std::atomic<uint32_t> count_{0};
};

}  // namespace dmsc
