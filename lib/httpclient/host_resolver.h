// HostResolver: the HTTP client's name lookups, off its I/O threads and isolated per host.
//
// Why not Asio's resolver: Asio runs every async_resolve of an io_context on one private thread,
// and getaddrinfo cannot be cancelled. One sink whose DNS hangs (resolv.conf timeouts run to tens
// of seconds) held up every other new outbound connection, the Sentry API's token refreshes
// included, and a shutdown waited for it.
//
// Contract:
// - A lookup runs on a thread of the resolver's own, at most `max_threads` at once (more wait in
//   order). There is one lookup per host at a time: requests for a host already being looked up
//   wait for that answer, so a hung host holds at most one thread.
// - A successful answer is kept for `ttl` (by the clock's monotonic time), up to
//   `max_cached_hosts` hosts; failures are not kept.
// - `done` is called exactly once: inline on the calling thread for a cached answer, otherwise on
//   a resolver thread with the resolver's lock held, so it must only hand the answer on (post it)
//   and never call back into the resolver.
// - Shutdown() answers every waiting request with kUnavailable "client shutting down"; when it
//   returns, no callback is running or will run on a resolver thread. Lookups still blocked in
//   getaddrinfo finish later on their detached threads and are dropped; they hold only shared
//   state, never the client.
// Thread-safe.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/clock.h"
#include "common/status.h"

namespace switchyard::httpclient {

// A blocking name lookup: the numeric addresses of `host` ("127.0.0.1", "::1"), or kUnavailable
// with the reason. The HTTP client's test seam (HttpClientOptions::lookup).
using LookupFn = std::function<Result<std::vector<std::string>>(const std::string& host)>;

// getaddrinfo (TCP, addresses of configured families only, as Asio's resolver asks).
Result<std::vector<std::string>> SystemLookup(const std::string& host);

struct HostResolverOptions {
  LookupFn lookup = SystemLookup;
  int max_threads = 8;
  std::chrono::milliseconds ttl{30000};
  size_t max_cached_hosts = 1024;
  const Clock* clock = nullptr;  // nullptr: SystemClock()
};

class HostResolver {
 public:
  using Callback = std::function<void(Result<std::vector<std::string>>)>;

  explicit HostResolver(HostResolverOptions options);
  ~HostResolver();  // Shutdown()
  HostResolver(const HostResolver&) = delete;
  HostResolver& operator=(const HostResolver&) = delete;

  void Resolve(const std::string& host, Callback done);
  void Shutdown();

 private:
  struct State;
  std::shared_ptr<State> state_;
};

}  // namespace switchyard::httpclient
