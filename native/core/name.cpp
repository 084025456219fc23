#include "name.hpp"

#include <cstring>

namespace dmsc {
namespace {

constexpr uint64_t kRootHash = 0x243f6a8885a308d3ULL;
constexpr uint64_t kK1 = 0xa0761d6478bd642fULL;
constexpr uint64_t kK2 = 0xe7037ed1a0b428dbULL;
constexpr uint64_t kK3 = 0x8ebc6af09c88c6e3ULL;

inline uint64_t load_partial(const uint8_t* p, size_t n) {
  uint64_t v = 0;
  for (size_t i = 0; i < n; ++i) v |= static_cast<uint64_t>(p[i]) << (8 * i);
  return v;
}

// The hash of the prefix p[0..at) of a name, from the state of its words before `base`
// (every whole 8-byte word below it) and the bytes p[base..at), fewer than 8, of the
// word at `base`. The same bytes give the same hash whether they end a longer name's
// prefix or are the whole name: a table's key and a lookup's candidate meet.
inline uint64_t prefix_hash(uint64_t state, uint64_t word, size_t base, size_t at) {
  const size_t n = at - base;
  const uint64_t part = n == 0 ? 0 : word & (~0ULL >> (64 - 8 * n));
  return mum(state ^ part ^ kK3, kK2 ^ at);
}

}  // namespace

uint64_t name_hash(const uint8_t* p, size_t len) {
  if (len <= 1) return kRootHash;
  uint64_t state = kRootHash;
  size_t i = 0;
  for (; i + 8 <= len; i += 8) {
    uint64_t w;
    std::memcpy(&w, p + i, 8);
    state = mum(state ^ w, kK1);
  }
  return prefix_hash(state, load_partial(p + i, len - i), i, len);
}

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
    case NameError::kControl: return "name has a control character";
    case NameError::kWhitespace: return "name has white space";
    case NameError::kBidiControl: return "name has a bidirectional control";
    case NameError::kInvisible: return "name has an invisible character";
    case NameError::kBackslash: return "name has a backslash";
    case NameError::kDotComponent: return "name has a '.' or '..' component";
  }
  return "invalid name";
}

// The strict UTF-8 sequence at p[i] (i < len): its length, with its code point in *cp;
// 0 when it is not one (overlong, surrogate, above U+10FFFF, cut short).
size_t utf8_sequence(const uint8_t* p, size_t len, size_t i, uint32_t* cp) {
  uint8_t c = p[i];
  if (c < 0x80) {
    *cp = c;
    return 1;
  }
  size_t need;
  uint8_t lo = 0x80, hi = 0xBF;
  if (c >= 0xC2 && c <= 0xDF) { need = 1; *cp = c & 0x1F; }
  else if (c == 0xE0) { need = 2; lo = 0xA0; *cp = c & 0x0F; }
  else if ((c >= 0xE1 && c <= 0xEC) || c == 0xEE || c == 0xEF) { need = 2; *cp = c & 0x0F; }
  else if (c == 0xED) { need = 2; hi = 0x9F; *cp = c & 0x0F; }
  else if (c == 0xF0) { need = 3; lo = 0x90; *cp = c & 0x07; }
  else if (c >= 0xF1 && c <= 0xF3) { need = 3; *cp = c & 0x07; }
  else if (c == 0xF4) { need = 3; hi = 0x8F; *cp = c & 0x07; }
  else return 0;
  if (len - i - 1 < need) return 0;
  if (p[i + 1] < lo || p[i + 1] > hi) return 0;
  for (size_t k = 1; k <= need; ++k) {
    if ((p[i + k] & 0xC0) != 0x80) return 0;
    *cp = (*cp << 6) | (p[i + k] & 0x3F);
  }
  return need + 1;
}

