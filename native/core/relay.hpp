// The native relay: the data plane's listener, an HTTP/1.1 proxy on its own thread (one
// epoll loop) next to the forwarding table it looks up.
//
// It serves the common request end to end: a credential and a policy decision the
// TypeScript data plane has already made for that capability (taught here, kept for a
// short while), a target that is a local instance with a numeric address, a body that
// fits the replay buffer. Everything else (a credential seen for the first time, a
// denial, a route toward a peer gateway, a required tag, a streamed body, anything
// unusual in the request) goes to the TypeScript data plane on its internal listener:
// one request at a time when its body is buffered, or the whole connection from then on
// when it streams. Failover is the same as there: a connect error, a reset or a timeout
// before the answer, or a 502/503, marks the next hop down in the table at once and the
// request goes to the next choice when it can be sent again.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "status.hpp"

namespace dmsc {

class Table;

struct RelayConfig {
  std::string host = "127.0.0.1";  // a numeric IPv4 or IPv6 address
  uint16_t port = 0;
  uint16_t fallback_port = 0;      // the TypeScript data plane, on 127.0.0.1
  std::string self;                // this gateway's id, for x-dmsc-path
  uint32_t attempts = 3;
  uint32_t connect_timeout_ms = 2000;
  uint32_t headers_timeout_ms = 30000;
  uint32_t body_timeout_ms = 30000;
  uint32_t client_idle_ms = 30000;
  uint32_t replay_bytes = 64 * 1024;
  uint32_t cache_ms = 60000;       // how long a taught credential, grant or endpoint holds
  // A secret shared with the TypeScript data plane, before the requester's address in the
  // x-dmsc-from header it adds to what it hands over: a requester cannot forge the header.
  std::string from_token;
};

struct RelayCounters {
  std::atomic<uint64_t> requests{0};   // requests read
  std::atomic<uint64_t> served{0};     // of which answered here (forwarded or failed)
  std::atomic<uint64_t> handed{0};     // ... handed to the TypeScript data plane
  std::atomic<uint64_t> tunnels{0};    // connections handed over whole
  std::atomic<uint64_t> forwarded{0};  // answers passed on from an instance
  std::atomic<uint64_t> retries{0};
  std::atomic<uint64_t> marked_down{0};
  std::atomic<uint64_t> failed{0};     // every instance tried failed
};

class Relay {
 public:
  Relay(std::shared_ptr<Table> table, RelayConfig config);
  ~Relay();
  Relay(const Relay&) = delete;
  Relay& operator=(const Relay&) = delete;

  // Binds and starts the loop; the bound port in *port.
  Status start(uint16_t* port);
  // Closes every connection and joins the loop. Idempotent.
  void stop();

  // Any thread. What the TypeScript data plane decided, for requests to come: a grant for
  // a capability name, or (a name ending in '/') for every name below it.
  void learn(const std::string& token, const std::string& aic, int64_t expires_ms, const std::string& capability);
  void endpoint(const std::string& aic, const std::string& ip, uint16_t port, const std::string& base, const std::string& search);
  void forget(const std::string& aic);  // its credentials and its endpoint
  void drop_endpoint(const std::string& aic);
  void clear();                         // everything taught
  // Next hops marked down here since the last call.
  std::vector<std::string> take_down();
  const RelayCounters& counters() const;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace dmsc
