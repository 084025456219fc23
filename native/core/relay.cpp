// The native relay's loop. See relay.hpp for what it serves and what it hands over.
//
// One thread, one level-triggered epoll set: the listener, a wake-up eventfd, requester
// connections, instance connections (pooled per address, kept alive) and connections to
// the TypeScript data plane. A requester connection carries one request at a time;
// bytes of the next wait in its buffer. Sockets closed while a batch of events is being
// handled are freed after it, so no event reaches freed memory.
#include "relay.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <mutex>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <unordered_set>

#include "http1.hpp"
#include "name.hpp"
#include "table.hpp"

namespace dmsc {

namespace {

using http1::iequals;
using http1::istarts;

constexpr size_t kReadChunk = 64 * 1024;
constexpr size_t kHighWater = 256 * 1024;  // pending output that stops the other side's reads
constexpr size_t kMaxIdlePerPool = 64;
constexpr int kDefaultKeepAliveMs = 4000;  // an instance that names no keep-alive timeout
constexpr int kSweepMs = 100;
constexpr int64_t kRefreshMs = 100;
constexpr size_t kMaxClients = 16384;
constexpr uint32_t kOut = EPOLLOUT;

int64_t mono_ms() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

int64_t wall_ms() {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

bool parse_addr(const std::string& host, uint16_t port, sockaddr_storage& out, socklen_t& len) {
  std::memset(&out, 0, sizeof(out));
  auto* v4 = reinterpret_cast<sockaddr_in*>(&out);
  if (inet_pton(AF_INET, host.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(port);
    len = sizeof(sockaddr_in);
    return true;
  }
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&out);
  std::string h = host.size() > 2 && host.front() == '[' && host.back() == ']' ? host.substr(1, host.size() - 2) : host;
  if (inet_pton(AF_INET6, h.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(port);
    len = sizeof(sockaddr_in6);
    return true;
  }
  return false;
}

void json_escape(std::string& out, std::string_view s) {
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\u%04x", c);
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
  }
}

// Request headers never passed on (hop-by-hop, the credential, what is set here).
bool drop_request(std::string_view n) {
  static const char* names[] = {"connection", "keep-alive", "proxy-connection", "proxy-authorization", "te", "trailer",
                                "transfer-encoding", "upgrade", "host", "authorization", "expect", "content-length"};
  for (const char* d : names)
    if (iequals(n, d)) return true;
  return istarts(n, "x-dmsc-") && !iequals(n, "x-dmsc-flow");
}

bool drop_response(std::string_view n) {
  static const char* names[] = {"connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade"};
  for (const char* d : names)
    if (iequals(n, d)) return true;
  return istarts(n, "x-dmsc-");
}

// The request path a capability name may take here: unreserved and sub-delim characters
// only, no percent-encoding, no dot segments. Anything else goes to the TypeScript data
// plane, which checks it fully.
bool plain_path(std::string_view p) {
  for (char c : p) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              std::strchr("-._~/!$&'()*+,;=:@", c) != nullptr;
    if (!ok || c == 0) return false;
  }
  size_t i = 0;
  while (i < p.size()) {
    size_t j = p.find('/', i);
    if (j == std::string_view::npos) j = p.size();
    std::string_view seg = p.substr(i, j - i);
    if (seg == "." || seg == "..") return false;
    i = j + 1;
  }
  return true;
}

// The flow key of x-dmsc-flow, as the TypeScript flowKey computes it over the header's
// characters (each byte one UTF-16 code unit, as Node reads header values).
uint32_t flow_key(std::string_view v) {
  uint32_t h = 0x811C9DC5u;
  for (unsigned char c : v) {
    h = (h ^ c) * 0x01000193u;
    h = (h ^ 0u) * 0x01000193u;
  }
  return h;
}

bool known_method(std::string_view m) {
  return m == "GET" || m == "HEAD" || m == "POST" || m == "PUT" || m == "DELETE" || m == "PATCH" || m == "OPTIONS" || m == "TRACE";
}

// Whether a request the parser refused names an HTTP version other than 1.0 and 1.1 (an
// HTTP/2 preface, say): that gets a 505 rather than a 400.
bool other_version(const std::string& in) {
  size_t eol = in.find('\n');
  std::string_view line(in.data(), eol == std::string::npos ? in.size() : eol);
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  size_t sp = line.rfind(' ');
  if (sp == std::string_view::npos) return false;
  std::string_view version = line.substr(sp + 1);
  return version.substr(0, 5) == "HTTP/" && version != "HTTP/1.1" && version != "HTTP/1.0";
}

// An accepted peer's address as text ("" if it is neither IPv4 nor IPv6).
std::string address_text(const sockaddr_storage& a) {
  char buf[INET6_ADDRSTRLEN] = {0};
  if (a.ss_family == AF_INET) inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in&>(a).sin_addr, buf, sizeof(buf));
  else if (a.ss_family == AF_INET6) inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6&>(a).sin6_addr, buf, sizeof(buf));
  return buf;
}

bool retryable_method(std::string_view m) {
  return m == "GET" || m == "HEAD" || m == "OPTIONS" || m == "PUT" || m == "DELETE" || m == "TRACE";
}

}  // namespace

struct Relay::Impl {
  enum Kind : uint8_t { kListener, kWake, kClient, kUpstream, kTunnel };
  struct Exchange;
  struct Pool;

  struct Sock {
    Kind kind;
    int fd = -1;
    uint32_t events = 0;
    bool dead = false;
  };

  struct Client : Sock {
    std::string in;
    std::string out;
    size_t out_off = 0;
    std::unique_ptr<Exchange> ex;
    struct Sock* tunnel = nullptr;  // the TypeScript data plane's connection, once handed over
    bool close_after = false;
    bool read_closed = false;
    int64_t idle_until = 0;
    bool lingering = false;  // answered and shut for writing, reading what still comes
    std::string from;  // the requester's address, told to the TypeScript data plane
  };

  struct Upstream : Sock {
    Pool* pool = nullptr;
    Client* client = nullptr;  // while an exchange uses it
    bool connected = false;
    bool reused = false;
    std::string out;
    size_t out_off = 0;
    std::string in;
    int64_t deadline = 0;
    int64_t idle_until = 0;
    // The answer under way.
    bool head_done = false;
    enum Mode { kLength, kChunked, kUntilClose, kNone } mode = kNone;
    int64_t remaining = 0;
    http1::ChunkedScanner chunks;
    bool reusable = true;
    int keep_alive_ms = kDefaultKeepAliveMs;
    bool handed = false;  // carries a request for the TypeScript data plane, which keeps its own time
  };

  // The other end of a handed-over connection.
  struct Tunnel : Sock {
    Client* client = nullptr;
    std::string out;
    size_t out_off = 0;
    bool connected = false;
  };

