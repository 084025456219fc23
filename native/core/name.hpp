// Capability names: validation and per-component prefix hashing in one pass. The grammar
// is the one src/names.ts states (a differential property test holds the two together):
// no empty, '.' or '..' component, no control character, white space, bidirectional
// control, invisible character or backslash, valid UTF-8, at most 32 components and
// 1024 bytes.
//
// A lookup probes the table once per candidate prefix, longest first, so the parser
// hands back the hash of every component-boundary prefix; no prefix is hashed twice.
#pragma once

#include <cstddef>
#include <cstdint>

namespace dmsc {

constexpr size_t kMaxNameBytes = 1024;
constexpr uint32_t kMaxComponents = 32;

enum class NameError : uint8_t {
  kOk = 0,
  kEmpty,
  kNoLeadingSlash,
  kEmptyComponent,
  kTrailingSlash,
  kNul,
  kInvalidUtf8,
  kTooLong,
  kTooManyComponents,
  kControl,
  kWhitespace,
  kBidiControl,
  kInvisible,
  kBackslash,
  kDotComponent,
};

const char* name_error_message(NameError e);

// The 128-bit product of a and b folded to 64 bits (low half XOR high half): every input
// bit reaches every output bit, in one multiply. The mixing step of the name hash, and of
// the batch's index of ids and tags.
inline uint64_t mum(uint64_t a, uint64_t b) {
  const __uint128_t r = static_cast<__uint128_t>(a) * b;
  return static_cast<uint64_t>(r) ^ static_cast<uint64_t>(r >> 64);
}

struct ParsedName {
  uint32_t ncomp = 0;        // 0 for the root "/"
  bool ascii = true;         // no byte above 0x7F
  uint16_t end[kMaxComponents + 1];   // end[k]: byte length of the k-component prefix
  uint64_t hash[kMaxComponents + 1];  // hash[k]: hash of the k-component prefix
};

NameError parse_name(const uint8_t* p, size_t len, ParsedName& out);

// The hash parse_name gives a valid name as a whole (its last prefix), with no check and
// no other prefix: for names the table already holds, rehashed when its index grows.
uint64_t name_hash(const uint8_t* p, size_t len);

// Strict UTF-8 (no overlongs, surrogates or code points above U+10FFFF).
bool valid_utf8(const uint8_t* p, size_t len);

// Number of UTF-16 code units the UTF-8 bytes decode to (input must be valid UTF-8).
size_t utf16_length(const uint8_t* p, size_t len);

}  // namespace dmsc
