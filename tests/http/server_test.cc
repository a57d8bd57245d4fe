#include "http/server.h"

#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <ctime>
#include <memory>
#include <mutex>
#include <regex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "common/log.h"
#include "support/http_client.h"

namespace switchyard::http {
namespace {

// Throws for /throw (before answering) and for /throw-after (after answering); answers the rest.
class ThrowingHandler : public Handler {
 public:
  void Handle(Request request, Respond respond) override {
    if (request.target == "/throw") throw std::runtime_error("handler bug");
    respond(Response::Text(200, "ok", "text/plain"));
    if (request.target == "/throw-after") throw std::runtime_error("handler bug after answering");
  }
};

// Adds one listener on 127.0.0.1:0 with `options` to `server` and starts it; returns the port
// (0 after a failed ASSERT-style expectation).
uint16_t StartOne(HttpServer& server, Handler& handler, ListenerOptions options = {}) {
  options.name = "test";
  options.address = "127.0.0.1:0";
  auto port = server.AddListener(options, &handler);
  EXPECT_TRUE(port.ok()) << port.status().ToString();
  server.Start();
  return port.ok() ? *port : 0;
}

// A handler runs inside Asio's initiation, outside any co_spawn's try: an exception from it used
// to leave io_context::run() and end the process. It is answered 500 (or keeps the answer the
// handler gave), logged and counted, and the server goes on serving on the same connection.
TEST(HttpServerTest, AThrowingHandlerGets500AndTheServerKeepsServing) {
  ThrowingHandler handler;
  HttpServer server(1);
  const uint16_t port = StartOne(server, handler);
  ASSERT_NE(port, 0);
  const uint64_t failures_before = log::CoroutineFailures();

  testing::RawConnection conn(port);
  ASSERT_TRUE(conn.Send(testing::BuildRequest("GET", "/throw", {}, "")));
  auto r = conn.Read();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 500);
  EXPECT_EQ(r->body.find("handler bug"), std::string::npos) << "no internals in the answer";

  ASSERT_TRUE(conn.Send(testing::BuildRequest("GET", "/throw-after", {}, "")));
  r = conn.Read();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200) << "the handler's own answer stands";

  ASSERT_TRUE(conn.Send(testing::BuildRequest("GET", "/fine", {}, "")));
  r = conn.Read();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(log::CoroutineFailures() - failures_before, 2u);
  server.Shutdown(std::chrono::seconds(2));
}

class OkHandler : public Handler {
 public:
  void Handle(Request, Respond respond) override {
    respond(Response::Text(200, "ok", "text/plain"));
  }
};

// Beast 1.81 bounds neither a chunk-size line's extensions nor a trailer: the server used to
// buffer them until body_timeout (30 s) while an unauthenticated client streamed one without a
// CRLF (32 MiB held in a probe). The read buffer is bounded; past it the answer is 400 at once.
TEST(HttpServerTest, AnEndlessChunkExtensionOrTrailerIsRefusedNotBuffered) {
  OkHandler handler;
  HttpServer server(1);
  ListenerOptions options;
  options.max_header_bytes = 16384;
  options.body_timeout = std::chrono::seconds(60);
  const uint16_t port = StartOne(server, handler, options);
  ASSERT_NE(port, 0);

  const std::string head =
      "POST /hooks/x HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n";
  for (const std::string& start : {std::string("1;"), std::string("1\r\na\r\n0\r\nX-T: ")}) {
    SCOPED_TRACE(start);
    testing::RawConnection conn(port);
    ASSERT_TRUE(conn.Send(head + start));
    // 1 MiB without a line end: far past any bound, far short of what a client can stream.
    const std::string filler(64 * 1024, 'a');
    for (int i = 0; i < 16; ++i) {
      if (!conn.Send(filler)) break;  // the server answered and closed: fine
    }
    // Within a fraction of body_timeout (a 10-s read timeout against 60 s).
    auto r = conn.Read(std::chrono::seconds(10));
    ASSERT_TRUE(r) << "no answer: the server kept buffering";
    EXPECT_EQ(r->status, 400);
    EXPECT_NE(r->body.find("chunk extension or trailer"), std::string::npos) << r->body;
  }
  // A chunked body with a modest extension and trailer is still fine.
  testing::RawConnection conn(port);
  ASSERT_TRUE(conn.Send(head + "3;name=value\r\nabc\r\n0\r\nX-Trailer: yes\r\n\r\n"));
  auto r = conn.Read();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  server.Shutdown(std::chrono::seconds(2));
}

