#include "fakes/fake_proxy.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <charconv>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <stdexcept>
#include <string_view>
#include <thread>

namespace switchyard::testing {
namespace {

constexpr size_t kMaxHead = 64 * 1024;

bool SendAll(int fd, std::string_view data) {
  while (!data.empty()) {
    const ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n <= 0) return false;
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

std::string Lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

}  // namespace

struct FakeProxy::Impl {
  int listen_fd = -1;
  int stop_pipe[2] = {-1, -1};
  uint16_t port = 0;
  std::thread accept_thread;

  mutable std::mutex mu;
  mutable std::condition_variable cv;
  bool stopping = false;             // GUARDED_BY(mu)
  int connect_status = 200;          // GUARDED_BY(mu)
  bool silent = false;               // GUARDED_BY(mu)
  std::vector<Seen> seen;            // GUARDED_BY(mu)
  size_t connections = 0;            // GUARDED_BY(mu)
  std::vector<int> fds;              // GUARDED_BY(mu): every open connection (both tunnel ends)
  std::vector<std::thread> threads;  // GUARDED_BY(mu)

  // Waits until `fd` is readable or the proxy stops; false when stopping.
  bool WaitReadable(int fd) {
    pollfd p[2] = {{fd, POLLIN, 0}, {stop_pipe[0], POLLIN, 0}};
    for (;;) {
      const int r = ::poll(p, 2, -1);
      if (r < 0 && errno == EINTR) continue;
      if (r < 0 || (p[1].revents & POLLIN)) return false;
      return true;
    }
  }

  void Track(int fd) {
    std::lock_guard lock(mu);
    fds.push_back(fd);
  }

  // Closes a connection's fd (its thread is done with it).
  void Untrack(int fd) {
    std::lock_guard lock(mu);
    std::erase(fds, fd);
    ::close(fd);
  }

  void AcceptLoop() {
    for (;;) {
      if (!WaitReadable(listen_fd)) return;
      const int fd = ::accept(listen_fd, nullptr, nullptr);
      if (fd < 0) continue;
      std::lock_guard lock(mu);
      if (stopping) {
        ::close(fd);
        return;
      }
      ++connections;
      fds.push_back(fd);
      threads.emplace_back([this, fd] {
        Serve(fd);
        Untrack(fd);
      });
    }
  }

  void Serve(int fd) {
    std::string buf;
    for (;;) {
      size_t end;
      while ((end = buf.find("\r\n\r\n")) == std::string::npos) {
        if (buf.size() > kMaxHead || !WaitReadable(fd)) return;
        char chunk[4096];
        const ssize_t n = ::recv(fd, chunk, sizeof chunk, 0);
        if (n <= 0) return;
        buf.append(chunk, static_cast<size_t>(n));
      }
      Seen s;
      size_t content_length = 0;
      const std::string head = buf.substr(0, end);
      buf.erase(0, end + 4);
      size_t line_end = head.find("\r\n");
      const std::string request_line = head.substr(0, line_end);
      const size_t sp1 = request_line.find(' ');
      const size_t sp2 = request_line.find(' ', sp1 + 1);
      if (sp1 == std::string::npos || sp2 == std::string::npos) return;
      s.method = request_line.substr(0, sp1);
      s.target = request_line.substr(sp1 + 1, sp2 - sp1 - 1);
      while (line_end != std::string::npos) {
        const size_t next = head.find("\r\n", line_end + 2);
        const std::string line = head.substr(line_end + 2, next - line_end - 2);
        line_end = next;
        const size_t colon = line.find(':');
        if (colon == std::string::npos) continue;
        const std::string name = Lower(line.substr(0, colon));
        std::string value = line.substr(colon + 1);
        while (!value.empty() && value.front() == ' ') value.erase(0, 1);
        if (name == "host") s.host = value;
        if (name == "proxy-authorization") s.proxy_authorization = value;
        if (name == "content-length") {
          const auto [end, ec] =
              std::from_chars(value.data(), value.data() + value.size(), content_length);
          if (ec != std::errc() || end != value.data() + value.size()) return;
        }
      }
      while (buf.size() < content_length) {
        if (!WaitReadable(fd)) return;
        char chunk[4096];
        const ssize_t n = ::recv(fd, chunk, sizeof chunk, 0);
        if (n <= 0) return;
        buf.append(chunk, static_cast<size_t>(n));
      }
      s.body = buf.substr(0, content_length);
      buf.erase(0, content_length);
      int status;
      bool silent_now;
      {
        std::lock_guard lock(mu);
        seen.push_back(s);
        status = connect_status;
        silent_now = silent;
      }
      cv.notify_all();
      if (silent_now) {
        WaitReadable(stop_pipe[0]);  // until the proxy stops
        return;
      }
      if (s.method != "CONNECT" && status == 200) {
        if (!SendAll(fd, "HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nvia proxy")) return;
        continue;
      }
      if (status != 200) {
        std::string answer = "HTTP/1.1 " + std::to_string(status) + " Refused\r\n";
        if (status == 407) answer += "Proxy-Authenticate: Basic realm=\"test\"\r\n";
        answer += "Content-Length: 7\r\n\r\nrefused";
        SendAll(fd, answer);
        return;
      }
      Tunnel(fd, s.target, buf);
      return;
    }
  }

