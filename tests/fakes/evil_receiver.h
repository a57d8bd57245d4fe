// EvilReceiver: an HTTP/1.1 endpoint on 127.0.0.1 that misbehaves on purpose, for fault tests of
// the outbound path (http sink, HTTP client, dispatcher). It reads each request with a real parser,
// records it, then answers according to the current Behavior: slowly, not at all, half (a head
// that promises a body that never comes), with a reset, with bytes that are not HTTP, with a
// redirect, with an endless or huge body, or over TLS with a certificate nobody trusts.
//
// One thread per connection with blocking sockets, so a hanging reply costs the fake a thread, not
// the daemon anything. Thread-safe; the destructor (or Stop) ends every connection and joins.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace switchyard::testing {

enum class Misbehavior {
  kOk,                // 200 "ok" (to show recovery once the receiver behaves)
  kSlow,              // waits `delay`, then answers `status`
  kHangAfterHeaders,  // sends a `status` head with Content-Length: 1000, then nothing, ever
  kNeverAnswer,       // reads the request and sends nothing, ever
  kReset,             // reads the request, then resets the connection (TCP RST)
  kGarbage,           // answers bytes that are not HTTP, then closes
  kRedirect,          // `status` (3xx) with Location: `location`
  kHugeBody,          // `status` with a body of `body_bytes` (Content-Length, or chunked), streamed
  kHugeHead,          // a `status` head with ~1 MiB of header fields
};

struct Behavior {
  Misbehavior kind = Misbehavior::kOk;
  int status = 200;
  std::chrono::milliseconds delay{0};  // kSlow
  std::string location;                // kRedirect
  uint64_t body_bytes = 0;             // kHugeBody
  bool chunked = false;                // kHugeBody: chunked instead of Content-Length
};

class EvilReceiver {
 public:
  // `tls`: serve TLS with a fresh self-signed certificate for 127.0.0.1 (which no system trust
  // store accepts). Throws std::runtime_error if it cannot listen.
  explicit EvilReceiver(Behavior behavior, bool tls = false);
  ~EvilReceiver();
  EvilReceiver(const EvilReceiver&) = delete;
  EvilReceiver& operator=(const EvilReceiver&) = delete;

  uint16_t port() const { return port_; }
  // http(s)://127.0.0.1:<port><path>
  std::string url(const std::string& path = "/") const;

  // Applies to requests read from now on.
  void Set(Behavior behavior);

  size_t connections() const;         // accepted
  size_t requests() const;            // requests read in full (after the TLS handshake, if any)
  size_t handshake_failures() const;  // TLS handshakes that failed (e.g. the peer refused the cert)
  uint64_t body_bytes_sent() const;   // body bytes of kHugeBody replies actually written
  size_t open_connections() const;    // accepted and not yet closed (by either side)
  std::vector<std::string> idempotency_keys() const;  // of every request read, in order

  // Wait until the count reaches `n`; false on timeout.
  bool WaitForRequests(size_t n, std::chrono::milliseconds timeout) const;
  bool WaitForHandshakeFailures(size_t n, std::chrono::milliseconds timeout) const;
  // Waits until no connection is open (the peer hung up on every misbehaving reply).
  bool WaitForNoOpenConnections(std::chrono::milliseconds timeout) const;

  // Stops accepting, ends every connection, joins every thread. Idempotent.
  void Stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  uint16_t port_ = 0;
  bool tls_ = false;
};

}  // namespace switchyard::testing
