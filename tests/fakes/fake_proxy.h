// FakeProxy: a forward HTTP proxy on 127.0.0.1 for tests of egress through HTTP_PROXY and
// HTTPS_PROXY. `CONNECT host:port` opens a tunnel to 127.0.0.1:port, whatever the host (tests
// name targets freely), answers 200 and relays bytes both ways until either side closes. A
// request in absolute form (`POST http://host/path`) is recorded and answered by the proxy
// itself: 200, body "via proxy", keep-alive. Every request head it reads is recorded.
// SetRefusal(n) answers every request (CONNECT or absolute form) with n and closes (407 carries
// Proxy-Authenticate; 200 restores the normal behaviour);
// SetSilent(true) makes it read requests and answer nothing. One thread per connection with
// blocking sockets. Thread-safe; the destructor ends every connection and joins.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace switchyard::testing {

class FakeProxy {
 public:
  struct Seen {
    std::string method;
    std::string target;               // as on the request line
    std::string host;                 // the Host field
    std::string proxy_authorization;  // the Proxy-Authorization field
    std::string body;                 // absolute-form requests only
  };

  FakeProxy();  // throws std::runtime_error if it cannot listen
  ~FakeProxy();
  FakeProxy(const FakeProxy&) = delete;
  FakeProxy& operator=(const FakeProxy&) = delete;

  uint16_t port() const;
  // http://[userinfo@]127.0.0.1:<port>
  std::string url(const std::string& userinfo = "") const;
  void SetRefusal(int status);
  void SetSilent(bool silent);

  std::vector<Seen> seen() const;  // in arrival order
  size_t connections() const;      // TCP connections accepted
  // Waits until at least `n` request heads were recorded; false on timeout.
  bool WaitFor(size_t n, std::chrono::milliseconds timeout) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace switchyard::testing
