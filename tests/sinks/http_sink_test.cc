#include "sinks/http_sink.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "fakes/fake_http_client.h"

namespace switchyard::sinks {
namespace {

using std::chrono::milliseconds;
using ::testing::HasSubstr;
using ::testing::Not;
using Kind = Outcome::Kind;
using Headers = std::vector<std::pair<std::string, std::string>>;

// All values of header `name` (exact name match).
std::vector<std::string> Values(const Headers& headers, const std::string& name) {
  std::vector<std::string> out;
  for (const auto& [n, v] : headers) {
    if (n == name) out.push_back(v);
  }
  return out;
}

// Names of all headers, lower-cased, to check for duplicates in any case.
size_t CountIgnoreCase(const Headers& headers, std::string name) {
  auto lower = [](std::string s) {
    for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return s;
  };
  size_t n = 0;
  for (const auto& h : headers) n += lower(h.first) == lower(name);
  return n;
}

class HttpSinkTest : public ::testing::Test {
 protected:
  HttpSinkTest() {
    config_.url = "https://ops.example.com/ingest";
    config_.timeout = milliseconds(2500);
    auto event = std::make_shared<storage::StoredEvent>();
    event->id = "01JD00000000000000000000EV";
    event->source = "sentry";
    event->resource = "issue";
    event->action = "created";
    // Whitespace, escapes, non-ASCII and key order must all survive byte for byte.
    event->body =
        "{ \"action\" : \"created\",\n  \"data\":{\"t\":\"\xE6\x97\xA5\\u00e9\\n\"},"
        "\"z\":1.50 ,\"a\":[ ] }\n";
    event_ = event;
  }

  Delivery MakeDelivery(std::map<std::string, std::string> fields = {}) {
    Delivery d;
    d.id = "01JD0000000000000000000DL1";
    d.route = "alerts-for-backend";
    d.event = event_;
    d.fields = std::move(fields);
    return d;
  }

  Outcome Deliver(const Delivery& d) {
    auto sink = NewHttpSink(config_, client_);
    std::optional<Outcome> result;
    sink->Deliver(d, [&](Outcome o) {
      EXPECT_FALSE(result.has_value()) << "done called twice";
      result = std::move(o);
    });
    EXPECT_TRUE(result.has_value());
    return result.value_or(Outcome{});
  }

