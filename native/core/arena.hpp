// Memory for the table's hot structures.
//
// Lookups over a million prefixes are bound by cache and TLB misses, so entries come from
// a slab carved out of large chunks backed by transparent huge pages where the kernel
// offers them (madvise), with no per-object malloc header. Blocks are multiples of 32
// bytes: an entry with four untagged next hops (91 bytes) takes 96 rather than the 128
// whole lines would, at the price of sometimes touching three lines rather than two
// (lookups prefetch them together). Freed blocks go to a free list per size class. Only
// the owner thread allocates and frees.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <utility>
#include <vector>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace dmsc {

constexpr size_t kHugePage = 2u << 20;

// Zeroed memory for large structures, mapped 2 MiB aligned (the slack of the alignment is
// unmapped again, so none is wasted) and advised for transparent huge pages. Small sizes
// come from calloc. Free with free_huge(p, bytes).
inline void* alloc_zeroed_huge(size_t bytes) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  if (bytes >= kHugePage) {
    size_t size = (bytes + kHugePage - 1) / kHugePage * kHugePage;
    void* raw = mmap(nullptr, size + kHugePage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED) return nullptr;
    uintptr_t start = reinterpret_cast<uintptr_t>(raw);
    uintptr_t aligned = (start + kHugePage - 1) & ~(kHugePage - 1);
    if (aligned > start) munmap(raw, aligned - start);
    size_t tail = (start + size + kHugePage) - (aligned + size);
    if (tail) munmap(reinterpret_cast<void*>(aligned + size), tail);
    madvise(reinterpret_cast<void*>(aligned), size, MADV_HUGEPAGE);
    return reinterpret_cast<void*>(aligned);  // anonymous mappings are zero-filled
  }
#endif
  size_t size = (bytes + 63) / 64 * 64;
  void* p = std::aligned_alloc(64, size);  // cache-line aligned, like the mapped regions
  if (p) std::memset(p, 0, size);
  return p;
}

inline void free_huge(void* p, size_t bytes) {
  if (!p) return;
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  if (bytes >= kHugePage) {
    munmap(p, (bytes + kHugePage - 1) / kHugePage * kHugePage);
    return;
  }
#endif
  std::free(p);
}

class Slab {
 public:
  static constexpr size_t kGrain = 32;
  static constexpr size_t kMaxBytes = 4096;

  Slab() = default;
  Slab(const Slab&) = delete;
  Slab& operator=(const Slab&) = delete;
  ~Slab() {
    for (auto& c : chunks_) free_huge(c.first, c.second);
    release_spare();
  }

  // What a block for `bytes` takes: its size class's bytes.
  static constexpr size_t block_bytes(size_t bytes) { return (bytes + kGrain - 1) / kGrain * kGrain; }

  void* alloc(size_t bytes) {
    size_t cls = (bytes + kGrain - 1) / kGrain;
    if (cls == 0 || cls > kMaxBytes / kGrain) return nullptr;
    if (void* p = free_[cls]) {
      std::memcpy(&free_[cls], p, sizeof(void*));
      in_use_ += cls * kGrain;
      return p;
    }
    size_t need = cls * kGrain;
    if (left_ < need && !grow()) return nullptr;
    void* p = cur_;
    cur_ += need;
    left_ -= need;
    in_use_ += need;
    return p;
  }

  void free(void* p, size_t bytes) {
    size_t cls = (bytes + kGrain - 1) / kGrain;
    std::memcpy(p, &free_[cls], sizeof(void*));
    free_[cls] = p;
    in_use_ -= cls * kGrain;
  }

  size_t reserved() const { return reserved_; }
  size_t in_use() const { return in_use_; }
  // Bytes of the reserved chunks not in use: free lists and the current chunk's tail.
  size_t unused() const { return reserved_ - in_use_; }

  // Chunks of kHugePage bytes from alloc_zeroed_huge, already faulted in by another
  // thread, for grow() to take before it maps any; release_spare() unmaps those left.
  // A bulk load's pages are then zeroed by the kernel on that thread, not during commit.
  void adopt_spare(std::vector<void*>&& chunks) {
    release_spare();
    spare_ = std::move(chunks);
  }
  void release_spare() {
    for (void* c : spare_) free_huge(c, kHugePage);
    spare_.clear();
  }

 private:
  // Chunks start small (a table with ten entries needs no huge page) and grow to 2 MiB.
  bool grow() {
    size_t size = reserved_ >= kHugePage || !spare_.empty() ? kHugePage : 64u << 10;
    chunks_.reserve(chunks_.size() + 1);  // before a chunk is taken: nothing leaks if it throws
    void* c = nullptr;
    if (!spare_.empty()) {  // size is kHugePage then
      c = spare_.back();
      spare_.pop_back();
    } else {
      c = alloc_zeroed_huge(size);
    }
    if (!c) return false;
    chunks_.emplace_back(c, size);
    // The tail of the previous chunk is kept as free blocks of the largest class it fits.
    while (left_ >= kGrain) {
      size_t cls = std::min(left_, kMaxBytes) / kGrain;
      std::memcpy(cur_, &free_[cls], sizeof(void*));
      free_[cls] = cur_;
      cur_ += cls * kGrain;
      left_ -= cls * kGrain;
    }
    cur_ = static_cast<char*>(c);
    left_ = size;
    reserved_ += size;
    return true;
  }

  std::vector<std::pair<void*, size_t>> chunks_;
  std::vector<void*> spare_;
  char* cur_ = nullptr;
  size_t left_ = 0;
  size_t reserved_ = 0;
  size_t in_use_ = 0;
  void* free_[kMaxBytes / kGrain + 1] = {};
};

}  // namespace dmsc
