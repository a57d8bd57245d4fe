// Tests of the test fakes themselves (FakePushover, RecordingReceiver), over real sockets.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <stdexcept>
#include <thread>

#include "fakes/fake_pushover.h"
#include "fakes/recording_receiver.h"
#include "httpclient/http_client.h"
#include "sinks/pushover_sink.h"
#include "support/http_client.h"

namespace switchyard::testing {
namespace {

using std::chrono::milliseconds;
using Form = std::vector<std::pair<std::string, std::string>>;

const std::vector<std::pair<std::string, std::string>> kFormType = {
    {"Content-Type", "application/x-www-form-urlencoded"}};

std::string Repeat(std::string_view s, size_t n) {
  std::string out;
  for (size_t i = 0; i < n; ++i) out += s;
  return out;
}

std::optional<HttpResponse> PostForm(const FakePushover& fake, const Form& form) {
  return Fetch(fake.port(), "POST", "/1/messages.json", kFormType, sinks::FormUrlEncode(form));
}

Form ValidForm(const FakePushover& fake, std::string message = "hello world") {
  return {{"token", fake.options().token}, {"user", fake.options().user}, {"message", message}};
}

TEST(FakePushoverTest, AcceptsAValidMessageAndDecodesTheForm) {
  FakePushover fake;
  Form form = ValidForm(fake, "a+b & c=d \xE6\x97\xA5");
  form.emplace_back("title", "T i t l e");
  const auto res = PostForm(fake, form);
  ASSERT_TRUE(res.has_value());
  EXPECT_EQ(res->status, 200);
  const auto body = boost::json::parse(res->body);
  EXPECT_EQ(body.at("status"), 1);
  EXPECT_EQ(body.at("request").as_string().size(), 36u);
  EXPECT_EQ(res->Header("X-Limit-App-Limit"), "10000");
  EXPECT_EQ(res->Header("X-Limit-App-Remaining"), "9999");
  EXPECT_FALSE(res->Header("X-Limit-App-Reset").empty());
  ASSERT_TRUE(fake.WaitFor(1, milliseconds(1000)));
  const auto messages = fake.messages();
  ASSERT_EQ(messages.size(), 1u);
  EXPECT_EQ(messages[0].at("message"), "a+b & c=d \xE6\x97\xA5");
  EXPECT_EQ(messages[0].at("title"), "T i t l e");
}

TEST(FakePushoverTest, RejectsABadTokenAndABadUser) {
  FakePushover fake;
  Form form = ValidForm(fake);
  form[0].second = "wrongtoken";
  auto res = PostForm(fake, form);
  ASSERT_TRUE(res.has_value());
  EXPECT_EQ(res->status, 400);
  auto body = boost::json::parse(res->body);
  EXPECT_EQ(body.at("token"), "invalid");
  EXPECT_EQ(body.at("status"), 0);
  EXPECT_EQ(body.at("errors").at(0), "application token is invalid");
  EXPECT_FALSE(body.at("request").as_string().empty());

  form = ValidForm(fake);
  form[1].second = "wronguser";
  res = PostForm(fake, form);
  ASSERT_TRUE(res.has_value());
  EXPECT_EQ(res->status, 400);
  EXPECT_EQ(boost::json::parse(res->body).at("user"), "invalid");
  EXPECT_EQ(fake.message_count(), 0u);
  EXPECT_EQ(fake.request_count(), 2u);
}

TEST(FakePushoverTest, EnforcesLimitsInCodePoints) {
  FakePushover fake;
  auto res = PostForm(fake, ValidForm(fake, Repeat("\xF0\x9F\x94\xA5", 1024)));  // 4 KiB
  ASSERT_TRUE(res.has_value());
  EXPECT_EQ(res->status, 200) << "1024 code points are fine whatever their bytes";

  res = PostForm(fake, ValidForm(fake, Repeat("a", 1025)));
  ASSERT_TRUE(res.has_value());
  EXPECT_EQ(res->status, 400);
  EXPECT_EQ(boost::json::parse(res->body).at("errors").at(0),
            "message cannot be longer than 1024 characters");

  Form title = ValidForm(fake);
  title.emplace_back("title", Repeat("\xC3\xBC", 251));
  res = PostForm(fake, title);
  ASSERT_TRUE(res.has_value());
  EXPECT_EQ(res->status, 400);
  EXPECT_EQ(boost::json::parse(res->body).at("errors").at(0),
            "title cannot be longer than 250 characters");

  Form emergency = ValidForm(fake);
  emergency.emplace_back("priority", "2");
  res = PostForm(fake, emergency);
  ASSERT_TRUE(res.has_value());
  EXPECT_EQ(res->status, 400) << "priority 2 needs retry and expire";
  emergency.emplace_back("retry", "30");
  emergency.emplace_back("expire", "3600");
  res = PostForm(fake, emergency);
  ASSERT_TRUE(res.has_value());
  EXPECT_EQ(res->status, 200);

  res = PostForm(fake, {{"token", fake.options().token}, {"user", fake.options().user}});
  ASSERT_TRUE(res.has_value());
  EXPECT_EQ(res->status, 400) << "message is required";
  EXPECT_EQ(fake.message_count(), 2u);
}

TEST(FakePushoverTest, ScriptedFaults) {
  FakePushover fake;
  fake.FailNext(1, 500);
  fake.FailNext(1, 429, "7");
  fake.CloseNext(1);
  fake.HangNext(1, milliseconds(200));
  auto res = PostForm(fake, ValidForm(fake));
  ASSERT_TRUE(res.has_value());
  EXPECT_EQ(res->status, 500);
  res = PostForm(fake, ValidForm(fake));
  ASSERT_TRUE(res.has_value());
  EXPECT_EQ(res->status, 429);
  EXPECT_EQ(res->Header("Retry-After"), "7");
  EXPECT_FALSE(PostForm(fake, ValidForm(fake)).has_value()) << "closed without an answer";
  const auto start = std::chrono::steady_clock::now();
  res = PostForm(fake, ValidForm(fake));
  ASSERT_TRUE(res.has_value());
  EXPECT_EQ(res->status, 200);
  EXPECT_GE(std::chrono::steady_clock::now() - start, milliseconds(190));
  EXPECT_EQ(fake.message_count(), 1u);
  const auto requests = fake.requests();
  ASSERT_EQ(requests.size(), 4u);
  EXPECT_EQ(requests[0].status, 500);
  EXPECT_EQ(requests[2].status, 0);
  EXPECT_EQ(requests[3].status, 200);

  fake.SetQuotaRemaining(0);
  res = PostForm(fake, ValidForm(fake));
  ASSERT_TRUE(res.has_value());
  EXPECT_EQ(res->status, 429) << "over quota";
}

TEST(FakePushoverTest, WaitForTimesOutWithoutMessages) {
  FakePushover fake;
  EXPECT_FALSE(fake.WaitFor(1, milliseconds(50)));
}

// A blocking HttpClient over the test support client, enough to run the real Pushover sink
// against the fake Pushover (http://127.0.0.1:<port>/<path> only).
class LoopbackClient : public httpclient::HttpClient {
 public:
  void Send(httpclient::ClientRequest request, httpclient::ClientCallback done) override {
    const std::string prefix = "http://127.0.0.1:";
    const size_t slash = request.url.find('/', prefix.size());
    const auto port =
        static_cast<uint16_t>(std::stoi(request.url.substr(prefix.size(), slash - prefix.size())));
    std::optional<HttpResponse> res;
    try {
      res = Fetch(port, request.method, request.url.substr(slash), request.headers, request.body);
    } catch (const std::exception& e) {
      done(Unavailable(e.what()));
      return;
    }
    if (!res) {
      done(Unavailable("no response"));
      return;
    }
    httpclient::ClientResponse out{res->status, {}, res->body};
    for (auto [name, value] : res->headers) {
      for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      out.headers.emplace_back(name, value);
    }
    done(std::move(out));
  }
  void Shutdown() override {}
};

TEST(FakePushoverTest, RealPushoverSinkTruncatesWithinTheFakesLimits) {
  FakePushover fake;
  LoopbackClient client;
  config::PushoverSinkConfig config{fake.options().token, fake.options().user, fake.url()};
  auto sink = sinks::NewPushoverSink(config, client);
  sinks::Delivery d;
  d.id = "01JD0000000000000000000DL1";
  d.fields = {{"title", Repeat("\xE6\x97\xA5", 400)},
              {"message", Repeat("\xF0\x9F\x98\x80", 3000)},
              {"url", "https://example.com/?q=" + std::string(600, '&')},
              {"url_title", Repeat("e\xCC\x81", 80)},
              {"priority", "1"}};
  std::optional<sinks::Outcome> out;
  sink->Deliver(d, [&](sinks::Outcome o) { out = o; });
  ASSERT_TRUE(out.has_value());
  EXPECT_EQ(out->kind, sinks::Outcome::Kind::kSuccess) << out->error;
  ASSERT_EQ(fake.message_count(), 1u);
  const auto m = fake.messages()[0];
  EXPECT_EQ(CountUtf8CodePoints(m.at("title")), 250u);
  EXPECT_EQ(CountUtf8CodePoints(m.at("message")), 1024u);
  EXPECT_EQ(CountUtf8CodePoints(m.at("url")), 512u);
  EXPECT_EQ(CountUtf8CodePoints(m.at("url_title")), 100u);
  EXPECT_EQ(m.at("priority"), "1");
  const auto quota = sinks::PushoverQuotaOf(sink.get());
  ASSERT_TRUE(quota.has_value());
  EXPECT_EQ(quota->remaining, 9999);

  config.token = "wrongtoken";
  auto bad = sinks::NewPushoverSink(config, client);
  bad->Deliver(d, [&](sinks::Outcome o) { out = o; });
  EXPECT_EQ(out->kind, sinks::Outcome::Kind::kPermanent);
  EXPECT_THAT(out->error, ::testing::HasSubstr("application token is invalid"));
  EXPECT_THAT(out->error, ::testing::Not(::testing::HasSubstr("wrongtoken")));
}

TEST(RecordingReceiverTest, RecordsMethodTargetHeadersAndBodyBytesExactly) {
  RecordingReceiver receiver;
  std::string body;
  for (int i = 0; i < 256; ++i) body += static_cast<char>(i);
  body += "\r\n\r\n{}";
  const auto res = Fetch(receiver.port(), "PUT", "/ingest/x?a=1&b=%20",
                         {{"X-Custom", "Value With Case"}, {"Idempotency-Key", "k1"}}, body);
  ASSERT_TRUE(res.has_value());
  EXPECT_EQ(res->status, 200);
  ASSERT_TRUE(receiver.WaitFor(1, milliseconds(1000)));
  const auto requests = receiver.requests();
  ASSERT_EQ(requests.size(), 1u);
  EXPECT_EQ(requests[0].method, "PUT");
  EXPECT_EQ(requests[0].target, "/ingest/x?a=1&b=%20");
  EXPECT_EQ(requests[0].Header("x-custom"), "Value With Case");
  EXPECT_EQ(requests[0].Header("IDEMPOTENCY-KEY"), "k1");
  EXPECT_EQ(requests[0].body, body);
  EXPECT_EQ(requests[0].body.size(), 256u + 6);
}

TEST(RecordingReceiverTest, ScriptedRepliesThenDefaultOnOneKeepAliveConnection) {
  RecordingReceiver receiver;
  receiver.EnqueueStatus(503, 1, "30");
  receiver.Enqueue(ServerReply{201, {{"X-Reply", "yes"}}, "created"});
  RawConnection conn(receiver.port());
  std::vector<HttpResponse> responses;
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(conn.Send(BuildRequest("POST", "/", {}, "{}")));
    auto res = conn.Read(milliseconds(2000));
    ASSERT_TRUE(res.has_value()) << i;
    responses.push_back(*res);
  }
  EXPECT_EQ(responses[0].status, 503);
  EXPECT_EQ(responses[0].Header("Retry-After"), "30");
  EXPECT_EQ(responses[1].status, 201);
  EXPECT_EQ(responses[1].Header("X-Reply"), "yes");
  EXPECT_EQ(responses[1].body, "created");
  EXPECT_EQ(responses[2].status, 200);
  EXPECT_EQ(receiver.count(), 3u);
}

TEST(RecordingReceiverTest, CanGoDownAndComeBackOnTheSamePort) {
  RecordingReceiver receiver;
  const uint16_t port = receiver.port();
  ASSERT_TRUE(Fetch(port, "POST", "/", {}, "1").has_value());

  // An idle keep-alive connection is dropped when the receiver goes down.
  RawConnection idle(port);
  ASSERT_TRUE(idle.Send(BuildRequest("POST", "/", {}, "2")));
  ASSERT_TRUE(idle.Read(milliseconds(2000)).has_value());
  ASSERT_TRUE(receiver.SetDown(true));
  EXPECT_TRUE(idle.WaitClosed(milliseconds(2000)));
  EXPECT_THROW(RawConnection refused(port), std::runtime_error) << "connection refused";

  ASSERT_TRUE(receiver.SetDown(false));
  EXPECT_EQ(receiver.port(), port);
  const auto res = Fetch(port, "POST", "/", {}, "3");
  ASSERT_TRUE(res.has_value());
  EXPECT_EQ(res->status, 200);
  const auto requests = receiver.requests();
  ASSERT_EQ(requests.size(), 3u);
  EXPECT_EQ(requests[2].body, "3");
}

TEST(RecordingReceiverTest, DelayedRepliesAndClosedConnections) {
  RecordingReceiver receiver;
  receiver.Enqueue(ServerReply{200, {}, "", milliseconds(0), /*close=*/true});
  receiver.Enqueue(ServerReply{202, {}, "late", milliseconds(150)});
  EXPECT_FALSE(Fetch(receiver.port(), "POST", "/", {}, "x").has_value());
  const auto start = std::chrono::steady_clock::now();
  const auto res = Fetch(receiver.port(), "POST", "/", {}, "y");
  ASSERT_TRUE(res.has_value());
  EXPECT_EQ(res->status, 202);
  EXPECT_GE(std::chrono::steady_clock::now() - start, milliseconds(140));
}

TEST(RecordingReceiverTest, ShutsDownWithADelayedReplyInFlight) {
  auto receiver = std::make_unique<RecordingReceiver>();
  receiver->Enqueue(ServerReply{200, {}, "", std::chrono::seconds(30)});
  std::thread client([port = receiver->port()] {
    try {
      Fetch(port, "POST", "/", {}, "z");
    } catch (const std::exception&) {
    }
  });
  ASSERT_TRUE(receiver->WaitFor(1, milliseconds(2000)));
  const auto start = std::chrono::steady_clock::now();
  receiver.reset();
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
  client.join();
}

}  // namespace
}  // namespace switchyard::testing
