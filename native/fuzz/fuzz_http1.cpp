// libFuzzer target over the relay's HTTP/1.1 parsing: the first byte picks a request
// head, a response head, or a chunked body fed in pieces (the second byte sets their
// size). Invariants: a head ends at its blank line and every header lies inside it; a
// head is never taken from fewer bytes than it needs; framing never claims both a length
// and a transfer-encoding; the chunked scanner's answer does not depend on how its input
// was split. Nothing crashes.
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>

#include "http1.hpp"

using namespace dmsc::http1;

namespace {

void check(bool ok) {
  if (!ok) std::abort();
}

void head(const char* p, size_t n, bool request) {
  static Head h;  // large: not on the stack
  long used = parse_head(p, n, request, h);
  check(used >= -2 && used <= static_cast<long>(n));
  if (used <= 0) return;
  check(used >= 4 && std::memcmp(p + used - 4, "\r\n\r\n", 4) == 0);
  check(h.nheaders <= kMaxHeaders);
  for (size_t i = 0; i < h.nheaders; ++i) {
    check(h.headers[i].name.data() >= p && h.headers[i].name.data() + h.headers[i].name.size() <= p + used);
    check(h.headers[i].value.data() >= p && h.headers[i].value.data() + h.headers[i].value.size() <= p + used);
  }
  check(!(h.transfer_encoding && h.content_length >= 0));
  check(!h.chunked || h.transfer_encoding);
  check(request ? !h.method.empty() && !h.target.empty() : h.status >= 100 && h.status <= 999);
  // The same head from one byte less is not complete yet (or, when the cut lands in a
  // line ending, not taken as anything else).
  static Head shorter;
  check(parse_head(p, static_cast<size_t>(used) - 1, request, shorter) <= 0);
}

void chunked(const char* p, size_t n, size_t step) {
  ChunkedScanner whole;
  long all = whole.feed(p, n);
  ChunkedScanner pieces;
  long total = 0;
  bool failed = false;
  for (size_t i = 0; i < n && !pieces.done(); i += step) {
    long got = pieces.feed(p + i, std::min(step, n - i));
    if (got < 0) {
      failed = true;
      break;
    }
    total += got;
    if (!pieces.done() && static_cast<size_t>(got) != std::min(step, n - i)) std::abort();  // took less without ending
  }
  if (all < 0) {
    check(failed);
    return;
  }
  check(!failed && total == all && pieces.done() == whole.done());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const char* p = reinterpret_cast<const char*>(data + 2);
  size_t n = size - 2;
  switch (data[0] % 3) {
    case 0: head(p, n, true); break;
    case 1: head(p, n, false); break;
    default: chunked(p, n, 1 + data[1] % 16); break;
  }
  return 0;
}
