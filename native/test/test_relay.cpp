// The native relay against real sockets on loopback: instances and a stand-in for the
// TypeScript data plane are small threaded servers here. Built with the sanitizers too.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "batch_builder.hpp"
#include "harness.hpp"
#include "http1.hpp"
#include "relay.hpp"
#include "table.hpp"

using namespace dmsc;

namespace {

int listen_any(uint16_t* port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a));
  ::listen(fd, 64);
  socklen_t len = sizeof(a);
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  *port = ntohs(a.sin_port);
  return fd;
}

bool wait_readable(int fd, int ms) {
  pollfd p{fd, POLLIN, 0};
  return ::poll(&p, 1, ms) > 0;
}

// Appends what arrives within 5 s to buf; false on close, failure or timeout.
bool recv_more(int fd, std::string& buf) {
  char tmp[65536];
  if (!wait_readable(fd, 5000)) return false;
  ssize_t r = ::recv(fd, tmp, sizeof(tmp), 0);
  if (r <= 0) return false;
  buf.append(tmp, static_cast<size_t>(r));
  return true;
}

// Reads one whole message (head and content-length or chunked body) from fd, through buf.
// Returns the head length, 0 on close or timeout; h views `head`.
long read_message(int fd, std::string& buf, bool request, http1::Head& h, std::string& body, std::string& head) {
  auto keep = [&](long used) {
    head = buf.substr(0, static_cast<size_t>(used));
    http1::parse_head(head.data(), head.size(), request, h);
  };
  for (;;) {
    long used = http1::parse_head(buf.data(), buf.size(), request, h);
    if (used > 0) {
      size_t want = h.content_length > 0 ? static_cast<size_t>(h.content_length) : 0;
      if (h.chunked) {
        http1::ChunkedScanner c;
        size_t at = static_cast<size_t>(used);
        for (;;) {
          long n = c.feed(buf.data() + at, buf.size() - at);
          if (n < 0) return 0;
          at += static_cast<size_t>(n);
          if (c.done()) break;
          if (!recv_more(fd, buf)) return 0;
        }
        body = buf.substr(static_cast<size_t>(used), at - static_cast<size_t>(used));
        keep(used);
        buf.erase(0, at);
        return used;
      }
      if (buf.size() >= static_cast<size_t>(used) + want) {
        body = buf.substr(static_cast<size_t>(used), want);
        keep(used);
        buf.erase(0, static_cast<size_t>(used) + want);
        return used;
      }
    } else if (used < 0) {
      return 0;
    }
    if (!recv_more(fd, buf)) return 0;
  }
}

// A threaded HTTP server: `answer` gets the request (head text) and returns the bytes to
// send back, or "" to close the connection without an answer.
class Server {
 public:
  // early: answers on the head alone, then reads the body and drops it (an instance that
  // refuses a request before reading it, keeping the connection).
  explicit Server(std::function<std::string(const std::string& head, const std::string& body)> answer, bool early = false)
      : answer_(std::move(answer)), early_(early) {
    fd_ = listen_any(&port_);
    accept_ = std::thread([this] { accept_loop(); });
  }
  ~Server() {
    stop_ = true;
    accept_.join();
    for (auto& t : conns_) t.join();
    ::close(fd_);
  }
  uint16_t port() const { return port_; }
  int requests() const { return requests_.load(); }

 private:
  void accept_loop() {
    while (!stop_) {
      if (!wait_readable(fd_, 50)) continue;
      int c = ::accept(fd_, nullptr, nullptr);
      if (c < 0) continue;
      std::lock_guard<std::mutex> lock(mu_);
      conns_.emplace_back([this, c] { serve(c); });
    }
  }
  void serve(int c) {
    std::string buf;
    while (!stop_) {
      if (buf.empty() && !wait_readable(c, 50)) continue;
      http1::Head h;
      if (early_) {
        long used = http1::parse_head(buf.data(), buf.size(), true, h);
        if (used < 0) break;
        if (used == 0) {
          if (!recv_more(c, buf)) break;
          continue;
        }
        requests_++;
        size_t rest = static_cast<size_t>(used) + static_cast<size_t>(h.content_length > 0 ? h.content_length : 0);
        std::string out = answer_(buf.substr(0, static_cast<size_t>(used)), "");
        ::send(c, out.data(), out.size(), MSG_NOSIGNAL);
        while (buf.size() < rest && recv_more(c, buf)) {
        }
        buf.erase(0, std::min(rest, buf.size()));
        continue;
      }
      std::string body, head;
      long used = read_message(c, buf, true, h, body, head);
      if (used == 0) break;
      requests_++;
      std::string out = answer_(head, body);
      if (out.empty()) break;
      ::send(c, out.data(), out.size(), MSG_NOSIGNAL);
    }
    ::close(c);
  }

