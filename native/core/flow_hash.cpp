#include "flow_hash.hpp"

namespace dmsc {

Log2Table::Log2Table() {
  // Binary logarithm of (256 + i) / 256 by repeated squaring in Q30; y*y < 2^62.
  for (uint32_t i = 0; i < 256; ++i) {
    uint64_t y = static_cast<uint64_t>(256 + i) << 22;
    uint32_t f = 0;
    for (int bit = 15; bit >= 0; --bit) {
      y = (y * y) >> 30;
      if (y >= (1ULL << 31)) {
        f |= 1u << bit;
        y >>= 1;
      }
    }
    frac[i] = f;
  }
  frac[256] = 65536;
}

const Log2Table& log2_table() {
  static const Log2Table table;
  return table;
}

}  // namespace dmsc