  struct Pool {
    sockaddr_storage addr;
    socklen_t len = 0;
    std::vector<Upstream*> idle;
  };

  struct Exchange {
    std::string method;
    bool head_method = false;
    std::string raw;           // the request as read, for the TypeScript data plane
    std::string name, query, capability, token, aic;
    std::string headers;       // those passed on, as "name: value\r\n" lines
    std::string body;
    std::string sent;          // the attempt under way, as sent
    bool has_flow = false;
    uint32_t flow = 0;
    bool handed = false;       // answered by the TypeScript data plane, passed on as is
    bool answered = false;     // our answer has begun
    bool fresh_retry = false;  // a reused connection that closed was replaced once
    uint32_t attempts = 0, looks = 0;
    std::vector<int32_t> tried;
    std::string last;
    // The attempt under way.
    int32_t nh = -1;
    uint64_t epoch = 0;
    std::string nh_id, prefix;
    Upstream* up = nullptr;
  };

  // What was taught holds for cache_ms. For as long again after, it is still used while
  // one request at a time (every kRefreshMs) goes to the TypeScript data plane to have it
  // taught again: what the relay holds is renewed without all requests missing at once.
  struct Held {
    int64_t until = 0;  // monotonic
    int64_t asked = 0;  // when a request last went to have it renewed
  };
  struct Cred {
    std::string aic;
    int64_t expires_ms = 0;  // wall clock
    std::unordered_map<std::string, Held> grants;  // by capability
  };
  struct Endpoint {
    sockaddr_storage addr;
    socklen_t len = 0;
    std::string hostport, base, search;
    Held held;
  };

  std::shared_ptr<Table> table;
  RelayConfig cfg;
  RelayCounters counters;
  ReaderSlot* slot = nullptr;
  int ep = -1, listen_fd = -1, wake_fd = -1;
  Sock listener_sock{kListener}, wake_sock{kWake};
  std::thread thread;
  std::atomic<bool> stopping{false};
  bool started = false;
  sockaddr_storage fallback_addr;
  socklen_t fallback_len = 0;

  // Taught by the JS thread, read by the loop.
  std::mutex mu;
  std::unordered_map<std::string, Cred> creds;
  std::unordered_map<std::string, Endpoint> endpoints;
  std::vector<std::string> down;

  // Loop-owned.
  std::unordered_set<Sock*> socks;
  std::vector<Sock*> graveyard;
  // Requesters whose exchange ended, for their next request: taken by the loop, not
  // from inside the exchange's own calls (a run of pipelined requests failing at once
  // would otherwise nest one call per request).
  std::vector<Client*> ready;
  size_t clients = 0;
  bool accepting = true;
  std::unordered_map<std::string, std::unique_ptr<Pool>> pools;
  std::unique_ptr<Pool> fallback_pool;
  int64_t now = 0;

  Impl(std::shared_ptr<Table> t, RelayConfig c) : table(std::move(t)), cfg(std::move(c)) {}

  // Whether what is held may serve this request (under mu); false: the request goes to
  // the TypeScript data plane.
  bool usable(Held& h) {
    if (h.until > now) return true;
    if (h.until + static_cast<int64_t>(cfg.cache_ms) <= now) return false;
    if (h.asked + kRefreshMs > now) return true;
    h.asked = now;
    return false;
  }

  // --- epoll bookkeeping -----------------------------------------------------------------

  // Sets what a socket is watched for; 0 takes it out of the set.
  void watch(Sock* s, uint32_t events) {
    if (s->dead || s->events == events) return;
    epoll_event ev{};
    ev.events = events;
    ev.data.ptr = s;
    int op = events == 0 ? EPOLL_CTL_DEL : s->events == 0 ? EPOLL_CTL_ADD : EPOLL_CTL_MOD;
    epoll_ctl(ep, op, s->fd, op == EPOLL_CTL_DEL ? nullptr : &ev);
    s->events = events;
  }

  void kill(Sock* s) {
    if (s->dead) return;
    s->dead = true;
    if (s->kind == kUpstream) {
      // One idle in its pool leaves it (a pool never holds a freed connection).
      auto* up = static_cast<Upstream*>(s);
      auto& idle = up->pool->idle;
      if (!up->client) idle.erase(std::remove(idle.begin(), idle.end(), up), idle.end());
    }
    if (s->fd >= 0) {
      epoll_ctl(ep, EPOLL_CTL_DEL, s->fd, nullptr);
      ::close(s->fd);
      s->fd = -1;
    }
    socks.erase(s);
    if (s->kind == kClient) --clients;
    graveyard.push_back(s);
  }

  void bury() {
    for (Sock* s : graveyard) {
      switch (s->kind) {
        case kClient: delete static_cast<Client*>(s); break;
        case kUpstream: delete static_cast<Upstream*>(s); break;
        case kTunnel: delete static_cast<Tunnel*>(s); break;
        default: break;
      }
    }
    graveyard.clear();
  }