  std::function<std::string(const std::string&, const std::string&)> answer_;
  bool early_ = false;
  int fd_;
  uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<int> requests_{0};
  std::mutex mu_;
  std::thread accept_;
  std::vector<std::thread> conns_;
};

std::string ok(const std::string& body, const std::string& extra = "") {
  return "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nx-dmsc-instance: forged\r\n" + extra + "content-length: " +
         std::to_string(body.size()) + "\r\n\r\n" + body;
}

// A requester: one connection, one request at a time.
struct Requester {
  int fd;
  std::string buf;
  explicit Requester(uint16_t port) {
    fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(port);
    ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a));
  }
  ~Requester() { ::close(fd); }
  // Sends `request`; the answer's status (0: connection closed), head and body.
  int ask(const std::string& request, std::string* head = nullptr, std::string* body = nullptr) {
    ::send(fd, request.data(), request.size(), MSG_NOSIGNAL);
    http1::Head h;
    std::string b, text;
    long used = read_message(fd, buf, false, h, b, text);
    if (used == 0) return 0;
    if (head) head->clear();
    if (head)
      for (size_t i = 0; i < h.nheaders; ++i) *head += std::string(h.headers[i].name) + ": " + std::string(h.headers[i].value) + "\n";
    if (body) *body = b;
    return h.status;
  }
};

bool has(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

struct Rig {
  std::shared_ptr<Table> table = std::make_shared<Table>();
  std::unique_ptr<Relay> relay;
  uint16_t port = 0;
  Rig(uint16_t fallback, std::vector<std::pair<std::string, uint16_t>> instances, uint32_t replay_bytes = 64 * 1024) {
    std::vector<HopDef> hops;
    for (auto& i : instances) hops.emplace_back(i.first);
    CHECK(BatchBuilder().upsert("/capability/echo", hops).apply(*table).ok());
    RelayConfig c;
    c.fallback_port = fallback;
    c.self = "gw1";
    c.cache_ms = 60000;
    c.headers_timeout_ms = 3000;
    c.replay_bytes = replay_bytes;
    relay = std::make_unique<Relay>(table, c);
    CHECK(relay->start(&port).ok());
    for (auto& i : instances) relay->endpoint(i.first, "127.0.0.1", i.second, "/base", "?k=v");
    // Grants are per capability asked for, and for the prefix that matched.
    relay->learn("tok", "requester-1", INT64_MAX / 2, "/capability/echo");
    relay->learn("tok", "requester-1", INT64_MAX / 2, "/capability/echo/x");
  }
  ~Rig() { relay->stop(); }
};

const std::string kGet = "GET /capability/echo/x?q=1 HTTP/1.1\r\nhost: gw\r\nauthorization: Bearer tok\r\nx-other: 1\r\n\r\n";

Server& fallback() {
  static Server s([](const std::string&, const std::string&) { return ok("handed"); });
  return s;
}

}  // namespace

