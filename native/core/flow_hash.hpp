// Consistent weighted selection for flows, in integer arithmetic only.
//
// Weighted rendezvous hashing picks the candidate with the smallest -ln(u)/w. Both the
// native table and ReferenceTable (src/fastpath/hashing.ts) must pick the same candidate
// bit for bit, and libm's log differs from V8's in the last place, so -log2(u) is computed
// here from a 257-entry fixed-point table built by exact integer squaring, and scores are
// compared as cross products that stay below 2^53 (exact in a JS double too).
#pragma once

#include <cstddef>
#include <cstdint>

namespace dmsc {

// FNV-1a over the UTF-8 bytes of a next-hop id.
inline uint32_t fnv1a32(const uint8_t* p, size_t n) {
  uint32_t h = 0x811C9DC5u;
  for (size_t i = 0; i < n; ++i) {
    h ^= p[i];
    h *= 0x01000193u;
  }
  return h;
}

inline uint32_t fmix32(uint32_t h) {
  h ^= h >> 16;
  h *= 0x85EBCA6Bu;
  h ^= h >> 13;
  h *= 0xC2B2AE35u;
  h ^= h >> 16;
  return h;
}

// Per-id constant, computed once when the id enters the table.
inline uint32_t id_mix(uint32_t id_hash) { return fmix32(id_hash ^ 0x9E3779B9u); }

// The uniform draw of one (flow, next hop) pair.
inline uint32_t flow_draw(uint32_t flow, uint32_t idmix) { return fmix32(flow ^ idmix); }

struct Log2Table {
  uint32_t frac[257];  // frac[i] = floor(log2(1 + i/256) * 65536)
  Log2Table();
};

const Log2Table& log2_table();

// -log2(x / 2^32) in Q16 for the 32-bit draw x; always in [1, 2^21].
inline uint32_t neglog2_q16(uint32_t draw) {
  const uint32_t* t = log2_table().frac;
  uint32_t x = draw | 1u;
  uint32_t e = 31u - static_cast<uint32_t>(__builtin_clz(x));
  uint32_t top = e >= 16 ? (x >> (e - 16)) : (x << (16 - e));
  uint32_t f16 = top - 65536u;
  uint32_t idx = f16 >> 8, lo = f16 & 255u;
  uint32_t frac = t[idx] + (((t[idx + 1] - t[idx]) * lo) >> 8);
  return (32u << 16) - ((e << 16) + frac);
}

}  // namespace dmsc