  // Writes what it can of out[off..]; false when the connection failed.
  static bool flush(int fd, std::string& out, size_t& off) {
    while (off < out.size()) {
      ssize_t n = ::send(fd, out.data() + off, out.size() - off, MSG_NOSIGNAL);
      if (n > 0) {
        off += static_cast<size_t>(n);
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
      return false;
    }
    if (off == out.size()) {
      out.clear();
      off = 0;
    } else if (off > kHighWater) {
      out.erase(0, off);
      off = 0;
    }
    return true;
  }

  char chunk[kReadChunk];  // the loop's read buffer

  // Reads what is there into `in`; 1: some, 0: end of stream, -1: failure, 2: nothing yet.
  int fill(int fd, std::string& in) {
    int got = 2;
    for (int rounds = 0; rounds < 4; ++rounds) {
      ssize_t n = ::recv(fd, chunk, kReadChunk, 0);
      if (n > 0) {
        in.append(chunk, static_cast<size_t>(n));
        got = 1;
        if (static_cast<size_t>(n) < kReadChunk) return got;
        continue;
      }
      if (n == 0) return got == 1 ? 1 : 0;
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return got;
      return got == 1 ? 1 : -1;
    }
    return got;
  }

  static size_t pending(const std::string& out, size_t off) { return out.size() - off; }

  int connect_to(const sockaddr_storage& addr, socklen_t len, bool& done) {
    int fd = ::socket(addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    int r = ::connect(fd, reinterpret_cast<const sockaddr*>(&addr), len);
    if (r == 0) {
      done = true;
      return fd;
    }
    if (errno == EINPROGRESS) {
      done = false;
      return fd;
    }
    int e = errno;
    ::close(fd);
    errno = e;
    return -1;
  }

  // --- the loop --------------------------------------------------------------------------

  void run() {
    epoll_event evs[256];
    int64_t next_sweep = mono_ms() + kSweepMs;
    while (!stopping.load(std::memory_order_acquire)) {
      int n = epoll_wait(ep, evs, 256, kSweepMs);
      now = mono_ms();
      for (int i = 0; i < n; ++i) {
        auto* s = static_cast<Sock*>(evs[i].data.ptr);
        if (s->dead) continue;
        uint32_t e = evs[i].events;
        switch (s->kind) {
          case kListener: on_accept(); break;
          case kWake: {
            uint64_t v;
            ssize_t r = ::read(wake_fd, &v, sizeof(v));
            (void)r;
            break;
          }
          case kClient: on_client(static_cast<Client*>(s), e); break;
          case kUpstream: on_upstream(static_cast<Upstream*>(s), e); break;
          case kTunnel: on_tunnel(static_cast<Tunnel*>(s), e); break;
        }
      }
      drain_ready();
      if (now >= next_sweep) {
        sweep();
        drain_ready();
        next_sweep = now + kSweepMs;
      }
      bury();
    }
    for (Sock* s : std::vector<Sock*>(socks.begin(), socks.end())) kill(s);
    bury();
  }

  void drain_ready() {
    while (!ready.empty()) {
      std::vector<Client*> now_ready;
      now_ready.swap(ready);
      for (Client* c : now_ready)
        if (!c->dead) process(c);
    }
  }

  // Accepting stops at the connection cap, or when descriptors run out (a listener left
  // readable would spin the loop); the sweep starts it again.
  void pause_accepting() {
    if (!accepting) return;
    accepting = false;
    watch(&listener_sock, 0);
  }

  void on_accept() {
    for (int k = 0; k < 64; ++k) {
      if (clients >= kMaxClients) return pause_accepting();
      sockaddr_storage peer{};
      socklen_t peer_len = sizeof(peer);
      int fd = ::accept4(listen_fd, reinterpret_cast<sockaddr*>(&peer), &peer_len, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) {
        if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) pause_accepting();
        return;
      }
      ++clients;
      int one = 1;
      setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
      auto* c = new Client();
      c->kind = kClient;
      c->fd = fd;
      c->idle_until = now + cfg.client_idle_ms;
      c->from = address_text(peer);
      socks.insert(c);
      watch(c, EPOLLIN | EPOLLRDHUP);
    }
  }

  // --- requesters ------------------------------------------------------------------------

  void on_client(Client* c, uint32_t e) {
    if (c->lingering) return discard(c);
    if (e & EPOLLOUT) {
      if (!write_client(c)) return;
    }
    if (c->dead) return;
    if (e & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
      if (c->tunnel) return tunnel_from_client(c);
      // Input is bounded: a head and a kept body when a request is being read; a next
      // head while one is under way; nothing once the connection is to close.
      size_t cap = c->ex ? http1::kMaxHeadBytes : http1::kMaxHeadBytes + cfg.replay_bytes;
      if (c->in.size() >= cap || (c->close_after && !c->ex)) {
        if (e & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) return drop_client(c);
        return watch(c, c->events & ~EPOLLIN);
      }
      int r = fill(c->fd, c->in);
      if (r <= 0) return drop_client(c);
      if (!c->ex) process(c);
    }
  }

  // The requester went away, or its connection failed: its request is called off, and
  // the instance is not blamed.
  void drop_client(Client* c) {
    if (c->ex && c->ex->up) release_upstream(c->ex->up, false);
    if (c->tunnel) kill(c->tunnel);
    c->ex.reset();
    kill(c);
  }

  bool write_client(Client* c) {
    if (!flush(c->fd, c->out, c->out_off)) {
      drop_client(c);
      return false;
    }
    bool rest = pending(c->out, c->out_off) > 0;
    uint32_t want = (c->events & ~EPOLLOUT) | (rest ? kOut : 0u);
    watch(c, want);
    // Output drained: the side feeding it may read again.
    if (pending(c->out, c->out_off) < kHighWater / 4) {
      if (c->ex && c->ex->up && c->ex->up->head_done && !(c->ex->up->events & EPOLLIN)) watch(c->ex->up, c->ex->up->events | EPOLLIN);
      if (c->tunnel && !(c->tunnel->events & EPOLLIN)) watch(c->tunnel, c->tunnel->events | EPOLLIN);
    }
    if (!rest && c->close_after && !c->ex) {
      linger(c);
      return false;
    }
    return true;
  }

  // Closing a connection the requester is still writing to would reset it, and the reset
  // can throw away the answer just sent (a 431 to a request with a 1 MB header, say).
  // So the sending side is shut, and what still comes is read and dropped until the
  // requester closes too, for a second at most.
  void linger(Client* c) {
    if (c->lingering) return;
    c->lingering = true;
    ::shutdown(c->fd, SHUT_WR);
    c->in.clear();
    c->idle_until = now + 1000;
    watch(c, EPOLLIN | EPOLLRDHUP);
  }

  void discard(Client* c) {
    char buf[16384];
    for (;;) {
      ssize_t n = ::read(c->fd, buf, sizeof(buf));
      if (n > 0) continue;
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
      return kill(c);
    }
  }

  void send_client(Client* c, std::string_view bytes) {
    c->out.append(bytes.data(), bytes.size());
    write_client(c);
  }

  // Takes the next request from the requester's buffer, when a whole one is there.
  void process(Client* c) {
    while (!c->dead && !c->ex && !c->tunnel && !c->close_after) {
      // Empty lines before a request line are ignored (RFC 9112 §2.2).
      size_t blank = 0;
      while (blank + 1 < c->in.size() && c->in[blank] == '\r' && c->in[blank + 1] == '\n') blank += 2;
      if (blank) c->in.erase(0, blank);
      if (c->in.empty()) return watch(c, (c->events | EPOLLIN | EPOLLRDHUP));
      http1::Head h;
      long used = http1::parse_head(c->in.data(), c->in.size(), true, h);
      if (used == 0) return watch(c, (c->events | EPOLLIN | EPOLLRDHUP));
      // Too large a head: the Node listener answers it (431) under its own limits. Not a
      // request this relay takes (smuggling, bad framing, another HTTP version): answered
      // here, then the connection closes, as the Node listener does.
      if (used == static_cast<long>(http1::Parse::kTooLarge)) return tunnel(c);
      if (used < 0) {
        if (other_version(c->in)) return refuse(c, "505 HTTP Version Not Supported", "ERR_DMSC_HTTP_VERSION", "the data plane speaks HTTP/1.1 (and 1.0) only");
        return refuse(c, "400 Bad Request", "ERR_DMSC_MALFORMED_REQUEST", "not a request the data plane can take (malformed or ambiguous framing)");
      }
      counters.requests.fetch_add(1, std::memory_order_relaxed);
      bool has_expect = false, has_upgrade = false;
      for (size_t i = 0; i < h.nheaders; ++i) {
        if (iequals(h.headers[i].name, "expect")) has_expect = true;
        if (iequals(h.headers[i].name, "upgrade")) has_upgrade = true;
      }
      // A body that streams (or a request that asks for more than one exchange): the
      // connection goes over to the TypeScript data plane whole.
      if (h.transfer_encoding || has_expect || has_upgrade || h.content_length > static_cast<int64_t>(cfg.replay_bytes))
        return tunnel(c);
      size_t body = h.content_length > 0 ? static_cast<size_t>(h.content_length) : 0;
      size_t total = static_cast<size_t>(used) + body;
      if (c->in.size() < total) return watch(c, (c->events | EPOLLIN | EPOLLRDHUP));
      auto ex = std::make_unique<Exchange>();
      ex->raw.assign(c->in.data(), total);
      ex->body.assign(c->in.data() + used, body);
      bool native = admit(h, *ex);
      if (h.close) c->close_after = true;
      c->in.erase(0, total);
      c->idle_until = 0;
      Exchange* x = ex.get();
      c->ex = std::move(ex);
      if (native) next_attempt(c, x);
      else hand(c, x);
    }
  }

  // Whether the request can be served here: reads what it needs from the head into `ex`.
  bool admit(const http1::Head& h, Exchange& ex) {
    ex.method.assign(h.method);
    ex.head_method = h.method == "HEAD";
    // HTTP/1.0 (no chunked answers), methods outside RFC 9110's and PATCH, a request
    // without Host: the Node listener answers those as it does.
    if (h.minor == 0 || !known_method(h.method)) return false;
    std::string_view target = h.target;
    size_t q = target.find('?');
    std::string_view name = q == std::string_view::npos ? target : target.substr(0, q);
    if (name != "/capability" && name.substr(0, 12) != "/capability/") return false;
    if (!plain_path(name) || h.connection_tokens) return false;
    std::string_view capability = name.size() > 1 && name.back() == '/' ? name.substr(0, name.size() - 1) : name;
    ParsedName pn;
    if (parse_name(reinterpret_cast<const uint8_t*>(capability.data()), capability.size(), pn) != NameError::kOk) return false;
    ex.name.assign(name);
    ex.query.assign(q == std::string_view::npos ? std::string_view() : target.substr(q));
    ex.capability.assign(capability);
    int auths = 0, flows = 0;
    bool host = false;
    for (size_t i = 0; i < h.nheaders; ++i) {
      const http1::Header& hd = h.headers[i];
      if (iequals(hd.name, "host")) host = true;
      if (iequals(hd.name, "authorization")) {
        ++auths;
        if (hd.value.size() < 8 || !istarts(hd.value, "bearer ") || hd.value[7] == ' ' || hd.value[7] == '\t') return false;
        ex.token.assign(hd.value.substr(7));
        continue;
      }
      if (iequals(hd.name, "x-dmsc-hops") || iequals(hd.name, "x-dmsc-via")) return false;  // from a peer
      if (iequals(hd.name, "x-dmsc-flow")) {
        ++flows;
        if (!hd.value.empty()) {
          ex.has_flow = true;
          ex.flow = flow_key(hd.value);
        }
      }
      if (drop_request(hd.name)) continue;
      ex.headers.append(hd.name.data(), hd.name.size()).append(": ").append(hd.value.data(), hd.value.size()).append("\r\n");
    }
    if (!host || auths != 1 || flows > 1) return false;
    std::lock_guard<std::mutex> lock(mu);
    auto it = creds.find(ex.token);
    if (it == creds.end() || it->second.expires_ms <= wall_ms()) return false;
    auto& grants = it->second.grants;
    auto g = grants.find(ex.capability);
    bool ok = g != grants.end() && usable(g->second);
    // Else a grant for every name below an ancestor ("A/"), the nearest one taught.
    for (size_t k = ex.capability.rfind('/'); !ok && k != std::string::npos && k > 0; k = ex.capability.rfind('/', k - 1)) {
      auto below = grants.find(ex.capability.substr(0, k + 1));
      if (below == grants.end()) continue;
      ok = usable(below->second);
      break;
    }
    if (!ok) return false;
    ex.aic = it->second.aic;
    return true;
  }

  // Whether the credential's grant covers `prefix` too (policy is about capabilities:
  // the prefix that matched decides as well).
  bool granted(const Exchange& ex, const std::string& prefix) {
    std::lock_guard<std::mutex> lock(mu);
    auto it = creds.find(ex.token);
    if (it == creds.end()) return false;
    auto g = it->second.grants.find(prefix);
    return g != it->second.grants.end() && usable(g->second);
  }

  bool find_endpoint(const std::string& aic, Endpoint& out) {
    std::lock_guard<std::mutex> lock(mu);
    auto it = endpoints.find(aic);
    if (it == endpoints.end() || !usable(it->second.held)) return false;
    out = it->second;
    return true;
  }

  // Looks up the next choice and sends the request to it.
  void next_attempt(Client* c, Exchange* ex) {
    while (ex->looks < cfg.attempts * 2 && ex->attempts < cfg.attempts) {
      ex->looks++;
      Query q;
      q.has_flow = ex->has_flow;
      q.flow = ex->flow;
      NameError err;
      LookupResult r = table->lookup(*slot, false, reinterpret_cast<const uint8_t*>(ex->capability.data()), ex->capability.size(), q, &err);
      if (r.nh < 0) break;
      std::string prefix = ex->capability.substr(0, r.prefix_len);
      if (prefix != ex->capability && !granted(*ex, prefix)) return hand(c, ex);
      for (int32_t t : ex->tried)
        if (t == r.nh) return finish(c, ex);
      std::string id = table->next_hop_id(*slot, false, static_cast<uint32_t>(r.nh), r.id_epoch);
      Endpoint e;
      if (id.empty() || id.compare(0, 5, "peer:") == 0 || !find_endpoint(id, e)) return hand(c, ex);
      ex->tried.push_back(r.nh);
      ex->nh = r.nh;
      ex->epoch = r.id_epoch;
      ex->nh_id = std::move(id);
      ex->prefix = std::move(prefix);
      ex->attempts++;
      if (ex->attempts > 1) counters.retries.fetch_add(1, std::memory_order_relaxed);
      ex->sent = request_bytes(*ex, e);
      return dispatch(c, ex, pool_for(e), ex->sent);
    }
    finish(c, ex);
  }

  std::string request_bytes(Exchange& ex, const Endpoint& e) {
    // Below the root '/' the rest is the whole name (never a path without its '/').
    std::string_view rest = ex.prefix == "/" ? (ex.name == "/" ? std::string_view() : std::string_view(ex.name))
                                             : std::string_view(ex.name).substr(ex.prefix.size());
    std::string s;
    s.reserve(256 + ex.headers.size() + ex.body.size());
    s.append(ex.method).append(" ").append(e.base);
    if (!rest.empty()) s.append(rest);
    else if (e.base.empty()) s.append("/");
    if (!e.search.empty() && !ex.query.empty()) s.append(e.search).append("&").append(ex.query, 1, std::string::npos);
    else s.append(!e.search.empty() ? e.search : ex.query);
    s.append(" HTTP/1.1\r\nhost: ").append(e.hostport).append("\r\n").append(ex.headers);
    s.append("x-dmsc-requester: ").append(ex.aic).append("\r\n");
    // The path goes on below the prefix; the agent learns which capability it serves.
    s.append("x-dmsc-capability: ").append(ex.prefix).append("\r\n");
    if (!ex.body.empty() || ex.method == "POST" || ex.method == "PUT" || ex.method == "PATCH")
      s.append("content-length: ").append(std::to_string(ex.body.size())).append("\r\n");
    s.append("\r\n").append(ex.body);
    return s;
  }

  Pool* pool_for(const Endpoint& e) {
    auto& p = pools[e.hostport];
    if (!p) {
      p = std::make_unique<Pool>();
      p->addr = e.addr;
      p->len = e.len;
    }
    return p.get();
  }

  // The request goes to the TypeScript data plane as it came, and its answer comes back as is.
  void hand(Client* c, Exchange* ex) {
    ex->handed = true;
    counters.handed.fetch_add(1, std::memory_order_relaxed);
    if (!fallback_pool) {
      fallback_pool = std::make_unique<Pool>();
      fallback_pool->addr = fallback_addr;
      fallback_pool->len = fallback_len;
    }
    dispatch(c, ex, fallback_pool.get(), with_from(c, ex->raw));
  }

  // A request for the TypeScript data plane, with the requester's address in a header
  // right after its request line (so before any the requester wrote): the data plane
  // there counts failed authentication by the requester, not by this relay. The header
  // carries the token it shares with that data plane, so a requester cannot forge it.
  std::string with_from(const Client* c, const std::string& bytes) const {
    size_t eol = bytes.find("\r\n");
    if (eol == std::string::npos || c->from.empty() || cfg.from_token.empty()) return bytes;
    std::string out;
    out.reserve(bytes.size() + cfg.from_token.size() + c->from.size() + 16);
    out.append(bytes, 0, eol + 2).append("x-dmsc-from: ").append(cfg.from_token).append(" ").append(c->from).append("\r\n");
    return out.append(bytes, eol + 2, std::string::npos);
  }

  void dispatch(Client* c, Exchange* ex, Pool* pool, const std::string& bytes, bool fresh = false) {
    Upstream* up = nullptr;
    while (!fresh && !pool->idle.empty()) {
      Upstream* u = pool->idle.back();
      pool->idle.pop_back();
      if (!u->dead && u->idle_until > now) {
        up = u;
        break;
      }
      kill(u);
    }
    if (!up) {
      bool done = false;
      int fd = connect_to(pool->addr, pool->len, done);
      if (fd < 0) return attempt_failed(c, ex, nullptr, strerror_code(errno), true, true);
      up = new Upstream();
      up->kind = kUpstream;
      up->fd = fd;
      up->pool = pool;
      up->connected = done;
      socks.insert(up);
    } else {
      up->reused = true;
    }
    up->client = c;
    up->head_done = false;
    up->reusable = true;
    up->in.clear();
    up->out.assign(bytes);
    up->out_off = 0;
    up->deadline = now + (up->connected ? cfg.headers_timeout_ms : cfg.connect_timeout_ms);
    up->handed = ex->handed;
    ex->up = up;
    ex->answered = false;
    if (up->connected) {
      if (!flush(up->fd, up->out, up->out_off)) return attempt_failed(c, ex, up, "connection reset", false, true);
      watch(up, EPOLLIN | EPOLLRDHUP | (pending(up->out, up->out_off) ? kOut : 0u));
    } else {
      watch(up, EPOLLOUT);
    }
  }

  static const char* strerror_code(int e) {
    switch (e) {
      case ECONNREFUSED: return "ECONNREFUSED";
      case EHOSTUNREACH: return "EHOSTUNREACH";
      case ENETUNREACH: return "ENETUNREACH";
      case ETIMEDOUT: return "ETIMEDOUT";
      case ECONNRESET: return "ECONNRESET";
      case EADDRNOTAVAIL: return "EADDRNOTAVAIL";
      case EMFILE: return "EMFILE";
      default: return "connect failed";
    }
  }

  // --- instances (and the TypeScript data plane, for handed requests) -----------------

  void on_upstream(Upstream* up, uint32_t e) {
    Client* c = up->client;
    if (!c) {
      // Idle in its pool: any event is its close (or bytes nobody asked for).
      return kill(up);
    }
    Exchange* ex = c->ex.get();
    if (!up->connected) {
      int err = 0;
      socklen_t len = sizeof(err);
      getsockopt(up->fd, SOL_SOCKET, SO_ERROR, &err, &len);
      if (err != 0 || (e & (EPOLLERR | EPOLLHUP))) return attempt_failed(c, ex, up, strerror_code(err ? err : ECONNREFUSED), true, true);
      if (!(e & EPOLLOUT)) return;
      up->connected = true;
      up->deadline = now + cfg.headers_timeout_ms;
    }
    if (pending(up->out, up->out_off)) {
      if (!flush(up->fd, up->out, up->out_off)) return attempt_failed(c, ex, up, "connection reset", false, true);
      watch(up, EPOLLIN | EPOLLRDHUP | (pending(up->out, up->out_off) ? kOut : 0u));
      if (!(e & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))) return;
    } else if ((e & EPOLLOUT) && !(up->events & EPOLLIN)) {
      watch(up, EPOLLIN | EPOLLRDHUP);
    }
    if (!(e & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))) return;
    int r = fill(up->fd, up->in);
    if (r == 2) return;
    if (r == 1) {
      up->deadline = now + (up->head_done ? cfg.body_timeout_ms : cfg.headers_timeout_ms);
      if (!answer(c, ex, up)) return;
      if (!(e & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))) return;
      // The instance also closed: read what is left as the end of the stream.
      r = fill(up->fd, up->in);
      if (r == 1 && !answer(c, ex, up)) return;
      if (r > 0) return;
    }
    // End of stream, or a failure.
    if (!up->head_done) {
      if (up->reused && up->in.empty() && !ex->fresh_retry) {
        // A kept-alive connection the instance had closed, most likely while it was idle:
        // no blame. A request that may go again does, on a new connection; any other
        // might have reached the instance, so it fails rather than go twice.
        if (!can_again(*ex, false)) return attempt_failed(c, ex, up, "kept connection closed", false, false);
        ex->fresh_retry = true;
        Pool* pool = up->pool;
        release_upstream(up, false);
        return dispatch(c, ex, pool, ex->handed ? with_from(c, ex->raw) : ex->sent, true);
      }
      return attempt_failed(c, ex, up, r == 0 ? "connection closed before an answer" : "connection reset", false, true);
    }
    if (up->mode == Upstream::kUntilClose) {
      up->reusable = false;
      return complete(c, ex, up);
    }
    // The answer was cut short: so is ours.
    up->reusable = false;
    cut(c);
  }

  // Reads the answer in up->in; false when the exchange ended (or moved on).
  bool answer(Client* c, Exchange* ex, Upstream* up) {
    if (!up->head_done) {
      for (;;) {
        http1::Head h;
        long used = http1::parse_head(up->in.data(), up->in.size(), false, h);
        if (used == 0) return true;
        if (used < 0) {
          attempt_failed(c, ex, up, "an answer that is not HTTP", false, true);
          return false;
        }
        if (h.status < 200) {
          if (h.status == 101) {
            attempt_failed(c, ex, up, "an answer that cannot be passed on (101)", false, true);
            return false;
          }
          up->in.erase(0, static_cast<size_t>(used));
          continue;
        }
        if (!ex->handed && (h.status == 502 || h.status == 503)) {
          mark_down(ex);
          if (can_again(*ex, false)) {
            ex->last = ex->nh_id + ": answered " + std::to_string(h.status);
            release_upstream(up, false);
            next_attempt(c, ex);
            return false;
          }
        }
        start_answer(c, ex, up, h, static_cast<size_t>(used));
        break;
      }
    }
    return body(c, ex, up);
  }

  void start_answer(Client* c, Exchange* ex, Upstream* up, const http1::Head& h, size_t used) {
    bool no_body = ex->head_method || h.status == 204 || h.status == 304;
    if (no_body) up->mode = Upstream::kNone;
    else if (h.chunked) up->mode = Upstream::kChunked;
    else if (h.transfer_encoding) up->mode = Upstream::kUntilClose;
    else if (h.content_length >= 0) up->mode = Upstream::kLength;
    else up->mode = Upstream::kUntilClose;
    up->remaining = h.content_length;
    up->chunks = http1::ChunkedScanner();
    if (h.close) up->reusable = false;
    up->keep_alive_ms = h.keep_alive_timeout > 0 ? h.keep_alive_timeout * 1000 - 1000 : kDefaultKeepAliveMs;
    if (up->mode == Upstream::kUntilClose) c->close_after = true;
    if (ex->handed) {
      // The TypeScript data plane's answer, as it wrote it.
      if (h.close) c->close_after = true;
      c->out.append(up->in.data(), used);
    } else {
      std::string& s = c->out;
      s.append("HTTP/1.1 ").append(std::to_string(h.status));
      s.append(" ").append(h.reason.empty() ? "-" : std::string(h.reason)).append("\r\n");
      // Headers the answer's connection header names are hop-by-hop too.
      std::vector<std::string_view> named;
      for (size_t i = 0; i < h.nheaders; ++i)
        if (iequals(h.headers[i].name, "connection")) http1::each_member(h.headers[i].value, [&](std::string_view m) { named.push_back(m); });
      for (size_t i = 0; i < h.nheaders; ++i) {
        const http1::Header& hd = h.headers[i];
        if (drop_response(hd.name)) continue;
        bool skip = false;
        for (auto m : named)
          if (iequals(m, hd.name)) skip = true;
        if (skip) continue;
        s.append(hd.name.data(), hd.name.size()).append(": ").append(hd.value.data(), hd.value.size()).append("\r\n");
      }
      if (up->mode == Upstream::kChunked) s.append("transfer-encoding: chunked\r\n");
      s.append("x-dmsc-capability: ").append(ex->prefix).append("\r\n");
      s.append("x-dmsc-instance: ").append(ex->nh_id).append("\r\n");
      s.append("x-dmsc-path: ").append(cfg.self).append("\r\n");
      s.append("x-dmsc-attempts: ").append(std::to_string(ex->attempts)).append("\r\n");
      if (c->close_after) s.append("connection: close\r\n");
      s.append("\r\n");
    }
    up->in.erase(0, used);
    up->head_done = true;
    ex->answered = true;
  }

  bool body(Client* c, Exchange* ex, Upstream* up) {
    bool done = false;
    switch (up->mode) {
      case Upstream::kNone:
        done = true;
        break;
      case Upstream::kLength: {
        size_t take = std::min<size_t>(up->in.size(), static_cast<size_t>(up->remaining));
        c->out.append(up->in.data(), take);
        up->remaining -= static_cast<int64_t>(take);
        up->in.erase(0, take);
        done = up->remaining == 0;
        break;
      }
      case Upstream::kChunked: {
        long n = up->chunks.feed(up->in.data(), up->in.size());
        if (n < 0) {
          up->reusable = false;
          cut(c);
          return false;
        }
        c->out.append(up->in.data(), static_cast<size_t>(n));
        up->in.erase(0, static_cast<size_t>(n));
        done = up->chunks.done();
        break;
      }
      case Upstream::kUntilClose:
        c->out.append(up->in);
        up->in.clear();
        break;
    }
    if (done) {
      if (!up->in.empty()) up->reusable = false;  // more than the answer: not to be trusted again
      complete(c, ex, up);
      return false;
    }
    if (!write_client(c)) return false;
    // Backpressure: the instance is not read while the requester is behind.
    if (pending(c->out, c->out_off) > kHighWater) watch(up, up->events & ~EPOLLIN);
    return true;
  }

  // The answer has been passed on whole.
  void complete(Client* c, Exchange* ex, Upstream* up) {
    // An answer before the whole request went (an early 413, say): the rest of the
    // request must never reach the instance as the start of another one.
    if (pending(up->out, up->out_off) > 0) up->reusable = false;
    if (!ex->handed) {
      counters.forwarded.fetch_add(1, std::memory_order_relaxed);
      counters.served.fetch_add(1, std::memory_order_relaxed);
    }
    release_upstream(up, up->reusable);
    next_request(c);
  }

  // The exchange is over: its answer goes out, and the requester's next request is
  // taken by the loop.
  void next_request(Client* c) {
    c->ex.reset();
    c->idle_until = now + cfg.client_idle_ms;
    if (!write_client(c)) return;
    ready.push_back(c);
  }

  // Back to its pool (kept alive) or closed.
  void release_upstream(Upstream* up, bool keep) {
    if (up->client && up->client->ex && up->client->ex->up == up) up->client->ex->up = nullptr;
    up->client = nullptr;
    if (!keep || up->dead || up->pool->idle.size() >= kMaxIdlePerPool) return kill(up);
    up->in.clear();
    up->out.clear();
    up->out_off = 0;
    up->idle_until = now + std::max(up->keep_alive_ms, 0);
    if (up->idle_until <= now) return kill(up);
    up->pool->idle.push_back(up);
    watch(up, EPOLLIN | EPOLLRDHUP);
  }

  bool can_again(const Exchange& ex, bool nothing_sent) const {
    return retryable_method(ex.method) || nothing_sent;
  }

  void mark_down(Exchange* ex) {
    if (ex->nh < 0) return;
    if (table->mark_down(static_cast<uint32_t>(ex->nh), ex->epoch)) counters.marked_down.fetch_add(1, std::memory_order_relaxed);
    std::lock_guard<std::mutex> lock(mu);
    if (down.size() < 65536) down.push_back(ex->nh_id);
  }

  // An attempt failed before its answer began (or could not begin).
  void attempt_failed(Client* c, Exchange* ex, Upstream* up, const std::string& why, bool nothing_sent, bool blame) {
    if (up) release_upstream(up, false);
    if (ex->answered) return cut(c);
    if (ex->handed) {
      // Our own TypeScript data plane could not be reached: nothing can be tried.
      return fail(c, "ERR_DMSC_INTERNAL", "the data plane could not take the request");
    }
    if (blame) mark_down(ex);
    ex->last = ex->nh_id + ": " + why;
    if (can_again(*ex, nothing_sent)) next_attempt(c, ex);
    else finish(c, ex);
  }

  // Nothing (more) to try.
  void finish(Client* c, Exchange* ex) {
    // No route at all: the TypeScript data plane gives the full answer (and its reasons).
    if (ex->tried.empty()) return hand(c, ex);
    counters.failed.fetch_add(1, std::memory_order_relaxed);
    fail(c, "ERR_DMSC_UPSTREAM_FAILED",
         "every instance tried for " + ex->capability + " failed (" + std::to_string(ex->attempts) + " tried; last: " + ex->last + ")",
         "{\"attempts\":" + std::to_string(ex->attempts) + "}");
  }

  // A 502 with the JSON error body (DESIGN §4); `details`, when given, is a JSON value.
  void fail(Client* c, const char* code, const std::string& message, const std::string& details = std::string()) {
    std::string body = std::string("{\"error\":{\"code\":\"") + code + "\",\"message\":\"";
    json_escape(body, message);
    body += details.empty() ? "\"}}" : "\",\"details\":" + details + "}}";
    counters.served.fetch_add(1, std::memory_order_relaxed);
    c->out.append("HTTP/1.1 502 Bad Gateway\r\ncontent-type: application/json; charset=utf-8\r\ncontent-length: ");
    c->out.append(std::to_string(body.size())).append("\r\n");
    if (c->close_after) c->out.append("connection: close\r\n");
    c->out.append("\r\n").append(body);
    next_request(c);
  }

  // An answer to a request that cannot be taken at all: the reason in the JSON error body
  // with `connection: close`; the connection closes once it is written (or a second on).
  void refuse(Client* c, const char* status, const char* code, const std::string& message) {
    std::string body = std::string("{\"error\":{\"code\":\"") + code + "\",\"message\":\"";
    json_escape(body, message);
    body += "\"}}";
    c->in.clear();
    c->close_after = true;
    c->idle_until = now + 1000;
    c->out.append("HTTP/1.1 ").append(status);
    c->out.append("\r\ncontent-type: application/json; charset=utf-8\r\nconnection: close\r\ncontent-length: ");
    c->out.append(std::to_string(body.size())).append("\r\n\r\n").append(body);
    write_client(c);
  }

  // An answer that cannot be finished: the requester's connection is closed.
  void cut(Client* c) {
    if (c->ex && c->ex->up) release_upstream(c->ex->up, false);
    c->ex.reset();
    flush(c->fd, c->out, c->out_off);
    kill(c);
  }

  // --- handing a connection over whole -------------------------------------------------

  void tunnel(Client* c) {
    counters.tunnels.fetch_add(1, std::memory_order_relaxed);
    bool done = false;
    int fd = connect_to(fallback_addr, fallback_len, done);
    if (fd < 0) return kill(c);
    auto* t = new Tunnel();
    t->kind = kTunnel;
    t->fd = fd;
    t->client = c;
    t->connected = done;
    socks.insert(t);
    c->tunnel = t;
    t->out = with_from(c, c->in);
    c->in.clear();
    watch(t, EPOLLIN | EPOLLRDHUP | EPOLLOUT);
    watch(c, EPOLLIN | EPOLLRDHUP | (pending(c->out, c->out_off) ? kOut : 0u));
  }

  void tunnel_from_client(Client* c) {
    auto* t = static_cast<Tunnel*>(c->tunnel);
    int r = fill(c->fd, t->out);
    if (r <= 0) {
      kill(t);
      return kill(c);
    }
    if (t->connected && !flush(t->fd, t->out, t->out_off)) {
      kill(t);
      return kill(c);
    }
    if (pending(t->out, t->out_off)) watch(t, t->events | EPOLLOUT);
    if (pending(t->out, t->out_off) > kHighWater) watch(c, c->events & ~EPOLLIN);
  }

  void on_tunnel(Tunnel* t, uint32_t e) {
    Client* c = t->client;
    if (!t->connected) {
      int err = 0;
      socklen_t len = sizeof(err);
      getsockopt(t->fd, SOL_SOCKET, SO_ERROR, &err, &len);
      if (err != 0) {
        kill(t);
        return kill(c);
      }
      if (!(e & EPOLLOUT)) return;
      t->connected = true;
    }
    if (e & EPOLLOUT) {
      if (!flush(t->fd, t->out, t->out_off)) {
        kill(t);
        return kill(c);
      }
      watch(t, (t->events & ~EPOLLOUT) | (pending(t->out, t->out_off) ? kOut : 0u));
      if (pending(t->out, t->out_off) < kHighWater / 4 && !(c->events & EPOLLIN)) watch(c, c->events | EPOLLIN);
    }
    if (e & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
      int r = fill(t->fd, c->out);
      if (r <= 0) {
        // The data plane closed: what it wrote goes out, then the requester's connection
        // closes (write_client closes it once its output is drained).
        kill(t);
        c->tunnel = nullptr;
        c->close_after = true;
        c->idle_until = now + cfg.client_idle_ms;  // the time it has to take the rest
        watch(c, EPOLLRDHUP | EPOLLOUT);
        write_client(c);
        return;
      }
      if (!write_client(c)) return;
      if (pending(c->out, c->out_off) > kHighWater) watch(t, t->events & ~EPOLLIN);
    }
  }

  // --- timers --------------------------------------------------------------------------

  void sweep() {
    if (!accepting && clients < kMaxClients) {
      accepting = true;
      watch(&listener_sock, EPOLLIN);
    }
    std::vector<Sock*> all(socks.begin(), socks.end());
    for (Sock* s : all) {
      if (s->dead) continue;
      if (s->kind == kUpstream) {
        auto* up = static_cast<Upstream*>(s);
        if (!up->client) {
          if (up->idle_until <= now) kill(up);
          continue;
        }
        if (up->deadline > now || (up->handed && up->connected)) continue;
        Client* c = up->client;
        Exchange* ex = c->ex.get();
        if (!up->head_done) attempt_failed(c, ex, up, up->connected ? "no answer in time" : "connect timeout", !up->connected, true);
        else cut(c);
      } else if (s->kind == kClient) {
        auto* c = static_cast<Client*>(s);
        if (!c->ex && !c->tunnel && c->idle_until && c->idle_until <= now) {
          // Part of a request came, and no more in time: say so before closing.
          if (!c->in.empty() && !c->close_after)
            refuse(c, "408 Request Timeout", "ERR_DMSC_REQUEST_TIMEOUT", "the request did not arrive within " + std::to_string(cfg.client_idle_ms / 1000) + " s");
          else
            kill(c);
        }
      }
    }
  }
};

