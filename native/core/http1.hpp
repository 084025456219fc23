// HTTP/1.1 message heads and chunked bodies, for the native relay: strict parsing of
// what the relay reads (RFC 9112), no allocation. Anything the grammar does not allow is
// refused rather than guessed at (obs-fold, bare LF, whitespace before a colon, a
// content-length that is not one number, content-length with transfer-encoding): a
// proxy that reads a message differently from the server behind it is how requests are
// smuggled.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>

namespace dmsc::http1 {

constexpr size_t kMaxHeaders = 100;
constexpr size_t kMaxHeadBytes = 16 * 1024;

struct Header {
  std::string_view name;   // as sent; compare with iequals
  std::string_view value;  // leading and trailing whitespace trimmed
};

struct Head {
  // Request line.
  std::string_view method, target;
  // Status line.
  int status = 0;
  std::string_view reason;
  int minor = 1;  // HTTP/1.<minor>
  Header headers[kMaxHeaders];
  size_t nheaders = 0;
  int64_t content_length = -1;    // -1: none
  bool transfer_encoding = false; // any transfer-encoding header
  bool chunked = false;           // ... whose last coding is chunked
  bool close = false;             // connection: close (or HTTP/1.0 without keep-alive)
  bool connection_tokens = false; // connection names other headers (hop-by-hop too)
  int keep_alive_timeout = -1;    // keep-alive: timeout=N (seconds), response only
};

enum class Parse : int { kIncomplete = 0, kBad = -1, kTooLarge = -2 };

inline char lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c; }

inline bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (lower(a[i]) != lower(b[i])) return false;
  return true;
}

inline bool istarts(std::string_view a, std::string_view prefix) {
  return a.size() >= prefix.size() && iequals(a.substr(0, prefix.size()), prefix);
}

// RFC 9110 token characters.
inline bool tchar(unsigned char c) {
  static const char* extra = "!#$%&'*+-.^_`|~";
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
         (c && std::strchr(extra, c) != nullptr);
}

// field-vchar, SP or HTAB (obs-text allowed, as servers take it).
inline bool value_char(unsigned char c) { return c == '\t' || (c >= 0x20 && c != 0x7f); }

// Comma-separated list members, trimmed, empty ones skipped.
template <typename F>
void each_member(std::string_view v, F&& f) {
  size_t i = 0;
  while (i <= v.size()) {
    size_t j = v.find(',', i);
    if (j == std::string_view::npos) j = v.size();
    std::string_view m = v.substr(i, j - i);
    while (!m.empty() && (m.front() == ' ' || m.front() == '\t')) m.remove_prefix(1);
    while (!m.empty() && (m.back() == ' ' || m.back() == '\t')) m.remove_suffix(1);
    if (!m.empty()) f(m);
    i = j + 1;
  }
}

inline bool parse_u64(std::string_view s, int64_t& out) {
  if (s.empty() || s.size() > 15) return false;
  int64_t n = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    n = n * 10 + (c - '0');
  }
  out = n;
  return true;
}