bool valid_utf8(const uint8_t* p, size_t len) {
  uint32_t cp;
  for (size_t i = 0, n; i < len; i += n)
    if ((n = utf8_sequence(p, len, i, &cp)) == 0) return false;
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
constexpr uint64_t kHigh = 0x8080808080808080ULL;

// 0x80 in every byte of w that is zero, exactly (no false positives from borrows).
inline uint64_t zero_bytes(uint64_t w) { return ~(((w & kLow7) + kLow7) | w | kLow7); }

// Non-zero when some byte of w is below n (n <= 128): exact as to whether there is one.
inline uint64_t bytes_below(uint64_t w, uint8_t n) { return (w - kOnes * n) & ~w & kHigh; }

// Non-zero when w holds a refused ASCII byte (below).
inline uint64_t refused_bytes(uint64_t w) {
  return bytes_below(w, 0x21) | zero_bytes(w ^ (kOnes * 0x7F)) | zero_bytes(w ^ (kOnes * '\\'));
}

// An ASCII byte no name may hold: controls, space, DEL, backslash (all below 0x80, so
// never part of a multi-byte UTF-8 sequence).
inline bool refused_ascii(uint8_t c) { return c < 0x21 || c == 0x7F || c == '\\'; }

inline NameError ascii_error(uint8_t c) {
  if (c == 0) return NameError::kNul;
  if (c == ' ') return NameError::kWhitespace;
  if (c == '\\') return NameError::kBackslash;
  return NameError::kControl;
}

// The first refused byte of p[0..len) (one is known to be there).
NameError first_refused(const uint8_t* p, size_t len) {
  for (size_t i = 0; i < len; ++i)
    if (refused_ascii(p[i])) return ascii_error(p[i]);
  return NameError::kControl;
}

// Code points above U+007F a name may not hold.
NameError refused_code_point(uint32_t cp) {
  if (cp <= 0x9F) return NameError::kControl;  // C1
  if (cp == 0xA0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F ||
      cp == 0x205F || cp == 0x3000)
    return NameError::kWhitespace;
  if (cp == 0x61C || cp == 0x200E || cp == 0x200F || (cp >= 0x202A && cp <= 0x202E) || (cp >= 0x2066 && cp <= 0x2069))
    return NameError::kBidiControl;
  if (cp == 0x200B || cp == 0x2060 || cp == 0x180E || cp == 0xFEFF) return NameError::kInvisible;
  return NameError::kOk;
}

// Strict UTF-8, and no refused code point above U+007F.
NameError check_utf8_name(const uint8_t* p, size_t len) {
  uint32_t cp;
  for (size_t i = 0, n; i < len; i += n) {
    if ((n = utf8_sequence(p, len, i, &cp)) == 0) return NameError::kInvalidUtf8;
    if (cp < 0x80) continue;
    NameError e = refused_code_point(cp);
    if (e != NameError::kOk) return e;
  }
  return NameError::kOk;
}

}  // namespace

// Word at a time from the first byte: one pass finds the separators, refused bytes and
// non-ASCII bytes of eight bytes at once, and hashes the name as it goes. A word costs
// one multiply on the chain and each component one more off it, so that a prefix's hash
// never waits for the components before it to be finished: parsing is half of a lookup
// that hits the cache.
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "separators are found by byte order in a word");
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
  uint64_t high = 0;
  uint64_t state = kRootHash;
  // A component ends at `at`, inside the word that begins at `base`.
  auto separator = [&](size_t at, uint64_t word, size_t base) -> NameError {
    if (at == start) return NameError::kEmptyComponent;
    if (p[start] == '.' && (at - start == 1 || (at - start == 2 && p[start + 1] == '.'))) return NameError::kDotComponent;
    if (k == kMaxComponents) return NameError::kTooManyComponents;
    ++k;
    out.end[k] = static_cast<uint16_t>(at);
    out.hash[k] = prefix_hash(state, word, base, at);
    start = at + 1;
    return NameError::kOk;
  };
  size_t i = 0;
  for (; i + 8 <= len; i += 8) {
    uint64_t w;
    std::memcpy(&w, p + i, 8);
    if (refused_bytes(w)) return first_refused(p + i, 8);
    high |= w;
    for (uint64_t sl = zero_bytes(w ^ (kOnes * '/')); sl; sl &= sl - 1) {
      const size_t at = i + (static_cast<size_t>(__builtin_ctzll(sl)) >> 3);
      if (at == 0) continue;  // the leading '/'
      NameError e = separator(at, w, i);
      if (e != NameError::kOk) return e;
    }
    state = mum(state ^ w, kK1);
  }
  // The last 0-7 bytes as one word too, read as the name's last eight bytes shifted down
  // when the name has eight (no byte-by-byte load), and checked with the bytes past the
  // end read as 'a', which is neither refused nor a separator.
  const size_t n = len - i;
  uint64_t tail = 0;
  if (n > 0) {
    if (len >= 8) {
      std::memcpy(&tail, p + len - 8, 8);
      tail >>= 8 * (8 - n);
    } else {
      tail = load_partial(p, len);
    }
    const uint64_t padded = tail | (~0ULL << (8 * n) & kOnes * 'a');
    if (refused_bytes(padded)) return first_refused(p + i, n);
    high |= tail;
    for (uint64_t sl = zero_bytes(padded ^ (kOnes * '/')); sl; sl &= sl - 1) {
      const size_t at = i + (static_cast<size_t>(__builtin_ctzll(sl)) >> 3);
      if (at == 0) continue;  // the leading '/'
      NameError e = separator(at, tail, i);
      if (e != NameError::kOk) return e;
    }
  }
  if (start == len) return NameError::kTrailingSlash;
  NameError e = separator(len, tail, i);
  if (e != NameError::kOk) return e;
  out.ascii = (high & kHigh) == 0;
  if (!out.ascii) {
    NameError u = check_utf8_name(p, len);
    if (u != NameError::kOk) return u;
  }
  out.ncomp = k;
  return NameError::kOk;
}

}  // namespace dmsc