Relay::Relay(std::shared_ptr<Table> table, RelayConfig config) : impl_(std::make_unique<Impl>(std::move(table), std::move(config))) {}

Relay::~Relay() { stop(); }

Status Relay::start(uint16_t* port) {
  Impl& m = *impl_;
  if (m.started) return Status::Error(Code::kInvalidArgument, "the relay has started already");
  sockaddr_storage addr;
  socklen_t len;
  if (!parse_addr(m.cfg.host, m.cfg.port, addr, len)) return Status::Error(Code::kInvalidArgument, "the relay listens on a numeric address only");
  if (!parse_addr("127.0.0.1", m.cfg.fallback_port, m.fallback_addr, m.fallback_len)) return Status::Error(Code::kInvalidArgument, "bad fallback port");
  m.slot = m.table->acquire_reader();
  if (!m.slot) return Status::Error(Code::kLimitExceeded, "no reader slot left in the table");
  auto fail = [&](const char* what) {
    std::string msg = std::string(what) + ": " + std::strerror(errno);
    if (m.listen_fd >= 0) ::close(m.listen_fd);
    if (m.wake_fd >= 0) ::close(m.wake_fd);
    if (m.ep >= 0) ::close(m.ep);
    m.listen_fd = m.wake_fd = m.ep = -1;
    m.table->release_reader(m.slot);
    m.slot = nullptr;
    return Status::Error(Code::kInvalidArgument, msg);
  };
  m.listen_fd = ::socket(addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (m.listen_fd < 0) return fail("socket");
  int one = 1;
  setsockopt(m.listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (::bind(m.listen_fd, reinterpret_cast<sockaddr*>(&addr), len) != 0) return fail("bind");
  if (::listen(m.listen_fd, 1024) != 0) return fail("listen");
  sockaddr_storage bound;
  socklen_t blen = sizeof(bound);
  getsockname(m.listen_fd, reinterpret_cast<sockaddr*>(&bound), &blen);
  *port = ntohs(bound.ss_family == AF_INET ? reinterpret_cast<sockaddr_in*>(&bound)->sin_port : reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port);
  m.ep = epoll_create1(EPOLL_CLOEXEC);
  if (m.ep < 0) return fail("epoll");
  m.wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (m.wake_fd < 0) return fail("eventfd");
  m.listener_sock.fd = m.listen_fd;
  m.wake_sock.fd = m.wake_fd;
  m.watch(&m.listener_sock, EPOLLIN);
  m.watch(&m.wake_sock, EPOLLIN);
  m.started = true;
  m.thread = std::thread([&m] { m.run(); });
  return Status::Ok();
}

void Relay::stop() {
  Impl& m = *impl_;
  if (!m.started) return;
  m.started = false;
  m.stopping.store(true, std::memory_order_release);
  uint64_t v = 1;
  ssize_t r = ::write(m.wake_fd, &v, sizeof(v));
  (void)r;
  m.thread.join();
  ::close(m.listen_fd);
  ::close(m.wake_fd);
  ::close(m.ep);
  m.listen_fd = m.wake_fd = m.ep = -1;
  m.table->release_reader(m.slot);
  m.slot = nullptr;
}

void Relay::learn(const std::string& token, const std::string& aic, int64_t expires_ms, const std::string& capability) {
  Impl& m = *impl_;
  int64_t until = mono_ms() + m.cfg.cache_ms;
  std::lock_guard<std::mutex> lock(m.mu);
  if (m.creds.size() >= 100000 && !m.creds.count(token)) m.creds.clear();
  Impl::Cred& c = m.creds[token];
  if (c.aic != aic) c.grants.clear();
  c.aic = aic;
  c.expires_ms = expires_ms;
  if (c.grants.size() >= 256 && !c.grants.count(capability)) c.grants.clear();
  c.grants[capability] = Impl::Held{until, 0};
}

void Relay::endpoint(const std::string& aic, const std::string& ip, uint16_t port, const std::string& base, const std::string& search) {
  Impl& m = *impl_;
  Impl::Endpoint e;
  if (!parse_addr(ip, port, e.addr, e.len)) return;
  e.hostport = (e.addr.ss_family == AF_INET6 && ip.front() != '[' ? "[" + ip + "]" : ip) + ":" + std::to_string(port);
  e.base = base;
  e.search = search;
  e.held.until = mono_ms() + m.cfg.cache_ms;
  std::lock_guard<std::mutex> lock(m.mu);
  if (m.endpoints.size() >= 100000 && !m.endpoints.count(aic)) m.endpoints.clear();
  m.endpoints[aic] = std::move(e);
}

void Relay::forget(const std::string& aic) {
  Impl& m = *impl_;
  std::lock_guard<std::mutex> lock(m.mu);
  m.endpoints.erase(aic);
  for (auto it = m.creds.begin(); it != m.creds.end();) it = it->second.aic == aic ? m.creds.erase(it) : std::next(it);
}

void Relay::drop_endpoint(const std::string& aic) {
  Impl& m = *impl_;
  std::lock_guard<std::mutex> lock(m.mu);
  m.endpoints.erase(aic);
}

void Relay::clear() {
  Impl& m = *impl_;
  std::lock_guard<std::mutex> lock(m.mu);
  m.creds.clear();
  m.endpoints.clear();
}

std::vector<std::string> Relay::take_down() {
  Impl& m = *impl_;
  std::lock_guard<std::mutex> lock(m.mu);
  std::vector<std::string> out;
  out.swap(m.down);
  return out;
}

const RelayCounters& Relay::counters() const { return impl_->counters; }

}  // namespace dmsc
