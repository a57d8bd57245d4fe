// HttpServer: HTTP/1.1 listeners on one thread pool (Boost.Beast on Asio C++20 coroutines).
//
// Per connection: keep-alive and pipelining (requests answered in order), chunked bodies,
// limits on head size and body size, a deadline for the first request's whole head
// (header_timeout, so a slowloris client is cut off), for each later head once its first byte
// arrives, for the body (body_timeout) and between requests (idle_timeout). Each listener caps
// concurrent connections; past the cap it stops accepting until a connection closes.
//
// Threads: `threads` I/O threads, each running its own io_context; a connection lives on one of
// them for its whole life. Handlers run on them and must not block.
// Shutdown() is called from a non-I/O thread (e.g. main) and blocks until drained.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "common/status.h"
#include "http/message.h"

namespace switchyard::http {

struct ListenerOptions {
  std::string name;     // for logs: "public", "admin"
  std::string address;  // "HOST:PORT" or "[V6]:PORT"; port 0 picks a free port
  uint64_t max_header_bytes = 16384;
  uint64_t max_body_bytes = 1048576;
  std::chrono::milliseconds header_timeout{10000};
  std::chrono::milliseconds body_timeout{30000};
  std::chrono::milliseconds idle_timeout{60000};
  std::chrono::milliseconds write_timeout{30000};
  uint32_t max_connections = 10000;
  // The most request-body bytes this listener holds at once, across connections, from the
  // head (the declared Content-Length; max_body_bytes for a chunked body) until the handler has
  // answered. Past it a request gets 503 with Retry-After before its body is read. Unauthenticated
  // bodies times max_connections were bounded by nothing else (10 GiB at the defaults).
  // 0: max(64 MiB, 4 x max_body_bytes).
  uint64_t max_body_bytes_in_flight = 0;
  // Keep accepting and serving while the other listeners drain at shutdown, and close last
  // (the admin listener: /readyz answers 503 and /metrics stays scrapable until the end).
  bool serve_while_draining = false;
};

class HttpServer {
 public:
  explicit HttpServer(int threads);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Binds a listener (before Start). `handler` must outlive the server. Returns the bound port.
  Result<uint16_t> AddListener(const ListenerOptions& options, Handler* handler);

  // Calls `on_signal(signo)` on an I/O thread for SIGTERM, SIGINT and SIGHUP (must not block).
  void HandleSignals(std::function<void(int)> on_signal);

  // Runs `fn` every `period` on an I/O thread until shutdown, but only when every I/O thread
  // ran a probe posted at the previous tick: one wedged I/O thread holds it (the watchdog ping,
  // so that systemd restarts a daemon whose connections on any thread hang).
  void Every(std::chrono::milliseconds period, std::function<void()> fn);

  // Starts the I/O threads and accepting.
  void Start();

  // Stops accepting, lets in-flight requests finish (their responses say Connection: close),
  // closes idle connections, and waits for connections to end; then cancels the rest, closes
  // the `serve_while_draining` listeners, and joins the I/O threads. Returns within about
  // `timeout` in all. Idempotent.
  void Shutdown(std::chrono::milliseconds timeout);

  // True once Shutdown has begun.
  bool stopping() const;

  size_t active_connections() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace switchyard::http
