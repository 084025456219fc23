#include <cstdio>
#include <string>

#include "flow_hash.hpp"
#include "harness.hpp"
#include "name.hpp"

using namespace dmsc;

static NameError parse(const std::string& s, ParsedName& pn) {
  return parse_name(reinterpret_cast<const uint8_t*>(s.data()), s.size(), pn);
}

TEST(name_accepts_valid_names) {
  ParsedName pn;
  CHECK(parse("/", pn) == NameError::kOk);
  CHECK_EQ(pn.ncomp, 0u);
  CHECK(parse("/capability/ocr/high-precision", pn) == NameError::kOk);
  CHECK_EQ(pn.ncomp, 3u);
  CHECK_EQ(pn.end[1], 11);
  CHECK_EQ(pn.end[2], 15);
  CHECK(parse("/capability/\xc3\xa9t\xc3\xa9", pn) == NameError::kOk);
  CHECK_EQ(pn.ncomp, 2u);
  CHECK_EQ(pn.end[2], 17);  // bytes, not characters
}

TEST(name_rejects_malformed_names) {
  ParsedName pn;
  CHECK(parse("", pn) == NameError::kEmpty);
  CHECK(parse("capability", pn) == NameError::kNoLeadingSlash);
  CHECK(parse("/a//b", pn) == NameError::kEmptyComponent);
  CHECK(parse("//", pn) == NameError::kEmptyComponent);
  CHECK(parse("/a/", pn) == NameError::kTrailingSlash);
  CHECK(parse(std::string("/a\0b", 4), pn) == NameError::kNul);
  CHECK(parse("/a\xff", pn) == NameError::kInvalidUtf8);
  CHECK(parse("/\xed\xa0\x80", pn) == NameError::kInvalidUtf8);  // surrogate
  CHECK(parse("/\xc0\xaf", pn) == NameError::kInvalidUtf8);      // overlong '/'
  std::string deep;
  for (int i = 0; i < 32; ++i) deep += "/x";
  CHECK(parse(deep, pn) == NameError::kOk);
  CHECK(parse(deep + "/x", pn) == NameError::kTooManyComponents);
  CHECK(parse("/" + std::string(1023, 'a'), pn) == NameError::kOk);
  CHECK(parse("/" + std::string(1024, 'a'), pn) == NameError::kTooLong);
}

TEST(name_refuses_what_cannot_be_read_or_served) {
  ParsedName pn;
  // In the word-at-a-time part (past the first eight bytes) and in the tail.
  for (const char* where : {"/capability/ocr/x%sy", "/a%s"}) {
    auto with = [&](const std::string& bad) {
      char buf[64];
      std::snprintf(buf, sizeof buf, where, bad.c_str());
      return parse(buf, pn);
    };
    CHECK(with("\n") == NameError::kControl);
    CHECK(with("\r\nx-evil: 1") == NameError::kControl);
    CHECK(with("\x7f") == NameError::kControl);
    CHECK(with(" ") == NameError::kWhitespace);
    CHECK(with("\\") == NameError::kBackslash);
    CHECK(with("\xc2\x85") == NameError::kControl);          // U+0085 (C1)
    CHECK(with("\xc2\xa0") == NameError::kWhitespace);       // U+00A0
    CHECK(with("\xe3\x80\x80") == NameError::kWhitespace);   // U+3000
    CHECK(with("\xe2\x80\xae") == NameError::kBidiControl);  // U+202E
    CHECK(with("\xe2\x81\xa6") == NameError::kBidiControl);  // U+2066
    CHECK(with("\xd8\x9c") == NameError::kBidiControl);      // U+061C
    CHECK(with("\xe2\x80\x8b") == NameError::kInvisible);    // U+200B
    CHECK(with("\xef\xbb\xbf") == NameError::kInvisible);    // U+FEFF
  }
  CHECK(parse("/capability/./x", pn) == NameError::kDotComponent);
  CHECK(parse("/capability/..", pn) == NameError::kDotComponent);
  CHECK(parse("/..", pn) == NameError::kDotComponent);
  // Dots inside a component are fine, as are other scripts and symbols.
  CHECK(parse("/capability/.hidden/a..b/...", pn) == NameError::kOk);
  CHECK(parse("/capability/\xe7\xbf\xbb\xe8\xa8\xb3/\xf0\x9f\x98\x80/a%20b", pn) == NameError::kOk);
  CHECK(parse("/capability/\xe2\x80\x8d", pn) == NameError::kOk);  // U+200D (ZWJ) stays
}