TEST(relay_forwards_a_taught_request_itself) {
  Server inst([](const std::string& head, const std::string&) { return ok(head); });
  Rig rig(fallback().port(), {{"a1", inst.port()}});
  Requester r(rig.port);
  std::string head, body;
  CHECK_EQ(r.ask(kGet, &head, &body), 200);
  CHECK(has(body, "GET /base/x?k=v&q=1 HTTP/1.1\r\n"));  // the endpoint's base and query, then the request's
  CHECK(has(body, "x-dmsc-requester: requester-1"));
  CHECK(has(body, "x-dmsc-capability: /capability/echo\r\n"));
  CHECK(has(body, "x-other: 1"));
  CHECK(!has(body, "authorization"));
  CHECK(has(head, "x-dmsc-instance: a1"));  // the instance's own x-dmsc-* is not passed on
  CHECK(!has(head, "forged"));
  CHECK(has(head, "x-dmsc-capability: /capability/echo"));
  CHECK(has(head, "x-dmsc-attempts: 1"));
  CHECK_EQ(r.ask(kGet), 200);  // the connection is kept
  CHECK_EQ(rig.relay->counters().forwarded.load(), 2u);
  CHECK_EQ(rig.relay->counters().handed.load(), 0u);
}

TEST(relay_hands_what_it_was_not_taught_to_the_data_plane) {
  Server inst([](const std::string&, const std::string&) { return ok("instance"); });
  Rig rig(fallback().port(), {{"a1", inst.port()}});
  Requester r(rig.port);
  std::string body;
  CHECK_EQ(r.ask("GET /capability/echo HTTP/1.1\r\nhost: gw\r\nauthorization: Bearer other\r\n\r\n", nullptr, &body), 200);
  CHECK(body == "handed");
  CHECK_EQ(r.ask("GET /capability/echo HTTP/1.1\r\nhost: gw\r\n\r\n", nullptr, &body), 200);  // no credential
  CHECK(body == "handed");
  CHECK_EQ(r.ask("GET /capability/e%63ho HTTP/1.1\r\nhost: gw\r\nauthorization: Bearer tok\r\n\r\n", nullptr, &body), 200);
  CHECK(body == "handed");
  CHECK_EQ(r.ask("GET /capability/echo/../x HTTP/1.1\r\nhost: gw\r\nauthorization: Bearer tok\r\n\r\n", nullptr, &body), 200);
  CHECK(body == "handed");
  CHECK_EQ(r.ask("GET /capability/echo HTTP/1.1\r\nhost: gw\r\nauthorization: Bearer tok\r\nx-dmsc-hops: 3\r\n\r\n", nullptr, &body), 200);
  CHECK(body == "handed");
  CHECK_EQ(inst.requests(), 0);
  CHECK_EQ(r.ask(kGet, nullptr, &body), 200);
  CHECK(body == "instance");
}

TEST(relay_fails_over_and_marks_the_instance_down) {
  uint16_t dead_port;
  int dead = listen_any(&dead_port);
  ::close(dead);  // nothing listens there now
  Server inst([](const std::string&, const std::string&) { return ok("alive"); });
  Rig rig(fallback().port(), {{"dead", dead_port}, {"live", inst.port()}});
  for (int i = 0; i < 20; ++i) {
    Requester r(rig.port);
    std::string body;
    CHECK_EQ(r.ask(kGet, nullptr, &body), 200);
    CHECK(body == "alive");
  }
  std::vector<std::string> down = rig.relay->take_down();
  CHECK_EQ(down.size(), static_cast<size_t>(1));  // once: then it is no longer chosen
  CHECK(!down.empty() && down[0] == "dead");
}

TEST(relay_retries_a_503_for_a_get_but_passes_it_on_for_a_post) {
  Server busy([](const std::string&, const std::string&) {
    return std::string("HTTP/1.1 503 Busy\r\ncontent-length: 4\r\n\r\nbusy");
  });
  Server inst([](const std::string&, const std::string& body) { return ok("got:" + body); });
  {
    Rig rig(fallback().port(), {{"busy", busy.port()}, {"ok", inst.port()}});
    Requester r(rig.port);
    std::string head, body;
    for (int i = 0; i < 5; ++i) CHECK_EQ(r.ask(kGet, &head, &body), 200);
    CHECK(body == "got:");
  }
  {
    Rig rig(fallback().port(), {{"busy", busy.port()}});
    Requester r(rig.port);
    std::string body;
    CHECK_EQ(r.ask("POST /capability/echo HTTP/1.1\r\nhost: gw\r\nauthorization: Bearer tok\r\ncontent-length: 3\r\n\r\nabc", nullptr, &body), 503);
    CHECK(body == "busy");
  }
}

