// Memory for the table's hot structures.
//
// Lookups over a million prefixes are bound by cache and TLB misses, so entries come from
// a slab carved out of large chunks backed by transparent huge pages where the kernel
// offers them (madvise), with no per-object malloc header; freed blocks go to a free
// list per 16-byte size class. Only the owner thread allocates and frees.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace dmsc {

constexpr size_t kHugePage = 2u << 20;

// Zeroed memory, 2 MiB aligned and advised for huge pages when at least that large.
inline void* alloc_zeroed_huge(size_t bytes) {
  size_t align = bytes >= kHugePage ? kHugePage : 64;
  size_t size = (bytes + align - 1) / align * align;
  void* p = std::aligned_alloc(align, size);
  if (!p) return nullptr;
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  if (align == kHugePage) madvise(p, size, MADV_HUGEPAGE);
#endif
  std::memset(p, 0, size);
  return p;
}

class Slab {
 public:
  static constexpr size_t kGrain = 16;
  static constexpr size_t kMaxBytes = 4096;

  Slab() = default;
  Slab(const Slab&) = delete;
  Slab& operator=(const Slab&) = delete;
  ~Slab() {
    for (void* c : chunks_) std::free(c);
  }

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

 private:
  // Chunks start small (a table with ten entries needs no huge page) and grow to 2 MiB.
  bool grow() {
    size_t size = reserved_ >= kHugePage ? kHugePage : 64u << 10;
    void* c = size == kHugePage ? std::aligned_alloc(kHugePage, size) : std::malloc(size);
    if (!c) return false;
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    if (size == kHugePage) madvise(c, size, MADV_HUGEPAGE);
#endif
    chunks_.push_back(c);
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

  std::vector<void*> chunks_;
  char* cur_ = nullptr;
  size_t left_ = 0;
  size_t reserved_ = 0;
  size_t in_use_ = 0;
  void* free_[kMaxBytes / kGrain + 1] = {};
};

}  // namespace dmsc