TEST(prefix_hashes_match_the_hash_of_the_prefix_itself) {
  ParsedName full, pre;
  CHECK(parse("/capability/ocr/fast", full) == NameError::kOk);
  CHECK(parse("/capability/ocr", pre) == NameError::kOk);
  CHECK_EQ(full.hash[2], pre.hash[2]);
  CHECK(parse("/capability/oc", pre) == NameError::kOk);
  CHECK(full.hash[2] != pre.hash[2]);
  CHECK(parse("/", pre) == NameError::kOk);
  CHECK_EQ(full.hash[0], pre.hash[0]);
  CHECK_EQ(name_hash(reinterpret_cast<const uint8_t*>("/"), 1), pre.hash[0]);
}

// Separators fall at every offset of an 8-byte word, at its edges too, and components
// run longer than a word: every prefix of a name hashes as the prefix alone does, and
// distinct prefixes apart.
TEST(prefix_hashes_agree_at_every_offset_in_a_word) {
  uint64_t x = 88172645463325252ULL;
  auto rnd = [&](uint64_t n) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return x % n;
  };
  int mismatches = 0;
  for (int round = 0; round < 2000; ++round) {
    std::string name;
    const uint64_t parts = 1 + rnd(9);
    for (uint64_t c = 0; c < parts; ++c) {
      name += '/';
      const uint64_t n = 1 + rnd(c % 3 == 0 ? 19 : 7);
      for (uint64_t j = 0; j < n; ++j) name += static_cast<char>('a' + rnd(3));
    }
    ParsedName full, pre;
    CHECK(parse(name, full) == NameError::kOk);
    for (uint32_t d = 1; d <= full.ncomp; ++d) {
      CHECK(parse(name.substr(0, full.end[d]), pre) == NameError::kOk);
      if (pre.hash[pre.ncomp] != full.hash[d]) ++mismatches;
      // The rehash of a held name (a growing index) is the same hash.
      if (name_hash(reinterpret_cast<const uint8_t*>(name.data()), full.end[d]) != full.hash[d]) ++mismatches;
    }
  }
  CHECK_EQ(mismatches, 0);
  ParsedName a, b;
  CHECK(parse("/abcdefg/h", a) == NameError::kOk);
  CHECK(parse("/abcdefgh", b) == NameError::kOk);  // same bytes but for one separator
  CHECK(a.hash[2] != b.hash[1]);
}

TEST(utf16_length_counts_code_units) {
  std::string s = "/a\xc3\xa9\xf0\x9f\x98\x80";  // "/aé😀"
  CHECK_EQ(utf16_length(reinterpret_cast<const uint8_t*>(s.data()), s.size()), size_t(5));
}

TEST(neglog2_is_monotone_and_bounded) {
  uint32_t prev = neglog2_q16(0);
  CHECK_EQ(prev, 32u << 16);
  for (uint64_t x = 1; x < (1ULL << 32); x += 65521) {
    uint32_t v = neglog2_q16(static_cast<uint32_t>(x));
    CHECK(v <= prev);
    CHECK(v >= 1);
    prev = v;
  }
  CHECK(neglog2_q16(0xFFFFFFFFu) >= 1);
  // -log2(0.5) = 1.0
  CHECK_EQ(neglog2_q16(0x80000000u), 1u << 16);
}
