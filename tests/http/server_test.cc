#include "http/server.h"

#include <gtest/gtest.h>

#include <stdexcept>
#include <string>

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

// A handler runs inside Asio's initiation, outside any co_spawn's try: an exception from it used
// to leave io_context::run() and end the process. It is answered 500 (or keeps the answer the
// handler gave), logged and counted, and the server goes on serving on the same connection.
TEST(HttpServerTest, AThrowingHandlerGets500AndTheServerKeepsServing) {
  ThrowingHandler handler;
  HttpServer server(1);
  ListenerOptions options;
  options.name = "test";
  options.address = "127.0.0.1:0";
  auto port = server.AddListener(options, &handler);
  ASSERT_TRUE(port.ok()) << port.status().ToString();
  server.Start();
  const uint64_t failures_before = log::CoroutineFailures();

  testing::RawConnection conn(*port);
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

}  // namespace
}  // namespace switchyard::http