// Parses a message head at the start of [p, p+n): the bytes it took (through the blank
// line), or a Parse value. `request` picks the start line's grammar.
inline long parse_head(const char* p, size_t n, bool request, Head& h) {
  // Every field but the header array (written as far as nheaders says) starts afresh.
  h.method = h.target = h.reason = std::string_view();
  h.status = 0;
  h.minor = 1;
  h.nheaders = 0;
  h.content_length = -1;
  h.transfer_encoding = h.chunked = h.close = h.connection_tokens = false;
  h.keep_alive_timeout = -1;
  size_t limit = n < kMaxHeadBytes ? n : kMaxHeadBytes;
  size_t i = 0;
  auto line_end = [&](size_t from) -> long {
    for (size_t k = from; k < limit; ++k) {
      if (p[k] == '\r') {
        if (k + 1 >= limit) return n >= kMaxHeadBytes ? -2 : -3;
        return p[k + 1] == '\n' ? static_cast<long>(k) : -1;
      }
      if (p[k] == '\n') return -1;  // a bare LF
    }
    return n >= kMaxHeadBytes ? -2 : -3;
  };
  long e = line_end(0);
  if (e < 0) return e == -3 ? 0 : e;
  std::string_view line(p, static_cast<size_t>(e));
  if (request) {
    size_t s1 = line.find(' ');
    if (s1 == std::string_view::npos || s1 == 0) return -1;
    size_t s2 = line.find(' ', s1 + 1);
    if (s2 == std::string_view::npos || s2 == s1 + 1) return -1;
    h.method = line.substr(0, s1);
    h.target = line.substr(s1 + 1, s2 - s1 - 1);
    std::string_view version = line.substr(s2 + 1);
    for (char c : h.method)
      if (!tchar(static_cast<unsigned char>(c))) return -1;
    for (char c : h.target)
      if (static_cast<unsigned char>(c) <= 0x20 || static_cast<unsigned char>(c) >= 0x7f) return -1;
    if (version == "HTTP/1.1") h.minor = 1;
    else if (version == "HTTP/1.0") h.minor = 0;
    else return -1;
  } else {
    if (line.size() < 12 || line.substr(0, 7) != "HTTP/1." || (line[7] != '0' && line[7] != '1') || line[8] != ' ') return -1;
    h.minor = line[7] - '0';
    for (int k = 9; k < 12; ++k)
      if (line[k] < '0' || line[k] > '9') return -1;
    h.status = (line[9] - '0') * 100 + (line[10] - '0') * 10 + (line[11] - '0');
    if (h.status < 100) return -1;
    if (line.size() > 12) {
      if (line[12] != ' ') return -1;
      h.reason = line.substr(13);
      for (char c : h.reason)
        if (!value_char(static_cast<unsigned char>(c))) return -1;
    }
  }
  bool keep_alive = false;
  bool saw_length = false;
  i = static_cast<size_t>(e) + 2;
  for (;;) {
    e = line_end(i);
    if (e < 0) return e == -3 ? 0 : e;
    if (static_cast<size_t>(e) == i) {  // the blank line
      i += 2;
      break;
    }
    if (h.nheaders == kMaxHeaders) return -2;
    std::string_view l(p + i, static_cast<size_t>(e) - i);
    size_t colon = l.find(':');
    if (colon == std::string_view::npos || colon == 0) return -1;  // also rejects obs-fold
    std::string_view name = l.substr(0, colon);
    for (char c : name)
      if (!tchar(static_cast<unsigned char>(c))) return -1;
    std::string_view value = l.substr(colon + 1);
    for (char c : value)
      if (!value_char(static_cast<unsigned char>(c))) return -1;
    while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.remove_prefix(1);
    while (!value.empty() && (value.back() == ' ' || value.back() == '\t')) value.remove_suffix(1);
    h.headers[h.nheaders++] = Header{name, value};
    if (iequals(name, "content-length")) {
      int64_t v;
      if (saw_length || !parse_u64(value, v)) return -1;
      saw_length = true;
      h.content_length = v;
    } else if (iequals(name, "transfer-encoding")) {
      h.transfer_encoding = true;
      h.chunked = false;
      each_member(value, [&](std::string_view m) { h.chunked = iequals(m, "chunked"); });
    } else if (iequals(name, "connection")) {
      each_member(value, [&](std::string_view m) {
        if (iequals(m, "close")) h.close = true;
        else if (iequals(m, "keep-alive")) keep_alive = true;
        else h.connection_tokens = true;
      });
    } else if (!request && iequals(name, "keep-alive")) {
      each_member(value, [&](std::string_view m) {
        int64_t t;
        if (istarts(m, "timeout=") && parse_u64(m.substr(8), t)) h.keep_alive_timeout = static_cast<int>(t > 86400 ? 86400 : t);
      });
    }
    i = static_cast<size_t>(e) + 2;
  }
  if (h.transfer_encoding && saw_length) return -1;
  if (h.minor == 0 && !keep_alive) h.close = true;
  return static_cast<long>(i);
}

// Finds the end of a chunked body (chunks, last chunk, trailers) fed in pieces.
class ChunkedScanner {
 public:
  // Consumes bytes of [p, p+n) up to the end of the body; returns how many, or -1 when
  // the framing is bad. done() says whether the end was reached.
  long feed(const char* p, size_t n) {
    size_t i = 0;
    while (i < n && state_ != kDone) {
      char c = p[i];
      switch (state_) {
        case kSize: {
          int d = hex(c);
          if (d >= 0) {
            if (++digits_ > 15) return -1;
            size_ = size_ * 16 + static_cast<uint64_t>(d);
          } else if (digits_ == 0) {
            return -1;
          } else if (c == '\r') {
            state_ = kSizeLf;
          } else if (c == ';' || c == ' ' || c == '\t') {
            state_ = kExt;
          } else {
            return -1;
          }
          ++i;
          break;
        }
        case kExt:
          if (c == '\r') state_ = kSizeLf;
          else if (c == '\n' || (static_cast<unsigned char>(c) < 0x20 && c != '\t')) return -1;
          ++i;
          break;
        case kSizeLf:
          if (c != '\n') return -1;
          ++i;
          state_ = size_ == 0 ? kTrailerStart : kData;
          break;
        case kData: {
          size_t take = n - i < size_ ? n - i : static_cast<size_t>(size_);
          i += take;
          size_ -= take;
          if (size_ == 0) state_ = kDataCr;
          break;
        }
        case kDataCr:
          if (c != '\r') return -1;
          ++i;
          state_ = kDataLf;
          break;
        case kDataLf:
          if (c != '\n') return -1;
          ++i;
          state_ = kSize;
          digits_ = 0;
          size_ = 0;
          break;
        case kTrailerStart:
          if (c == '\r') state_ = kEndLf;
          else if (c == '\n') return -1;
          else state_ = kTrailer;
          ++i;
          break;
        case kTrailer:
          if (++trailer_bytes_ > kMaxHeadBytes) return -1;
          if (c == '\r') state_ = kTrailerLf;
          else if (c == '\n') return -1;
          ++i;
          break;
        case kTrailerLf:
          if (c != '\n') return -1;
          ++i;
          state_ = kTrailerStart;
          break;
        case kEndLf:
          if (c != '\n') return -1;
          ++i;
          state_ = kDone;
          break;
        case kDone:
          break;
      }
    }
    return static_cast<long>(i);
  }
  bool done() const { return state_ == kDone; }

 private:
  static int hex(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  }
  enum State { kSize, kExt, kSizeLf, kData, kDataCr, kDataLf, kTrailerStart, kTrailer, kTrailerLf, kEndLf, kDone };
  State state_ = kSize;
  uint64_t size_ = 0;
  int digits_ = 0;
  size_t trailer_bytes_ = 0;
};

}  // namespace dmsc::http1
