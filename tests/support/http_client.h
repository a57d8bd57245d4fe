// A deliberately low-level HTTP/1.1 client for tests: raw bytes out (so tests can send chunked,
// pipelined, malformed or trickled requests), responses parsed with Beast's incremental parser.
// Every read has a deadline. Blocking; one thread per client.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace switchyard::testing {

struct HttpResponse {
  int status = 0;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  std::string Header(const std::string& name) const;  // case-insensitive
};

class RawConnection {
 public:
  // Connects to 127.0.0.1:port; throws on failure.
  explicit RawConnection(uint16_t port);
  ~RawConnection();
  RawConnection(const RawConnection&) = delete;
  RawConnection& operator=(const RawConnection&) = delete;

  // Sends all bytes; returns false if the peer closed or reset.
  bool Send(const std::string& bytes);
  // Reads one response; nullopt on timeout, close or parse error.
  std::optional<HttpResponse> Read(std::chrono::milliseconds timeout = std::chrono::seconds(10));
  // True if the peer closes the connection (EOF or reset) within `timeout`, discarding any data.
  bool WaitClosed(std::chrono::milliseconds timeout);

 private:
  int fd_ = -1;
  std::string pending_;  // bytes read past the previous response
};

// Builds a request. Adds Host and Content-Length (unless a Transfer-Encoding header is given).
std::string BuildRequest(const std::string& method, const std::string& target,
                         const std::vector<std::pair<std::string, std::string>>& headers,
                         const std::string& body, bool keep_alive = true);

// One request on a fresh connection.
std::optional<HttpResponse> Fetch(uint16_t port, const std::string& method,
                                  const std::string& target,
                                  const std::vector<std::pair<std::string, std::string>>& headers =
                                      {},
                                  const std::string& body = "");

}  // namespace switchyard::testing