// Request bodies were bounded per connection only: max_connections x max_body_bytes (10 GiB at
// the defaults) of unauthenticated bytes could be held at once, far past a pod's memory limit.
// A listener now holds at most max_body_bytes_in_flight; past it, 503 before the body is read.
TEST(HttpServerTest, RequestBodiesInFlightAreBoundedPerListener) {
  OkHandler handler;
  HttpServer server(1);
  ListenerOptions options;
  options.max_body_bytes = 1 << 20;
  options.max_body_bytes_in_flight = 3 << 20;
  const uint16_t port = StartOne(server, handler, options);
  ASSERT_NE(port, 0);

  const std::string head =
      "POST /hooks/x HTTP/1.1\r\nHost: t\r\nContent-Length: " + std::to_string(1 << 20) +
      "\r\n\r\n";
  const std::string half((1 << 20) / 2, 'a');
  std::vector<std::unique_ptr<testing::RawConnection>> conns;
  for (int i = 0; i < 4; ++i) {
    conns.push_back(std::make_unique<testing::RawConnection>(port));
    ASSERT_TRUE(conns.back()->Send(head + half));
  }
  // Three are admitted and wait for the rest of their bodies; one is refused at once.
  int refused = -1;
  for (int i = 0; i < 4; ++i) {
    auto r = conns[i]->Read(std::chrono::milliseconds(1000));
    if (!r) continue;
    EXPECT_EQ(refused, -1) << "a second connection was refused";
    EXPECT_EQ(r->status, 503);
    EXPECT_EQ(r->Header("retry-after"), "1");
    refused = i;
  }
  ASSERT_NE(refused, -1) << "four bodies of 1 MiB were admitted against a 3 MiB budget";
  // An admitted one completes; then its share is free for a new request.
  const int admitted = refused == 0 ? 1 : 0;
  ASSERT_TRUE(conns[admitted]->Send(half));
  auto done = conns[admitted]->Read();
  ASSERT_TRUE(done);
  EXPECT_EQ(done->status, 200);
  testing::RawConnection again(port);
  ASSERT_TRUE(again.Send(head + half + half));
  auto r = again.Read();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  server.Shutdown(std::chrono::seconds(2));
}

// Keeps every `respond` until told to answer.
class HoldingHandler : public Handler {
 public:
  void Handle(Request, Respond respond) override {
    std::lock_guard lock(mu);
    held.push_back(std::move(respond));
    cv.notify_all();
  }
  bool WaitHeld(size_t n) {
    std::unique_lock lock(mu);
    return cv.wait_for(lock, std::chrono::seconds(10), [&] { return held.size() >= n; });
  }
  std::mutex mu;
  std::condition_variable cv;
  std::vector<Respond> held;
};

// A handler may answer after Shutdown gave up on it (a token exchange, a long DLQ replay): the
// resume lands in a stopped io_context, and destroying the server unwinds that session. Its
// frame releases the request's body charge on the listener, which used to be freed first (a
// heap use after free under ASan at every such exit).
TEST(HttpServerTest, AnAnswerAfterShutdownGaveUpIsDroppedSafelyWhenTheServerIsDestroyed) {
  HoldingHandler handler;
  uint16_t port;
  {
    HttpServer server(1);
    port = StartOne(server, handler);
    ASSERT_NE(port, 0);
    testing::RawConnection conn(port);
    ASSERT_TRUE(conn.Send(testing::BuildRequest("POST", "/slow", {}, std::string(1000, 'b'))));
    ASSERT_TRUE(handler.WaitHeld(1));
    server.Shutdown(std::chrono::milliseconds(50));  // gives up on the held request
    {
      Respond late = std::move(handler.held[0]);
      handler.held.clear();
      late(Response::Text(200, "late", "text/plain"));
    }  // as callers do: the answer given, its callback dropped
  }    // the server is destroyed with the resumed session still queued
  SUCCEED();
}