  config::HttpSinkConfig config_;
  std::shared_ptr<const storage::StoredEvent> event_;
  testing::FakeHttpClient client_;
};

TEST_F(HttpSinkTest, SendsTheOriginalBodyByteForByteAsJson) {
  EXPECT_EQ(Deliver(MakeDelivery()).kind, Kind::kSuccess);
  const auto req = client_.last_request();
  EXPECT_EQ(req.method, "POST");
  EXPECT_EQ(req.url, config_.url);
  EXPECT_EQ(req.timeout, milliseconds(2500));
  EXPECT_EQ(req.max_response_bytes, 64u * 1024);
  // A receiver answering 2xx with a huge page has taken the delivery: the body is dropped unread.
  EXPECT_TRUE(req.discard_oversized_body);
  EXPECT_EQ(req.body, event_->body);
  EXPECT_EQ(Values(req.headers, "Content-Type"), std::vector<std::string>{"application/json"});
}

TEST_F(HttpSinkTest, EveryRequestCarriesIdempotencyKeyAndSwitchyardHeaders) {
  Delivery d = MakeDelivery();
  Deliver(d);
  d.attempt = 2;
  Deliver(d);
  ASSERT_EQ(client_.request_count(), 2u);
  for (const auto& req : client_.requests()) {
    EXPECT_EQ(Values(req.headers, "Idempotency-Key"),
              std::vector<std::string>{"01JD0000000000000000000DL1"})
        << "same key on every attempt";
    EXPECT_EQ(Values(req.headers, "X-Switchyard-Source"), std::vector<std::string>{"sentry"});
    EXPECT_EQ(Values(req.headers, "X-Switchyard-Resource"), std::vector<std::string>{"issue"});
    EXPECT_EQ(Values(req.headers, "X-Switchyard-Action"), std::vector<std::string>{"created"});
    EXPECT_EQ(Values(req.headers, "X-Switchyard-Route"),
              std::vector<std::string>{"alerts-for-backend"});
  }
}

TEST_F(HttpSinkTest, ConfiguredMethodAndHeadersAreSentButOursWin) {
  config_.method = "PUT";
  config_.headers = {{"Authorization", "Bearer s3cr3t-token"}, {"X-Team", "backend"},
                     {"idempotency-key", "spoofed"},           {"X-SWITCHYARD-ROUTE", "spoofed"},
                     {"Content-Type", "text/plain"},           {"Content-Length", "3"}};
  Deliver(MakeDelivery());
  const auto req = client_.last_request();
  EXPECT_EQ(req.method, "PUT");
  EXPECT_EQ(Values(req.headers, "Authorization"), std::vector<std::string>{"Bearer s3cr3t-token"});
  EXPECT_EQ(Values(req.headers, "X-Team"), std::vector<std::string>{"backend"});
  EXPECT_EQ(CountIgnoreCase(req.headers, "Idempotency-Key"), 1u);
  EXPECT_EQ(Values(req.headers, "Idempotency-Key"),
            std::vector<std::string>{"01JD0000000000000000000DL1"});
  EXPECT_EQ(CountIgnoreCase(req.headers, "X-Switchyard-Route"), 1u);
  EXPECT_EQ(Values(req.headers, "X-Switchyard-Route"),
            std::vector<std::string>{"alerts-for-backend"});
  EXPECT_EQ(CountIgnoreCase(req.headers, "Content-Length"), 0u) << "framing is the client's";
  // The raw payload is JSON whatever the configuration says.
  EXPECT_EQ(CountIgnoreCase(req.headers, "Content-Type"), 1u);
  EXPECT_EQ(Values(req.headers, "Content-Type"), std::vector<std::string>{"application/json"});
}

TEST_F(HttpSinkTest, BodyTemplateReplacesThePayload) {
  Deliver(MakeDelivery({{"body", R"({"text":"Issue: x"})"}}));
  auto req = client_.last_request();
  EXPECT_EQ(req.body, R"({"text":"Issue: x"})");
  EXPECT_EQ(Values(req.headers, "Content-Type"), std::vector<std::string>{"application/json"});

  // With a template, a configured Content-Type is respected.
  config_.headers = {{"content-type", "text/plain; charset=utf-8"}};
  Deliver(MakeDelivery({{"body", "Issue: x"}}));
  req = client_.last_request();
  EXPECT_EQ(req.body, "Issue: x");
  EXPECT_EQ(CountIgnoreCase(req.headers, "Content-Type"), 1u);
  EXPECT_EQ(Values(req.headers, "content-type"),
            std::vector<std::string>{"text/plain; charset=utf-8"});

  // A template that renders empty still replaces the payload.
  Deliver(MakeDelivery({{"body", ""}}));
  EXPECT_EQ(client_.last_request().body, "");
}

TEST_F(HttpSinkTest, PayloadTextCannotInjectHeaderLines) {
  auto event = std::make_shared<storage::StoredEvent>(*event_);
  event->action = "created\r\nX-Evil: 1";
  event_ = event;
  Deliver(MakeDelivery());
  const auto action = Values(client_.last_request().headers, "X-Switchyard-Action");
  ASSERT_EQ(action.size(), 1u);
  EXPECT_EQ(action[0].find_first_of("\r\n"), std::string::npos);
}

TEST_F(HttpSinkTest, OutcomesFollowTheClassification) {
  client_.Respond(204);
  EXPECT_EQ(Deliver(MakeDelivery()).kind, Kind::kSuccess);

  client_.Respond(503, "down", {{"retry-after", "30"}});
  Outcome out = Deliver(MakeDelivery());
  EXPECT_EQ(out.kind, Kind::kRetry);
  EXPECT_EQ(out.http_status, 503);
  EXPECT_EQ(out.retry_after, milliseconds(30000));

  client_.Respond(429, "", {{"Retry-After", "5"}});
  out = Deliver(MakeDelivery());
  EXPECT_EQ(out.kind, Kind::kRetry);
  EXPECT_EQ(out.retry_after, milliseconds(5000));

  client_.Respond(404);
  out = Deliver(MakeDelivery());
  EXPECT_EQ(out.kind, Kind::kPermanent);
  EXPECT_EQ(out.error, "HTTP 404");

  // The receiver's reason goes into the error (dlq list shows it): its start, on one line.
  client_.Respond(422, "{\"error\": \"field\n'title' is required\"}");
  out = Deliver(MakeDelivery());
  EXPECT_EQ(out.kind, Kind::kPermanent);
  EXPECT_EQ(out.error, "HTTP 422: {\"error\": \"field 'title' is required\"}");
  client_.Respond(400, std::string(10000, 'x'));
  out = Deliver(MakeDelivery());
  EXPECT_EQ(out.error.size(), std::string("HTTP 400: ").size() + 199 + std::string("…").size());

  client_.Fail({StatusCode::kDeadlineExceeded, "deadline passed"});
  out = Deliver(MakeDelivery());
  EXPECT_EQ(out.kind, Kind::kRetry);
  EXPECT_EQ(out.error, "timeout");

  client_.Fail(InvalidArgument("unsupported scheme"));
  EXPECT_EQ(Deliver(MakeDelivery()).kind, Kind::kPermanent);
}

TEST_F(HttpSinkTest, TransportErrorsNeverCarrySecrets) {
  config_.url = "https://user:hunter22@ops.example.com/ingest?key=abcdef123";
  config_.headers = {{"Authorization", "Bearer s3cr3t-token"}};
  client_.Fail(
      Unavailable("connect to https://user:hunter22@ops.example.com/ingest?key=abcdef123 failed; "
                  "sent Bearer s3cr3t-token"));
  const Outcome out = Deliver(MakeDelivery());
  EXPECT_EQ(out.kind, Kind::kRetry);
  EXPECT_THAT(out.error, HasSubstr("connection error"));
  EXPECT_THAT(out.error, Not(HasSubstr("hunter22")));
  EXPECT_THAT(out.error, Not(HasSubstr("abcdef123")));
  EXPECT_THAT(out.error, Not(HasSubstr("s3cr3t")));
}

// A receiver that echoes what it was sent into its error body: the excerpt kept for the dead
// letter must not carry the sink's secrets either.
TEST_F(HttpSinkTest, AnErrorBodyEchoingTheRequestNeverCarriesSecrets) {
  config_.url = "https://user:hunter22@ops.example.com/ingest?key=abcdef123";
  config_.headers = {{"Authorization", "Bearer s3cr3t-token"}};
  client_.Respond(401, "bad credentials: Bearer s3cr3t-token for key=abcdef123 (hunter22)");
  const Outcome out = Deliver(MakeDelivery());
  EXPECT_EQ(out.kind, Kind::kPermanent);
  EXPECT_THAT(out.error, HasSubstr("HTTP 401: bad credentials"));
  EXPECT_THAT(out.error, Not(HasSubstr("hunter22")));
  EXPECT_THAT(out.error, Not(HasSubstr("abcdef123")));
  EXPECT_THAT(out.error, Not(HasSubstr("s3cr3t")));
  // A secret across the excerpt's cut is redacted before the cut.
  client_.Respond(401, std::string(190, '.') + "Bearer s3cr3t-token");
  EXPECT_THAT(Deliver(MakeDelivery()).error, Not(HasSubstr("s3cr3")));
}

rules::Template Compile(std::string_view text) { return rules::Template::Parse(text).value(); }

// A templated url and header values are sent as the dispatcher rendered them for the event.
TEST_F(HttpSinkTest, TemplatedUrlAndHeadersAreSentAsRendered) {
  config_.url = "https://ops.example.com/ok/{{ data.issue.id }}";
  config_.url_template = Compile(config_.url);
  config_.headers = {{"Authorization", "Bearer s3cr3t-token"},
                     {"X-Issue", "issue {{ data.issue.id }}"}};
  config_.header_templates.emplace("X-Issue", Compile("issue {{ data.issue.id }}"));
  Delivery d = MakeDelivery();
  d.url = "https://ops.example.com/ok/1170820242";
  d.headers["X-Issue"] = "issue 1170820242\r\nX-Evil: 1";
  EXPECT_EQ(Deliver(d).kind, Kind::kSuccess);
  const auto req = client_.last_request();
  EXPECT_EQ(req.url, "https://ops.example.com/ok/1170820242");
  EXPECT_EQ(Values(req.headers, "Authorization"), std::vector<std::string>{"Bearer s3cr3t-token"});
  EXPECT_EQ(Values(req.headers, "X-Issue"), std::vector<std::string>{"issue 1170820242  X-Evil: 1"})
      << "a rendered value cannot inject header lines";
}

// After rendering, a value that is not a URL fails at once, saying so, without a request; so
// does a template the dispatcher could not render.
TEST_F(HttpSinkTest, ATemplatedUrlThatRendersInvalidIsAPermanentFailureSayingSo) {
  config_.url = "https://ops.example.com/ok/{{ data.issue.title }}";
  config_.url_template = Compile(config_.url);
  Delivery d = MakeDelivery();
  d.url = "https://ops.example.com/ok/not a path";
  Outcome out = Deliver(d);
  EXPECT_EQ(out.kind, Kind::kPermanent);
  EXPECT_THAT(out.error, HasSubstr("the url template rendered an invalid URL for this event"));
  EXPECT_THAT(out.error, HasSubstr("| urlencode"));
  EXPECT_EQ(client_.request_count(), 0u);

  out = Deliver(MakeDelivery());  // no rendered url
  EXPECT_EQ(out.kind, Kind::kPermanent);
  EXPECT_THAT(out.error, HasSubstr("the url template was not rendered"));
  EXPECT_EQ(client_.request_count(), 0u);
}

TEST_F(HttpSinkTest, NewSinkBuildsHttpSinks) {
  config::SinkConfig c;
  c.name = "ops";
  c.type = "http";
  c.settings = config_;
  auto sink = NewSink(c, client_);
  ASSERT_TRUE(sink.ok());
  EXPECT_TRUE((*sink)->active());
  std::optional<Outcome> out;
  (*sink)->Deliver(MakeDelivery(), [&](Outcome o) { out = o; });
  ASSERT_TRUE(out.has_value());
  EXPECT_EQ(out->kind, Kind::kSuccess);
  EXPECT_EQ(client_.last_request().url, config_.url);
}

}  // namespace
}  // namespace switchyard::sinks