TEST(relay_answers_502_when_every_instance_fails) {
  Server reset([](const std::string&, const std::string&) { return std::string(); });  // closes, no answer
  Rig rig(fallback().port(), {{"r1", reset.port()}});
  Requester r(rig.port);
  std::string body;
  CHECK_EQ(r.ask(kGet, nullptr, &body), 502);
  CHECK(has(body, "\"code\":\"ERR_DMSC_UPSTREAM_FAILED\""));
  CHECK(has(body, "r1: connection closed before an answer"));
}

TEST(relay_passes_chunked_answers_and_keeps_the_connection) {
  Server inst([](const std::string&, const std::string&) {
    return std::string("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n");
  });
  Rig rig(fallback().port(), {{"a1", inst.port()}});
  Requester r(rig.port);
  for (int i = 0; i < 3; ++i) {
    std::string body;
    CHECK_EQ(r.ask(kGet, nullptr, &body), 200);
    CHECK(body == "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n");
  }
}

TEST(relay_hands_a_streamed_body_over_with_its_connection) {
  Server tunnel_end([](const std::string& head, const std::string& body) { return ok(head.substr(0, 4) + body); });
  Server inst([](const std::string&, const std::string&) { return ok("instance"); });
  Rig rig(tunnel_end.port(), {{"a1", inst.port()}});
  Requester r(rig.port);
  std::string body;
  CHECK_EQ(r.ask("POST /capability/echo HTTP/1.1\r\nhost: gw\r\nauthorization: Bearer tok\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", nullptr, &body), 200);
  CHECK(body == "POST3\r\nabc\r\n0\r\n\r\n");
  CHECK_EQ(rig.relay->counters().tunnels.load(), 1u);
  CHECK_EQ(inst.requests(), 0);
}

TEST(relay_answers_then_closes_on_a_malformed_request) {
  Server inst([](const std::string&, const std::string&) { return ok("instance"); });
  Rig rig(fallback().port(), {{"a1", inst.port()}});
  {
    Requester r(rig.port);
    std::string head, body;
    CHECK_EQ(r.ask("GET /capability/echo HTTP/1.1\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\n", &head, &body), 400);
    CHECK(has(head, "connection: close"));
    CHECK(has(body, "ERR_DMSC_MALFORMED_REQUEST"));
    // Nothing more is taken on that connection.
    CHECK_EQ(r.ask("GET /capability/echo HTTP/1.1\r\nhost: x\r\n\r\n"), 0);
  }
  {
    Requester r(rig.port);
    std::string body;
    CHECK_EQ(r.ask("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", nullptr, &body), 505);
    CHECK(has(body, "ERR_DMSC_HTTP_VERSION"));
  }
  CHECK_EQ(inst.requests(), 0);
}

TEST(relay_grant_below_a_name_covers_every_name_below_it_only) {
  Server inst([](const std::string&, const std::string&) { return ok("instance"); });
  Rig rig(fallback().port(), {{"a1", inst.port()}});
  rig.relay->learn("sub", "requester-2", INT64_MAX / 2, "/capability/echo");
  rig.relay->learn("sub", "requester-2", INT64_MAX / 2, "/capability/echo/");
  Requester r(rig.port);
  std::string body;
  for (const char* path : {"/capability/echo/a", "/capability/echo/b/c", "/capability/echo"}) {
    CHECK_EQ(r.ask(std::string("GET ") + path + " HTTP/1.1\r\nhost: gw\r\nauthorization: Bearer sub\r\n\r\n", nullptr, &body), 200);
    CHECK(body == "instance");
  }
  // Above the name it was taught for: not covered.
  rig.relay->learn("up", "requester-3", INT64_MAX / 2, "/capability/echo/deep/");
  CHECK_EQ(r.ask("GET /capability/echo/other HTTP/1.1\r\nhost: gw\r\nauthorization: Bearer up\r\n\r\n", nullptr, &body), 200);
  CHECK(body == "handed");
}

