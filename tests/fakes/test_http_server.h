// TestHttpServer: a small scriptable HTTP/1.1 server on 127.0.0.1 for tests (one I/O thread,
// Beast coroutines). The handler decides each reply; it runs on the server's I/O thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace switchyard::testing {

struct ReceivedRequest {
  std::string method;
  std::string target;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  // First value of a header (case-insensitive name); empty if absent.
  std::string Header(std::string_view name) const;
};

struct ServerReply {
  int status = 200;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  std::chrono::milliseconds delay{0};  // wait before answering
  bool close = false;                  // close the connection without answering
};

class TestHttpServer {
 public:
  using Handler = std::function<ServerReply(const ReceivedRequest&)>;

  // Listens on 127.0.0.1:port (0 = a free port); throws std::runtime_error on failure.
  explicit TestHttpServer(Handler handler, uint16_t port = 0);
  ~TestHttpServer();
  TestHttpServer(const TestHttpServer&) = delete;
  TestHttpServer& operator=(const TestHttpServer&) = delete;

  uint16_t port() const { return port_; }
  // Stops listening and closes every connection (the port can be reused by Start()).
  void Stop();
  // Listens again on the same port after Stop(); false if that fails.
  bool Start();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  uint16_t port_ = 0;
};

}  // namespace switchyard::testing
