#include "name.hpp"

#include <cstring>

namespace dmsc {
namespace {

constexpr uint64_t kRootHash = 0x243f6a8885a308d3ULL;
constexpr uint64_t kK1 = 0xa0761d6478bd642fULL;
constexpr uint64_t kK2 = 0xe7037ed1a0b428dbULL;
constexpr uint64_t kK3 = 0x8ebc6af09c88c6e3ULL;

inline uint64_t mum(uint64_t a, uint64_t b) {
  __uint128_t r = static_cast<__uint128_t>(a) * b;
  return static_cast<uint64_t>(r) ^ static_cast<uint64_t>(r >> 64);
}

inline uint64_t load_partial(const uint8_t* p, size_t n) {
  uint64_t v = 0;
  for (size_t i = 0; i < n; ++i) v |= static_cast<uint64_t>(p[i]) << (8 * i);
  return v;
}

// Chains the hash of one more component onto the hash of the prefix before it.
inline uint64_t hash_component(uint64_t h, const uint8_t* p, size_t n) {
  uint64_t acc = mum(h ^ kK3, kK1 ^ n);
  while (n >= 8) {
    uint64_t w;
    std::memcpy(&w, p, 8);
    acc = mum(acc ^ w, kK1);
    p += 8;
    n -= 8;
  }
  return mum(acc ^ load_partial(p, n), kK2);
}

}  // namespace

const char* name_error_message(NameError e) {
  switch (e) {
    case NameError::kOk: return "ok";
    case NameError::kEmpty: return "name is empty";
    case NameError::kNoLeadingSlash: return "name must start with '/'";
    case NameError::kEmptyComponent: return "name has an empty component ('//')";
    case NameError::kTrailingSlash: return "name must not end with '/'";
    case NameError::kNul: return "name contains a NUL byte";
    case NameError::kInvalidUtf8: return "name is not valid UTF-8";
    case NameError::kTooLong: return "name is longer than 1024 bytes";
    case NameError::kTooManyComponents: return "name has more than 32 components";
  }
  return "invalid name";
}

bool valid_utf8(const uint8_t* p, size_t len) {
  size_t i = 0;
  while (i < len) {
    uint8_t c = p[i];
    if (c < 0x80) { ++i; continue; }
    size_t need;
    uint8_t lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) need = 1;
    else if (c == 0xE0) { need = 2; lo = 0xA0; }
    else if ((c >= 0xE1 && c <= 0xEC) || c == 0xEE || c == 0xEF) need = 2;
    else if (c == 0xED) { need = 2; hi = 0x9F; }
    else if (c == 0xF0) { need = 3; lo = 0x90; }
    else if (c >= 0xF1 && c <= 0xF3) need = 3;
    else if (c == 0xF4) { need = 3; hi = 0x8F; }
    else return false;
    if (len - i - 1 < need) return false;
    if (p[i + 1] < lo || p[i + 1] > hi) return false;
    for (size_t k = 2; k <= need; ++k)
      if ((p[i + k] & 0xC0) != 0x80) return false;
    i += need + 1;
  }
  return true;
}

size_t utf16_length(const uint8_t* p, size_t len) {
  size_t n = 0;
  for (size_t i = 0; i < len; ++i) {
    uint8_t c = p[i];
    if ((c & 0xC0) != 0x80) n += (c >= 0xF0) ? 2 : 1;
  }
  return n;
}

NameError parse_name(const uint8_t* p, size_t len, ParsedName& out) {
  if (len == 0) return NameError::kEmpty;
  if (len > kMaxNameBytes) return NameError::kTooLong;
  if (p[0] != '/') return NameError::kNoLeadingSlash;
  out.end[0] = 1;
  out.hash[0] = kRootHash;
  out.ncomp = 0;
  out.ascii = true;
  if (len == 1) return NameError::kOk;

  uint32_t k = 0;
  size_t start = 1;
  uint8_t high = 0;
  uint64_t h = kRootHash;
  for (size_t i = 1; i <= len; ++i) {
    if (i == len || p[i] == '/') {
      if (i == start) return i == len ? NameError::kTrailingSlash : NameError::kEmptyComponent;
      if (k == kMaxComponents) return NameError::kTooManyComponents;
      h = hash_component(h, p + start, i - start);
      ++k;
      out.end[k] = static_cast<uint16_t>(i);
      out.hash[k] = h;
      start = i + 1;
    } else {
      uint8_t c = p[i];
      if (c == 0) return NameError::kNul;
      high |= c;
    }
  }
  if (high & 0x80) {
    if (!valid_utf8(p, len)) return NameError::kInvalidUtf8;
    out.ascii = false;
  }
  out.ncomp = k;
  return NameError::kOk;
}

}  // namespace dmsc