TEST(relay_never_reuses_a_connection_the_request_did_not_finish_on) {
  // The instance refuses a large body before reading it; the rest of that body must not
  // reach it as the start of the next request.
  Server inst([](const std::string& head, const std::string&) {
    return head.compare(0, 3, "PUT") == 0 ? std::string("HTTP/1.1 413 Too Large\r\ncontent-length: 0\r\n\r\n") : ok("fine");
  }, true);
  Rig rig(fallback().port(), {{"a1", inst.port()}}, 16 * 1024 * 1024);
  Requester r(rig.port);
  std::string big(8 * 1024 * 1024, 'x');
  CHECK_EQ(r.ask("PUT /capability/echo HTTP/1.1\r\nhost: gw\r\nauthorization: Bearer tok\r\ncontent-length: " + std::to_string(big.size()) + "\r\n\r\n" + big), 413);
  Requester next(rig.port);
  std::string body;
  CHECK_EQ(next.ask(kGet, nullptr, &body), 200);
  CHECK(body == "fine");
  CHECK(rig.relay->take_down().empty());
}

TEST(relay_sends_a_post_once_even_on_a_kept_connection_that_closed) {
  std::atomic<int> posts{0};
  Server inst([&](const std::string& head, const std::string&) {
    if (head.compare(0, 4, "POST") == 0) {
      posts++;
      return std::string();  // closes without an answer
    }
    return ok("fine");
  });
  Rig rig(fallback().port(), {{"a1", inst.port()}});
  Requester r(rig.port);
  CHECK_EQ(r.ask(kGet), 200);  // leaves a kept connection in the pool
  CHECK_EQ(r.ask("POST /capability/echo HTTP/1.1\r\nhost: gw\r\nauthorization: Bearer tok\r\ncontent-length: 1\r\n\r\nx"), 502);
  CHECK_EQ(posts.load(), 1);
  CHECK(rig.relay->take_down().empty());  // a kept connection closing is no sign of a failed instance
}

TEST(relay_hands_http_1_0_and_unknown_methods_to_the_data_plane) {
  Server inst([](const std::string&, const std::string&) { return ok("instance"); });
  Rig rig(fallback().port(), {{"a1", inst.port()}});
  std::string body;
  Requester r(rig.port);
  CHECK_EQ(r.ask("GET /capability/echo HTTP/1.0\r\nhost: gw\r\nconnection: keep-alive\r\nauthorization: Bearer tok\r\n\r\n", nullptr, &body), 200);
  CHECK(body == "handed");
  CHECK_EQ(r.ask("BREW /capability/echo HTTP/1.1\r\nhost: gw\r\nauthorization: Bearer tok\r\n\r\n", nullptr, &body), 200);
  CHECK(body == "handed");
  CHECK_EQ(r.ask("\r\nGET /capability/echo HTTP/1.1\r\nauthorization: Bearer tok\r\n\r\n", nullptr, &body), 200);  // no Host
  CHECK(body == "handed");
  CHECK_EQ(inst.requests(), 0);
}

TEST(relay_hands_a_head_too_large_for_it_over_with_its_connection) {
  // The far end reads raw bytes: a head over the relay's limits is the Node listener's
  // to judge (under its own), so it must arrive there whole.
  uint16_t port;
  int lfd = listen_any(&port);
  std::string got;
  std::thread far([&] {
    int c = ::accept(lfd, nullptr, nullptr);
    while (got.find("\r\n\r\n") == std::string::npos && recv_more(c, got)) {
    }
    std::string out = ok("far");
    ::send(c, out.data(), out.size(), MSG_NOSIGNAL);
    ::close(c);
  });
  Server inst([](const std::string&, const std::string&) { return ok("instance"); });
  {
    Rig rig(port, {{"a1", inst.port()}});
    Requester r(rig.port);
    std::string many = "GET /capability/echo HTTP/1.1\r\nhost: gw\r\nauthorization: Bearer tok\r\n";
    for (int i = 0; i < 150; ++i) many += "x-h" + std::to_string(i) + ": 1\r\n";
    many += "\r\n";
    std::string body;
    CHECK_EQ(r.ask(many, nullptr, &body), 200);
    CHECK(body == "far");
    CHECK(got == many);
    CHECK_EQ(rig.relay->counters().tunnels.load(), 1u);
    CHECK_EQ(inst.requests(), 0);
  }
  far.join();
  ::close(lfd);
}