  // Relays between `client` and 127.0.0.1:<port of target> until either side closes.
  void Tunnel(int client, const std::string& target, const std::string& early) {
    const size_t colon = target.rfind(':');
    if (colon == std::string::npos) return;
    uint16_t port = 0;
    const std::string_view digits = std::string_view(target).substr(colon + 1);
    if (std::from_chars(digits.data(), digits.data() + digits.size(), port).ec != std::errc()) {
      return;
    }
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    const int up = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (up < 0) return;
    Track(up);
    struct Closer {
      Impl* m;
      int fd;
      ~Closer() { m->Untrack(fd); }
    } closer{this, up};
    if (::connect(up, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
      SendAll(client, "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n");
      return;
    }
    if (!SendAll(client, "HTTP/1.1 200 Connection established\r\n\r\n")) return;
    if (!early.empty() && !SendAll(up, early)) return;
    pollfd p[3] = {{client, POLLIN, 0}, {up, POLLIN, 0}, {stop_pipe[0], POLLIN, 0}};
    char chunk[16384];
    for (;;) {
      if (::poll(p, 3, -1) < 0) {
        if (errno == EINTR) continue;
        return;
      }
      if (p[2].revents & POLLIN) return;
      for (int i = 0; i < 2; ++i) {
        if (!(p[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
        const ssize_t n = ::recv(p[i].fd, chunk, sizeof chunk, 0);
        if (n <= 0) return;
        if (!SendAll(p[1 - i].fd, std::string_view(chunk, static_cast<size_t>(n)))) return;
      }
    }
  }
};

FakeProxy::FakeProxy() : impl_(std::make_unique<Impl>()) {
  Impl& m = *impl_;
  if (::pipe2(m.stop_pipe, O_CLOEXEC) != 0) throw std::runtime_error("pipe");
  m.listen_fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  if (m.listen_fd < 0 || ::bind(m.listen_fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) ||
      ::listen(m.listen_fd, 128) ||
      ::getsockname(m.listen_fd, reinterpret_cast<sockaddr*>(&addr), &len)) {
    throw std::runtime_error("fake proxy cannot listen");
  }
  m.port = ntohs(addr.sin_port);
  m.accept_thread = std::thread([&m] { m.AcceptLoop(); });
}

FakeProxy::~FakeProxy() {
  Impl& m = *impl_;
  {
    std::lock_guard lock(m.mu);
    m.stopping = true;
    for (int fd : m.fds) ::shutdown(fd, SHUT_RDWR);
  }
  const char c = 'x';
  (void)!::write(m.stop_pipe[1], &c, 1);
  m.accept_thread.join();
  std::vector<std::thread> threads;
  {
    std::lock_guard lock(m.mu);
    threads = std::move(m.threads);
  }
  for (auto& t : threads) t.join();
  for (int fd : m.fds) ::close(fd);  // none left: each thread closes its own
  ::close(m.listen_fd);
  ::close(m.stop_pipe[0]);
  ::close(m.stop_pipe[1]);
}

uint16_t FakeProxy::port() const { return impl_->port; }

std::string FakeProxy::url(const std::string& userinfo) const {
  return "http://" + (userinfo.empty() ? "" : userinfo + "@") +
         "127.0.0.1:" + std::to_string(impl_->port);
}

void FakeProxy::SetRefusal(int status) {
  std::lock_guard lock(impl_->mu);
  impl_->connect_status = status;
}

void FakeProxy::SetSilent(bool silent) {
  std::lock_guard lock(impl_->mu);
  impl_->silent = silent;
}

std::vector<FakeProxy::Seen> FakeProxy::seen() const {
  std::lock_guard lock(impl_->mu);
  return impl_->seen;
}

size_t FakeProxy::connections() const {
  std::lock_guard lock(impl_->mu);
  return impl_->connections;
}

bool FakeProxy::WaitFor(size_t n, std::chrono::milliseconds timeout) const {
  std::unique_lock lock(impl_->mu);
  return impl_->cv.wait_for(lock, timeout, [&] { return impl_->seen.size() >= n; });
}

}  // namespace switchyard::testing
