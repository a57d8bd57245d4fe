#include "fakes/test_http_server.h"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <future>
#include <set>
#include <stdexcept>
#include <thread>

namespace switchyard::testing {
namespace {

namespace net = boost::asio;
namespace http = boost::beast::http;
using tcp = net::ip::tcp;

constexpr auto kNoThrow = net::as_tuple(net::use_awaitable);

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(a[i])) !=
        std::tolower(static_cast<unsigned char>(b[i]))) {
      return false;
    }
  }
  return true;
}

struct Connection {
  explicit Connection(tcp::socket s) : socket(std::move(s)), timer(socket.get_executor()) {}
  tcp::socket socket;
  net::steady_timer timer;  // for reply delays
  void Close() {
    boost::system::error_code ec;
    socket.shutdown(tcp::socket::shutdown_both, ec);
    socket.close(ec);
    timer.cancel();
  }
};

}  // namespace

std::string ReceivedRequest::Header(std::string_view name) const {
  for (const auto& [n, v] : headers) {
    if (EqualsIgnoreCase(n, name)) return v;
  }
  return "";
}

struct TestHttpServer::Impl {
  explicit Impl(Handler h) : handler(std::move(h)) {}

  net::io_context ioc{1};
  net::executor_work_guard<net::io_context::executor_type> guard{ioc.get_executor()};
  std::thread thread;
  Handler handler;
  // I/O thread only:
  std::shared_ptr<tcp::acceptor> acceptor;
  std::set<std::shared_ptr<Connection>> connections;

  // Opens the acceptor on `port` and starts accepting. I/O thread.
  uint16_t Listen(uint16_t port) {
    auto a = std::make_shared<tcp::acceptor>(ioc);
    boost::system::error_code ec;
    const tcp::endpoint ep(net::ip::make_address_v4("127.0.0.1"), port);
    a->open(ep.protocol(), ec);
    if (!ec) a->set_option(net::socket_base::reuse_address(true), ec);
    if (!ec) a->bind(ep, ec);
    if (!ec) a->listen(net::socket_base::max_listen_connections, ec);
    if (ec) return 0;
    const uint16_t bound = a->local_endpoint(ec).port();
    if (ec) return 0;
    acceptor = a;
    net::co_spawn(ioc, Accept(std::move(a)), net::detached);
    return bound;
  }

  // I/O thread.
  void CloseAll() {
    if (acceptor) {
      boost::system::error_code ec;
      acceptor->close(ec);  // the pending accept completes with operation_aborted
      acceptor.reset();
    }
    for (const auto& c : connections) c->Close();
    connections.clear();
  }

  net::awaitable<void> Accept(std::shared_ptr<tcp::acceptor> a) {
    for (;;) {
      auto [ec, socket] = co_await a->async_accept(kNoThrow);
      if (ec) {
        if (ec == net::error::operation_aborted || !a->is_open()) co_return;
        continue;  // e.g. EMFILE: keep going
      }
      auto conn = std::make_shared<Connection>(std::move(socket));
      connections.insert(conn);
      net::co_spawn(ioc, Session(conn), net::detached);
    }
  }

  net::awaitable<void> Session(std::shared_ptr<Connection> conn) {
    boost::beast::flat_buffer buffer;
    for (;;) {
      http::request_parser<http::string_body> parser;
      parser.body_limit(64ull << 20);
      parser.header_limit(1 << 20);
      auto [ec, n] = co_await http::async_read(conn->socket, buffer, parser, kNoThrow);
      if (ec) break;
      const auto& req = parser.get();
      ReceivedRequest r;
      r.method = std::string(req.method_string());
      r.target = std::string(req.target());
      for (const auto& f : req) r.headers.emplace_back(f.name_string(), f.value());
      r.body = req.body();
      ServerReply reply;
      try {
        reply = handler(r);
      } catch (const std::exception& e) {
        reply = ServerReply{500, {}, std::string("handler threw: ") + e.what()};
      }
      if (reply.delay.count() > 0) {
        conn->timer.expires_after(reply.delay);
        co_await conn->timer.async_wait(kNoThrow);
        if (!conn->socket.is_open()) break;
      }
      if (reply.close) break;
      http::response<http::string_body> res{static_cast<http::status>(reply.status), req.version()};
      for (const auto& [name, value] : reply.headers) res.insert(name, value);
      res.body() = std::move(reply.body);
      res.keep_alive(req.keep_alive());
      res.prepare_payload();
      auto [wec, wn] = co_await http::async_write(conn->socket, res, kNoThrow);
      if (wec || !res.keep_alive()) break;
    }
    conn->Close();
    connections.erase(conn);
  }

  // Runs `fn` on the I/O thread and waits for its result.
  template <typename Fn>
  auto RunOnIo(Fn fn) -> decltype(fn()) {
    std::packaged_task<decltype(fn())()> task(std::move(fn));
    auto result = task.get_future();
    net::post(ioc, [&task] { task(); });
    return result.get();
  }
};

TestHttpServer::TestHttpServer(Handler handler, uint16_t port)
    : impl_(std::make_unique<Impl>(std::move(handler))) {
  impl_->thread = std::thread([impl = impl_.get()] { impl->ioc.run(); });
  port_ = impl_->RunOnIo([this, port] { return impl_->Listen(port); });
  if (port_ == 0) {
    impl_->ioc.stop();
    impl_->thread.join();
    throw std::runtime_error("TestHttpServer: cannot listen on 127.0.0.1:" + std::to_string(port));
  }
}

TestHttpServer::~TestHttpServer() {
  Stop();
  // Coroutines still suspended (none should be after Stop) are destroyed with the io_context.
  impl_->ioc.stop();
  impl_->thread.join();
}

void TestHttpServer::Stop() {
  impl_->RunOnIo([this] { impl_->CloseAll(); });
}

bool TestHttpServer::Start() {
  return impl_->RunOnIo([this] {
    if (impl_->acceptor) return true;
    return impl_->Listen(port_) == port_;
  });
}

}  // namespace switchyard::testing
