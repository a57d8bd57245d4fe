#include "sinks/pushover_sink.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <string>

#include "fakes/fake_http_client.h"
#include "fakes/fake_pushover.h"
#include "sinks/utf8.h"

namespace switchyard::sinks {
namespace {

using std::chrono::milliseconds;
using ::testing::HasSubstr;
using ::testing::Not;
using Kind = Outcome::Kind;

constexpr char kToken[] = "azGDORePK8gMaC0QOYAMyEEuzJnyUi";
constexpr char kUser[] = "uQiRzpo4DXghDmr9QzzfQu27cmVRsG";

std::string Repeat(std::string_view s, size_t n) {
  std::string out;
  for (size_t i = 0; i < n; ++i) out += s;
  return out;
}

bool IsValidUtf8(std::string_view s) { return SanitizeUtf8(s) == s; }

class PushoverSinkTest : public ::testing::Test {
 protected:
  PushoverSinkTest() {
    config_.token = kToken;
    config_.user = kUser;
    config_.api_url = "https://api.pushover.net/1/messages.json";
  }

  Delivery MakeDelivery(std::map<std::string, std::string> fields = {}) {
    Delivery d;
    d.id = "01JD0000000000000000000000";
    d.route = "backend-issues-to-phone";
    d.fields = std::move(fields);
    d.default_title = "ReferenceError: x is not defined";
    auto event = std::make_shared<storage::StoredEvent>();
    event->body = R"({"action":"created"})";
    d.event = event;
    return d;
  }

  Outcome Deliver(const Delivery& d) {
    auto sink = NewPushoverSink(config_, client_);
    std::optional<Outcome> result;
    sink->Deliver(d, [&](Outcome o) {
      EXPECT_FALSE(result.has_value()) << "done called twice";
      result = std::move(o);
    });
    EXPECT_TRUE(result.has_value());
    return result.value_or(Outcome{});
  }

  // Delivers and returns the form the sink sent.
  std::map<std::string, std::string> SentForm(std::map<std::string, std::string> fields) {
    client_.Respond(200, R"({"status":1,"request":"r1"})");
    Deliver(MakeDelivery(std::move(fields)));
    return testing::ParseForm(client_.last_request().body);
  }