// Blocks the requests that land on an I/O thread other than `timer_thread` until released;
// answers the others at once.
class BlockOffTimerThreadHandler : public Handler {
 public:
  void Handle(Request, Respond respond) override {
    std::unique_lock lock(mu_);
    if (std::this_thread::get_id() != timer_thread_) {
      ++blocked_;
      cv_.notify_all();
      cv_.wait(lock, [this] { return released_; });
    }
    lock.unlock();
    respond(Response::Text(200, "ok", "text/plain"));
  }
  void SetTimerThread(std::thread::id id) {
    std::lock_guard lock(mu_);
    timer_thread_ = id;
  }
  bool blocked() {
    std::lock_guard lock(mu_);
    return blocked_ > 0;
  }
  void Release() {
    std::lock_guard lock(mu_);
    released_ = true;
    cv_.notify_all();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::thread::id timer_thread_;
  int blocked_ = 0;
  bool released_ = false;
};

// The watchdog ping ran on I/O thread 0 only: a wedged second thread (its connections hang)
// kept being pinged for. Every() now holds its task while any I/O thread does not run a probe.
TEST(HttpServerTest, APeriodicTaskIsHeldWhileAnyIoThreadIsWedged) {
  BlockOffTimerThreadHandler handler;
  HttpServer server(2);
  std::atomic<int> ticks{0};
  std::atomic<bool> timer_thread_known{false};
  server.Every(std::chrono::milliseconds(20), [&] {
    if (!timer_thread_known.exchange(true)) handler.SetTimerThread(std::this_thread::get_id());
    ++ticks;
  });
  const uint16_t port = StartOne(server, handler);
  ASSERT_NE(port, 0);
  auto wait_for = [](auto cond) {
    for (int i = 0; i < 1000 && !cond(); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));  // polling the server
    }
    return cond();
  };
  ASSERT_TRUE(wait_for([&] { return ticks >= 2; }));
  // Connections go to the I/O threads in turn: a few requests reach the other thread.
  std::vector<std::unique_ptr<testing::RawConnection>> conns;
  for (int i = 0; i < 8 && !handler.blocked(); ++i) {
    conns.push_back(std::make_unique<testing::RawConnection>(port));
    ASSERT_TRUE(conns.back()->Send(testing::BuildRequest("GET", "/x", {}, "")));
    wait_for(
        [&] { return handler.blocked() || conns.back()->Read(std::chrono::milliseconds(50)); });
  }
  ASSERT_TRUE(handler.blocked()) << "no request reached the second I/O thread";
  // The tick already past its check may still run: wait until five periods pass without one
  // (never, before the fix), then none may run for fifteen more.
  for (int i = 0; i < 50; ++i) {
    const int before = ticks;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    if (ticks == before) break;
  }
  const int held_at = ticks;
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // 15 periods: none may run
  EXPECT_EQ(ticks, held_at) << "the periodic task ran while an I/O thread was wedged";
  handler.Release();
  EXPECT_TRUE(wait_for([&] { return ticks > held_at; })) << "it did not resume";
  server.Shutdown(std::chrono::seconds(2));
}

// Answers 200 with the request's path and query as the body.
class EchoPathHandler : public Handler {
 public:
  void Handle(Request request, Respond respond) override {
    respond(Response::Text(200, std::string(request.Path()) + "|" + std::string(request.Query()),
                           "text/plain"));
  }
};

class HttpConformanceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    port_ = StartOne(server_, handler_);
    ASSERT_NE(port_, 0);
  }
  void TearDown() override { server_.Shutdown(std::chrono::seconds(2)); }

  EchoPathHandler handler_;
  HttpServer server_{1};
  uint16_t port_ = 0;
};

// RFC 9110 6.6.1: an origin server with a clock MUST send Date.
TEST_F(HttpConformanceTest, EveryResponseCarriesADateInImfFixdate) {
  testing::RawConnection conn(port_);
  ASSERT_TRUE(conn.Send(testing::BuildRequest("GET", "/a", {}, "")));
  auto r = conn.Read();
  ASSERT_TRUE(r);
  const std::string date = r->Header("date");
  std::smatch m;
  ASSERT_TRUE(
      std::regex_match(date, m,
                       std::regex(R"((Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d (Jan|Feb|Mar|Apr|)"
                                  R"(May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} \d\d:\d\d:\d\d GMT)")))
      << "Date: " << date;
  struct tm tm = {};
  ASSERT_NE(strptime(date.c_str(), "%a, %d %b %Y %H:%M:%S GMT", &tm), nullptr);
  EXPECT_LE(std::abs(timegm(&tm) - ::time(nullptr)), 5) << date;
}

// RFC 9110 10.1.1: a server MUST ignore a 100-continue expectation from an HTTP/1.0 client,
// which would read the interim 100 as the answer.
TEST_F(HttpConformanceTest, AnHttp10ExpectContinueGetsNoInterimResponse) {
  testing::RawConnection conn(port_);
  ASSERT_TRUE(
      conn.Send("POST /x HTTP/1.0\r\nHost: t\r\nExpect: 100-continue\r\n"
                "Content-Length: 3\r\n\r\nabc"));
  auto r = conn.Read();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  // An HTTP/1.1 client still gets its 100 first.
  testing::RawConnection conn11(port_);
  ASSERT_TRUE(
      conn11.Send("POST /x HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\n"
                  "Content-Length: 3\r\n\r\n"));
  r = conn11.Read();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 100);
}

// RFC 9112 3.2.2: a server MUST accept the absolute form; it was answered 404.
TEST_F(HttpConformanceTest, AnAbsoluteFormTargetIsRoutedByItsPath) {
  testing::RawConnection conn(port_);
  for (const auto& [target, want] : std::vector<std::pair<std::string, std::string>>{
           {"http://127.0.0.1:8080/hooks/sentry?x=1", "/hooks/sentry|x=1"},
           {"https://example.com", "/|"},
           {"/plain?q", "/plain|q"}}) {
    ASSERT_TRUE(conn.Send("GET " + target + " HTTP/1.1\r\nHost: t\r\n\r\n"));
    auto r = conn.Read();
    ASSERT_TRUE(r);
    EXPECT_EQ(r->body, want) << target;
  }
}

}  // namespace
}  // namespace switchyard::http
