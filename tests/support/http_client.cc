#include "support/http_client.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/beast/http.hpp>
#include <cerrno>
#include <stdexcept>
#include <strings.h>

namespace switchyard::testing {

namespace bhttp = boost::beast::http;

std::string HttpResponse::Header(const std::string& name) const {
  for (const auto& [k, v] : headers) {
    if (strcasecmp(k.c_str(), name.c_str()) == 0) return v;
  }
  return {};
}

RawConnection::RawConnection(uint16_t port) {
  fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd_ < 0) throw std::runtime_error("socket failed");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    close(fd_);
    throw std::runtime_error("connect failed: " + std::string(strerror(errno)));
  }
  int one = 1;
  setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

RawConnection::~RawConnection() {
  if (fd_ >= 0) close(fd_);
}

bool RawConnection::Send(const std::string& bytes) {
  size_t off = 0;
  while (off < bytes.size()) {
    ssize_t n = send(fd_, bytes.data() + off, bytes.size() - off, MSG_NOSIGNAL);
    if (n <= 0) {
      if (n < 0 && errno == EINTR) continue;
      return false;
    }
    off += static_cast<size_t>(n);
  }
  return true;
}

std::optional<HttpResponse> RawConnection::Read(std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  bhttp::response_parser<bhttp::string_body> parser;
  parser.body_limit(64 << 20);
  parser.eager(true);
  std::string buf = std::move(pending_);
  pending_.clear();
  for (;;) {
    if (!buf.empty()) {
      boost::system::error_code ec;
      size_t used = parser.put(boost::asio::buffer(buf), ec);
      if (ec && ec != bhttp::error::need_more) return std::nullopt;
      buf.erase(0, used);
      if (parser.is_done()) {
        pending_ = std::move(buf);
        HttpResponse r;
        auto& msg = parser.get();
        r.status = static_cast<int>(msg.result_int());
        for (const auto& f : msg) r.headers.emplace_back(f.name_string(), f.value());
        r.body = msg.body();
        return r;
      }
      if (used > 0) continue;
    }
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return std::nullopt;
    pollfd p{fd_, POLLIN, 0};
    int pr = poll(&p, 1, static_cast<int>(left.count()));
    if (pr <= 0) {
      if (pr < 0 && errno == EINTR) continue;
      return std::nullopt;
    }
    char tmp[16384];
    ssize_t n = recv(fd_, tmp, sizeof tmp, 0);
    if (n <= 0) {
      if (n == 0 && parser.got_some()) {
        boost::system::error_code ec;
        parser.put_eof(ec);
        if (!ec && parser.is_done()) continue;
      }
      return std::nullopt;
    }
    buf.append(tmp, static_cast<size_t>(n));
  }
}

bool RawConnection::WaitClosed(std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    pollfd p{fd_, POLLIN, 0};
    int pr = poll(&p, 1, static_cast<int>(left.count()));
    if (pr < 0 && errno == EINTR) continue;
    if (pr <= 0) return false;
    char tmp[4096];
    ssize_t n = recv(fd_, tmp, sizeof tmp, 0);
    if (n <= 0) return true;
  }
}

std::string BuildRequest(const std::string& method, const std::string& target,
                         const std::vector<std::pair<std::string, std::string>>& headers,
                         const std::string& body, bool keep_alive) {
  std::string r = method + " " + target + " HTTP/1.1\r\nHost: 127.0.0.1\r\n";
  bool chunked = false;
  for (const auto& [k, v] : headers) {
    if (strcasecmp(k.c_str(), "transfer-encoding") == 0) chunked = true;
    r += k + ": " + v + "\r\n";
  }
  if (!chunked && (!body.empty() || method == "POST" || method == "PUT")) {
    r += "Content-Length: " + std::to_string(body.size()) + "\r\n";
  }
  if (!keep_alive) r += "Connection: close\r\n";
  r += "\r\n";
  r += body;
  return r;
}

std::optional<HttpResponse> Fetch(uint16_t port, const std::string& method,
                                  const std::string& target,
                                  const std::vector<std::pair<std::string, std::string>>& headers,
                                  const std::string& body) {
  RawConnection c(port);
  if (!c.Send(BuildRequest(method, target, headers, body, false))) return std::nullopt;
  return c.Read();
}

}  // namespace switchyard::testing