  config::PushoverSinkConfig config_;
  testing::FakeHttpClient client_;
};

TEST(FormUrlEncodeTest, EncodesReservedBytesAndSpaceAsPlus) {
  EXPECT_EQ(FormUrlEncode({{"a b", "x&y=z"}, {"m", "\xC3\xA9/+%~"}, {"k", "A-z_0.9*"}}),
            "a+b=x%26y%3Dz&m=%C3%A9%2F%2B%25%7E&k=A-z_0.9*");
  EXPECT_EQ(FormUrlEncode({}), "");
  EXPECT_EQ(FormUrlEncode({{"e", ""}}), "e=");
}

TEST_F(PushoverSinkTest, PostsFormToApiUrlWithTenSecondTimeout) {
  client_.Respond(200, R"({"status":1,"request":"r1"})");
  const Outcome out = Deliver(MakeDelivery({{"title", "T"}, {"message", "M & more"}}));
  EXPECT_EQ(out.kind, Kind::kSuccess);
  EXPECT_EQ(out.http_status, 200);
  ASSERT_EQ(client_.request_count(), 1u);
  const auto req = client_.last_request();
  EXPECT_EQ(req.method, "POST");
  EXPECT_EQ(req.url, config_.api_url);
  EXPECT_EQ(req.timeout, milliseconds(10000));
  EXPECT_THAT(req.headers, ::testing::Contains(std::pair<std::string, std::string>(
                               "Content-Type", "application/x-www-form-urlencoded")));
  EXPECT_EQ(req.body,
            std::string("token=") + kToken + "&user=" + kUser + "&message=M+%26+more&title=T");
}

TEST_F(PushoverSinkTest, SendsOnlyKnownFieldsThatArePresentAndNonEmpty) {
  const auto form = SentForm({{"title", "t"},
                              {"message", "m"},
                              {"url", "https://sentry.io/issues/1/"},
                              {"url_title", "Issue Details"},
                              {"priority", "2"},
                              {"sound", "siren"},
                              {"device", "phone"},
                              {"html", "1"},
                              {"ttl", "3600"},
                              {"retry", "60"},
                              {"expire", "3600"},
                              {"body", "not a pushover field"},
                              {"token", "overridden?"},
                              {"callback", "https://evil.example/"}});
  const std::map<std::string, std::string> expected = {{"token", kToken},
                                                       {"user", kUser},
                                                       {"title", "t"},
                                                       {"message", "m"},
                                                       {"url", "https://sentry.io/issues/1/"},
                                                       {"url_title", "Issue Details"},
                                                       {"priority", "2"},
                                                       {"sound", "siren"},
                                                       {"device", "phone"},
                                                       {"html", "1"},
                                                       {"ttl", "3600"},
                                                       {"retry", "60"},
                                                       {"expire", "3600"}};
  EXPECT_EQ(form, expected);

  const auto sparse = SentForm({{"title", ""}, {"sound", ""}, {"message", "m"}});
  EXPECT_EQ(sparse, (std::map<std::string, std::string>{
                        {"token", kToken}, {"user", kUser}, {"message", "m"}}));
}

TEST_F(PushoverSinkTest, MessageDefaultsToTheEventTitleThenPlaceholder) {
  EXPECT_EQ(SentForm({{"title", "t"}})["message"], "ReferenceError: x is not defined");
  EXPECT_EQ(SentForm({{"message", ""}})["message"], "ReferenceError: x is not defined");

  client_.Respond(200, R"({"status":1})");
  Delivery d = MakeDelivery();
  d.default_title.clear();
  Deliver(d);
  EXPECT_EQ(testing::ParseForm(client_.last_request().body)["message"], "(no title)");
}

TEST_F(PushoverSinkTest, TitleAtExactlyTheLimitIsUntouched) {
  const std::string japanese = Repeat("\xE6\x97\xA5", 250);  // 日 × 250 (750 bytes)
  EXPECT_EQ(SentForm({{"title", japanese}})["title"], japanese);
  const std::string emoji = Repeat("\xF0\x9F\x94\xA5", 1024);  // 🔥 × 1024
  EXPECT_EQ(SentForm({{"message", emoji}})["message"], emoji);
}

TEST_F(PushoverSinkTest, JapaneseTitleOneOverTheLimitIsCutWithEllipsis) {
  const std::string title = SentForm({{"title", Repeat("\xE6\x97\xA5", 251)}})["title"];
  EXPECT_EQ(title, Repeat("\xE6\x97\xA5", 249) + "\xE2\x80\xA6");
  EXPECT_EQ(CountCodePoints(title), 250u);
}

TEST_F(PushoverSinkTest, EmojiMessageIsCutOnCodePointBoundary) {
  const std::string message = SentForm({{"message", Repeat("\xF0\x9F\x94\xA5", 2000)}})["message"];
  EXPECT_EQ(message, Repeat("\xF0\x9F\x94\xA5", 1023) + "\xE2\x80\xA6");
  EXPECT_EQ(CountCodePoints(message), 1024u);
  EXPECT_TRUE(IsValidUtf8(message));
}

TEST_F(PushoverSinkTest, CombiningSequencesCountAsSeparateCodePoints) {
  // "é" as e + U+0301: 2 code points each; 125 of them fit the title exactly.
  const std::string e_acute = "e\xCC\x81";
  EXPECT_EQ(SentForm({{"title", Repeat(e_acute, 125)}})["title"], Repeat(e_acute, 125));
  const std::string cut = SentForm({{"title", Repeat(e_acute, 126)}})["title"];
  // 249 code points kept: 124 pairs and a bare "e", then the ellipsis.
  EXPECT_EQ(cut, Repeat(e_acute, 124) + "e" + "\xE2\x80\xA6");
  EXPECT_EQ(CountCodePoints(cut), 250u);
}

TEST_F(PushoverSinkTest, UrlAndUrlTitleAreCutToTheirLimits) {
  const std::string url = "https://example.com/" + std::string(600, 'a');
  const auto form = SentForm({{"url", url}, {"url_title", Repeat("\xC3\xBC", 101)}});
  EXPECT_EQ(CountCodePoints(form.at("url")), 512u);
  EXPECT_EQ(form.at("url"), url.substr(0, 511) + "\xE2\x80\xA6");
  EXPECT_EQ(form.at("url_title"), Repeat("\xC3\xBC", 99) + "\xE2\x80\xA6");
  const auto exact = SentForm({{"url_title", Repeat("\xC3\xBC", 100)}});
  EXPECT_EQ(exact.at("url_title"), Repeat("\xC3\xBC", 100));
}

TEST_F(PushoverSinkTest, InvalidUtf8IsReplacedBeforeCounting) {
  EXPECT_EQ(SentForm({{"title",
                       "abc\xFF"
                       "def"}})["title"],
            "abc\xEF\xBF\xBD"
            "def");
  // A truncated 3-byte sequence is one U+FFFD; so are stray continuation bytes, one each.
  EXPECT_EQ(SentForm({{"sound", "a\xE6\x97"}})["sound"], "a\xEF\xBF\xBD");
  EXPECT_EQ(SentForm({{"device", "\x80\x80"}})["device"], "\xEF\xBF\xBD\xEF\xBF\xBD");
  // 250 bad bytes are 250 code points after repair: exactly the limit.
  const std::string title = SentForm({{"title", std::string(250, '\xFF')}})["title"];
  EXPECT_EQ(title, Repeat("\xEF\xBF\xBD", 250));
  const std::string over = SentForm({{"title", std::string(300, '\xFF')}})["title"];
  EXPECT_EQ(CountCodePoints(over), 250u);
  EXPECT_TRUE(IsValidUtf8(over));
}

TEST(Utf8Test, SanitizeRejectsOverlongSurrogatesAndOutOfRange) {
  EXPECT_EQ(SanitizeUtf8("\xC0\xAF"), "\xEF\xBF\xBD\xEF\xBF\xBD");         // overlong '/'
  EXPECT_EQ(SanitizeUtf8("\xED\xA0\x80"), Repeat("\xEF\xBF\xBD", 3));      // surrogate
  EXPECT_EQ(SanitizeUtf8("\xF4\x90\x80\x80"), Repeat("\xEF\xBF\xBD", 4));  // > U+10FFFF
  EXPECT_EQ(SanitizeUtf8("\xF0\x9F\x94"), "\xEF\xBF\xBD");                 // truncated
  EXPECT_EQ(SanitizeUtf8("ok \xF4\x8F\xBF\xBF"), "ok \xF4\x8F\xBF\xBF");   // U+10FFFF
}

TEST(Utf8Test, TruncateEdgeCases) {
  EXPECT_EQ(TruncateCodePoints("abc", 0), "");
  EXPECT_EQ(TruncateCodePoints("abc", 1), "\xE2\x80\xA6");
  EXPECT_EQ(TruncateCodePoints("abc", 2), "a\xE2\x80\xA6");
  EXPECT_EQ(TruncateCodePoints("abc", 3), "abc");
  EXPECT_EQ(TruncateCodePoints("", 3), "");
}

TEST_F(PushoverSinkTest, StatusOneIsSuccessAndQuotaHeadersAreRecorded) {
  auto sink = NewPushoverSink(config_, client_);
  EXPECT_FALSE(sink->quota().has_value());
  EXPECT_FALSE(PushoverQuotaOf(sink.get()).has_value());
  client_.Respond(200, R"({"status":1,"request":"647d2300-702c-4b38-8b2f-d56326ae460b"})",
                  {{"x-limit-app-limit", "10000"},
                   {"x-limit-app-remaining", "7496"},
                   {"x-limit-app-reset", "1393653600"}});
  std::optional<Outcome> out;
  sink->Deliver(MakeDelivery({{"message", "m"}}), [&](Outcome o) { out = o; });
  ASSERT_TRUE(out.has_value());
  EXPECT_EQ(out->kind, Kind::kSuccess);
  const auto quota = PushoverQuotaOf(sink.get());
  ASSERT_TRUE(quota.has_value());
  EXPECT_EQ(quota->limit, 10000);
  EXPECT_EQ(quota->remaining, 7496);
  EXPECT_EQ(quota->reset, 1393653600);

  // Header names in any case; a later response replaces the values, a malformed one is -1.
  client_.Respond(429, R"({"status":0})",
                  {{"X-Limit-App-Remaining", "0"}, {"X-Limit-App-Limit", "lots"}});
  sink->Deliver(MakeDelivery(), [&](Outcome o) { out = o; });
  EXPECT_EQ(sink->quota()->remaining, 0);
  EXPECT_EQ(sink->quota()->limit, -1);
  EXPECT_EQ(sink->quota()->reset, -1);
}

TEST_F(PushoverSinkTest, QuotaOfOtherSinksIsEmpty) {
  EXPECT_FALSE(PushoverQuotaOf(nullptr).has_value());
  config::SinkConfig file;
  file.type = "file";
  file.settings = config::FileSinkConfig{"/dev/null"};
  auto sink = NewSink(file, client_);
  ASSERT_TRUE(sink.ok());
  EXPECT_FALSE(PushoverQuotaOf(sink->get()).has_value());
}

TEST_F(PushoverSinkTest, StatusNotOneIsPermanentWithTheApiErrors) {
  client_.Respond(200, R"({"status":0,"errors":["something is wrong"],"request":"req-9"})");
  const Outcome out = Deliver(MakeDelivery());
  EXPECT_EQ(out.kind, Kind::kPermanent);
  EXPECT_THAT(out.error, HasSubstr("something is wrong"));
  EXPECT_THAT(out.error, HasSubstr("req-9"));
}

TEST_F(PushoverSinkTest, SuccessWithoutStatusOneIsPermanent) {
  client_.Respond(200, "<html>captive portal</html>");
  EXPECT_EQ(Deliver(MakeDelivery()).kind, Kind::kPermanent);
  // Bodies over 64 KiB are not parsed, so status 1 cannot be seen.
  client_.Respond(200, R"({"status":1,"pad":")" + std::string(70000, 'x') + "\"}");
  EXPECT_EQ(Deliver(MakeDelivery()).kind, Kind::kPermanent);
}

TEST_F(PushoverSinkTest, FourHundredsArePermanentWithErrorsAndNeverTheSecrets) {
  client_.Respond(400,
                  std::string(R"({"token":"invalid","errors":["application token is invalid",)") +
                      R"("user key )" + kUser + R"( is invalid"],"status":0,"request":"r2"})");
  const Outcome out = Deliver(MakeDelivery());
  EXPECT_EQ(out.kind, Kind::kPermanent);
  EXPECT_EQ(out.http_status, 400);
  EXPECT_FALSE(out.retry_after.has_value());
  EXPECT_THAT(out.error, HasSubstr("HTTP 400"));
  EXPECT_THAT(out.error, HasSubstr("application token is invalid"));
  EXPECT_THAT(out.error, Not(HasSubstr(kToken)));
  EXPECT_THAT(out.error, Not(HasSubstr(kUser)));

  for (int status : {401, 403, 404, 408, 413}) {
    client_.Respond(status, "not json");
    const Outcome o = Deliver(MakeDelivery());
    EXPECT_EQ(o.kind, Kind::kPermanent) << status;
    EXPECT_EQ(o.error, "pushover: HTTP " + std::to_string(status));
  }
}

TEST_F(PushoverSinkTest, ServerErrorsAndQuotaRetryNoSoonerThanFiveSeconds) {
  for (int status : {500, 502, 503, 429, 302}) {
    client_.Respond(status, R"({"status":0,"errors":["busy"]})");
    const Outcome out = Deliver(MakeDelivery());
    EXPECT_EQ(out.kind, Kind::kRetry) << status;
    EXPECT_EQ(out.http_status, status);
    EXPECT_EQ(out.retry_after, milliseconds(5000)) << status;
    EXPECT_EQ(out.min_retry, milliseconds(5000)) << "a floor max_delay does not cap";
  }
  client_.Respond(503, "", {{"retry-after", "1"}});
  EXPECT_EQ(Deliver(MakeDelivery()).retry_after, milliseconds(5000)) << "5 s is the minimum";
  client_.Respond(503, "", {{"retry-after", "60"}});
  EXPECT_EQ(Deliver(MakeDelivery()).retry_after, milliseconds(60000)) << "a longer one wins";
}

// 429 means the monthly quota is spent until X-Limit-App-Reset; the retry used to come after
// 5 s, 10 s, ... (4xx answers that get the sender's IP blocked) and die at max_attempts.
TEST_F(PushoverSinkTest, OverQuotaWaitsForTheQuotasReset) {
  const int64_t now_s = std::chrono::duration_cast<std::chrono::seconds>(
                            std::chrono::system_clock::now().time_since_epoch())
                            .count();
  client_.Respond(
      429, R"({"status":0,"errors":["application is over its message quota"]})",
      {{"x-limit-app-remaining", "0"}, {"x-limit-app-reset", std::to_string(now_s + 3600)}});
  const Outcome out = Deliver(MakeDelivery());
  EXPECT_EQ(out.kind, Kind::kRetry);
  ASSERT_TRUE(out.retry_after);
  EXPECT_GE(*out.retry_after, std::chrono::seconds(3590));
  EXPECT_LE(*out.retry_after, std::chrono::seconds(3600));
  // A reset already past (or absent) leaves the 5-s floor.
  client_.Respond(429, R"({"status":0})", {{"x-limit-app-reset", std::to_string(now_s - 10)}});
  EXPECT_EQ(Deliver(MakeDelivery()).retry_after, milliseconds(5000));
  // A 5xx is not about the quota: its reset header does not delay it.
  client_.Respond(503, "", {{"x-limit-app-reset", std::to_string(now_s + 3600)}});
  EXPECT_EQ(Deliver(MakeDelivery()).retry_after, milliseconds(5000));
}

TEST_F(PushoverSinkTest, TimeoutsAndConnectionErrorsRetryNoSoonerThanFiveSeconds) {
  client_.Fail({StatusCode::kDeadlineExceeded, "deadline"});
  Outcome out = Deliver(MakeDelivery());
  EXPECT_EQ(out.kind, Kind::kRetry);
  EXPECT_THAT(out.error, HasSubstr("timeout"));
  EXPECT_EQ(out.retry_after, milliseconds(5000));

  client_.Fail(Unavailable(std::string("connection refused; token=") + kToken));
  out = Deliver(MakeDelivery());
  EXPECT_EQ(out.kind, Kind::kRetry);
  EXPECT_THAT(out.error, HasSubstr("connection error"));
  EXPECT_THAT(out.error, Not(HasSubstr(kToken)));
  EXPECT_EQ(out.retry_after, milliseconds(5000));
}

TEST_F(PushoverSinkTest, InactiveWithoutTokenOrUser) {
  EXPECT_TRUE(NewPushoverSink(config_, client_)->active());
  config::PushoverSinkConfig no_token = config_;
  no_token.token.clear();
  config::PushoverSinkConfig no_user = config_;
  no_user.user.clear();
  EXPECT_FALSE(NewPushoverSink(no_token, client_)->active());
  EXPECT_FALSE(NewPushoverSink(no_user, client_)->active());

  std::optional<Outcome> out;
  NewPushoverSink(no_token, client_)->Deliver(MakeDelivery(), [&](Outcome o) { out = o; });
  ASSERT_TRUE(out.has_value());
  EXPECT_EQ(out->kind, Kind::kRetry);
  EXPECT_EQ(client_.request_count(), 0u) << "nothing is sent without credentials";
}

TEST_F(PushoverSinkTest, SinkMayBeDestroyedWhileRequestsAreInFlight) {
  // A client that completes later, after the sink is gone.
  class DeferredClient : public httpclient::HttpClient {
   public:
    void Send(httpclient::ClientRequest, httpclient::ClientCallback done) override {
      pending = std::move(done);
    }
    void Shutdown() override {}
    httpclient::ClientCallback pending;
  } deferred;
  std::optional<Outcome> out;
  NewPushoverSink(config_, deferred)->Deliver(MakeDelivery(), [&](Outcome o) { out = o; });
  ASSERT_TRUE(deferred.pending);
  deferred.pending(
      httpclient::ClientResponse{200, {{"x-limit-app-remaining", "1"}}, R"({"status":1})"});
  ASSERT_TRUE(out.has_value());
  EXPECT_EQ(out->kind, Kind::kSuccess);
}

TEST_F(PushoverSinkTest, NewSinkBuildsPushoverSinks) {
  config::SinkConfig c;
  c.name = "phone";
  c.type = "pushover";
  c.settings = config_;
  auto sink = NewSink(c, client_);
  ASSERT_TRUE(sink.ok());
  client_.Respond(200, R"({"status":1})");
  std::optional<Outcome> out;
  (*sink)->Deliver(MakeDelivery(), [&](Outcome o) { out = o; });
  ASSERT_TRUE(out.has_value());
  EXPECT_EQ(out->kind, Kind::kSuccess);
  EXPECT_EQ(client_.last_request().url, config_.api_url);
}

}  // namespace
}  // namespace switchyard::sinks
