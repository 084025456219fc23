#include <string>

#include "harness.hpp"
#include "http1.hpp"

using namespace dmsc::http1;

static long req(const std::string& s, Head& h) { return parse_head(s.data(), s.size(), true, h); }
static long res(const std::string& s, Head& h) { return parse_head(s.data(), s.size(), false, h); }

TEST(http1_request_head) {
  Head h;
  std::string s = "POST /capability/ocr?x=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nAuthorization:  Bearer t \r\n\r\nhello";
  CHECK_EQ(req(s, h), static_cast<long>(s.size() - 5));
  CHECK(h.method == "POST");
  CHECK(h.target == "/capability/ocr?x=1");
  CHECK_EQ(h.minor, 1);
  CHECK_EQ(h.nheaders, static_cast<size_t>(3));
  CHECK_EQ(h.content_length, static_cast<int64_t>(5));
  CHECK(h.headers[2].value == "Bearer t");  // surrounding whitespace trimmed
  CHECK(!h.close);
}

TEST(http1_incomplete_heads_wait) {
  Head h;
  std::string s = "GET /capability/a HTTP/1.1\r\nHost: a\r\n\r\n";
  for (size_t n = 0; n < s.size(); ++n) CHECK_EQ(parse_head(s.data(), n, true, h), 0L);
  CHECK_EQ(parse_head(s.data(), s.size(), true, h), static_cast<long>(s.size()));
}

TEST(http1_refuses_what_could_smuggle) {
  Head h;
  // Two lengths, a length with a transfer-encoding, a length that is not a number.
  CHECK_EQ(req("POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n", h), -1L);
  CHECK_EQ(req("POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", h), -1L);
  CHECK_EQ(req("POST / HTTP/1.1\r\nContent-Length: +1\r\n\r\n", h), -1L);
  CHECK_EQ(req("POST / HTTP/1.1\r\nContent-Length: 1,1\r\n\r\n", h), -1L);
  // Whitespace before the colon, obs-fold, a bare LF, a control character.
  CHECK_EQ(req("GET / HTTP/1.1\r\nHost : a\r\n\r\n", h), -1L);
  CHECK_EQ(req("GET / HTTP/1.1\r\nX-A: a\r\n b\r\n\r\n", h), -1L);
  CHECK_EQ(req("GET / HTTP/1.1\nHost: a\r\n\r\n", h), -1L);
  CHECK_EQ(req("GET / HTTP/1.1\r\nHost: a\x01\r\n\r\n", h), -1L);
  // A start line that is not one.
  CHECK_EQ(req("GET  / HTTP/1.1\r\n\r\n", h), -1L);
  CHECK_EQ(req("GET / HTTP/2.0\r\n\r\n", h), -1L);
  CHECK_EQ(req("G(T / HTTP/1.1\r\n\r\n", h), -1L);
}

TEST(http1_transfer_encoding_and_connection) {
  Head h;
  CHECK(req("POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", h) > 0);
  CHECK(h.transfer_encoding && h.chunked);
  CHECK(req("POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", h) > 0);
  CHECK(h.transfer_encoding && !h.chunked);
  CHECK(req("GET / HTTP/1.1\r\nConnection: close\r\n\r\n", h) > 0);
  CHECK(h.close && !h.connection_tokens);
  CHECK(req("GET / HTTP/1.1\r\nConnection: keep-alive, x-secret\r\n\r\n", h) > 0);
  CHECK(!h.close && h.connection_tokens);
  CHECK(req("GET / HTTP/1.0\r\n\r\n", h) > 0);
  CHECK(h.close);
  CHECK(req("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", h) > 0);
  CHECK(!h.close);
}

TEST(http1_too_large_heads) {
  Head h;
  std::string big = "GET / HTTP/1.1\r\nX-A: " + std::string(kMaxHeadBytes, 'a') + "\r\n\r\n";
  CHECK_EQ(req(big, h), -2L);
  std::string many = "GET / HTTP/1.1\r\n";
  for (size_t i = 0; i <= kMaxHeaders; ++i) many += "X: 1\r\n";
  CHECK_EQ(req(many + "\r\n", h), -2L);
}

TEST(http1_response_head) {
  Head h;
  std::string s = "HTTP/1.1 503 Service Unavailable\r\nKeep-Alive: timeout=5\r\nContent-Length: 0\r\n\r\n";
  CHECK_EQ(res(s, h), static_cast<long>(s.size()));
  CHECK_EQ(h.status, 503);
  CHECK(h.reason == "Service Unavailable");
  CHECK_EQ(h.keep_alive_timeout, 5);
  CHECK(res("HTTP/1.1 200\r\n\r\n", h) > 0);
  CHECK_EQ(h.status, 200);
  CHECK_EQ(res("HTTP/1.1 20 OK\r\n\r\n", h), -1L);
  CHECK_EQ(res("HTTP/1.1 099 X\r\n\r\n", h), -1L);
  CHECK_EQ(res("this is not http\r\n\r\n", h), -1L);
}

static long feed_all(ChunkedScanner& c, const std::string& s, size_t step) {
  long total = 0;
  for (size_t i = 0; i < s.size() && !c.done(); i += step) {
    long n = c.feed(s.data() + i, std::min(step, s.size() - i));
    if (n < 0) return n;
    total += n;
  }
  return total;
}

TEST(http1_chunked_bodies_in_any_pieces) {
  std::string body = "5\r\nhello\r\n1A;ext=1\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nX-Trailer: 1\r\n\r\n";
  for (size_t step = 1; step <= body.size(); ++step) {
    ChunkedScanner c;
    CHECK_EQ(feed_all(c, body + "NEXT", step), static_cast<long>(body.size()));
    CHECK(c.done());
  }
}

TEST(http1_chunked_refuses_bad_framing) {
  for (const char* bad : {"x\r\n", "5\r\nhelloX\r\n", "5\nhello\r\n", "1234567890123456\r\n", "0\r\nX\n"}) {
    ChunkedScanner c;
    CHECK_EQ(feed_all(c, bad, 1), -1L);
  }
}
