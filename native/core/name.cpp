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

namespace {

constexpr uint64_t kLow7 = 0x7F7F7F7F7F7F7F7FULL;
constexpr uint64_t kOnes = 0x0101010101010101ULL;

// 0x80 in every byte of w that is zero, exactly (no false positives from borrows).
inline uint64_t zero_bytes(uint64_t w) { return ~(((w & kLow7) + kLow7) | w | kLow7); }

}  // namespace

// Word at a time: one pass finds the separators, NUL bytes and non-ASCII bytes of eight
// bytes at once; components are hashed as their ends are found.
NameError parse_name(const uint8_t* p, size_t len, ParsedName& out) {
  if (len == 0) return NameError::kEmpty;
  if (len > kMaxNameBytes) return NameError::kTooLong;
  if (p[0] != '/') return NameError::kNoLeadingSlash;
  out.end[0] = 1;
  out.hash[0] = kRootHash;
  out.ncomp = 0;
  if (len == 1) return NameError::kOk;

  uint32_t k = 0;
  size_t start = 1;
  uint64_t high = 0;
  uint64_t h = kRootHash;
  auto separator = [&](size_t at) -> NameError {
    if (at == start) return NameError::kEmptyComponent;
    if (k == kMaxComponents) return NameError::kTooManyComponents;
    h = hash_component(h, p + start, at - start);
    ++k;
    out.end[k] = static_cast<uint16_t>(at);
    out.hash[k] = h;
    start = at + 1;
    return NameError::kOk;
  };
  size_t i = 1;
  for (; i + 8 <= len; i += 8) {
    uint64_t w;
    std::memcpy(&w, p + i, 8);
    if (zero_bytes(w)) return NameError::kNul;
    high |= w;
    for (uint64_t sl = zero_bytes(w ^ (kOnes * '/')); sl; sl &= sl - 1) {
      NameError e = separator(i + (static_cast<size_t>(__builtin_ctzll(sl)) >> 3));
      if (e != NameError::kOk) return e;
    }
  }
  for (; i < len; ++i) {
    uint8_t c = p[i];
    if (c == '/') {
      NameError e = separator(i);
      if (e != NameError::kOk) return e;
    } else if (c == 0) {
      return NameError::kNul;
    }
    high |= c;
  }
  if (start == len) return NameError::kTrailingSlash;
  NameError e = separator(len);
  if (e != NameError::kOk) return e;
  if ((high & 0x8080808080808080ULL) && !valid_utf8(p, len)) return NameError::kInvalidUtf8;
  out.ncomp = k;
  return NameError::kOk;
}

}  // namespace dmsc
