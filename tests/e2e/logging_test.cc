// End-to-end tests of the daemon's logs as an operator's log pipeline sees them: with
// SWITCHYARD_LOG_FORMAT=json every stderr line is one JSON object, webhook lines carry Sentry's
// Request-ID, and no secret from the config (nor a signature computed with one) is ever written.
#include <set>
#include <sstream>

#include <boost/json.hpp>
#include <gtest/gtest.h>

#include "fakes/recording_receiver.h"
#include "support/daemon_process.h"
#include "support/http_client.h"
#include "support/sentry.h"
#include "support/temp_dir.h"

namespace switchyard::testing {
namespace {

// Distinctive values, so that a leak anywhere in the log is found by a plain substring search.
constexpr char kClientSecret[] = "json-log-client-secret-7Qp2Zr";
constexpr char kAdminToken[] = "json-log-admin-token-Vb81xK";
constexpr char kSinkToken[] = "json-log-sink-token-Hd4mW0";
constexpr auto kWait = std::chrono::seconds(20);

class LoggingTest : public ::testing::Test {
 protected:
  // The secrets come from the config itself, from ${file:...} and from ${env:...}.
  std::string Config(const std::string& extra = "") {
    dir_.Write("admin-token", std::string(kAdminToken) + "\n");
    return "server:\n  listen: 127.0.0.1:0\n  admin_listen: 127.0.0.1:0\n"
           "  admin_token: ${file:" + dir_.File("admin-token") + "}\n"
           "storage:\n  path: " + dir_.path() + "/var\n"
           "sources:\n  sentry:\n    type: sentry\n    client_secret: " + kClientSecret + "\n"
           "sinks:\n"
           "  ops:\n    type: http\n    url: " + receiver_.url("/ingest") + "\n"
           "    headers: {Authorization: \"Bearer ${env:SINK_TOKEN}\"}\n"
           "    timeout: 2s\n"
           "  archive:\n    type: file\n    path: " + dir_.path() + "/events.jsonl\n"
           "routes:\n  - name: all\n    to: [ops, archive]\n" + extra;
  }

  std::vector<std::pair<std::string, std::string>> AdminAuth(const std::string& token) {
    return {{"Authorization", "Bearer " + token}};
  }

  TempDir dir_;
  RecordingReceiver receiver_;
  DaemonProcess daemon_{dir_.path()};
};

TEST_F(LoggingTest, JsonLinesCarryLevelMessageAndRequestIdAndNeverASecret) {
  receiver_.EnqueueStatus(400);  // the first delivery to ops fails for good: a dead letter
  daemon_.Start(Config(), {"SWITCHYARD_LOG_FORMAT=json",
                           std::string("SINK_TOKEN=") + kSinkToken});

  // A signed webhook: accepted, delivered to the archive, dead-lettered at ops.
  const std::string body = CompactPayload("issue.created.json");
  auto headers = SentryHeaders("issue", SentrySignature(kClientSecret, body));
  std::string accepted_request_id;
  for (const auto& [k, v] : headers) {
    if (k == "Request-ID") accepted_request_id = v;
  }
  auto r = Fetch(daemon_.port(), "POST", "/hooks/sentry", headers, body);
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 202) << r->body;
  ASSERT_TRUE(receiver_.WaitFor(1, kWait));
  EXPECT_EQ(receiver_.requests()[0].Header("authorization"), std::string("Bearer ") + kSinkToken);

  // A webhook with a wrong signature: the log must not show the signature it expected.
  const std::string forged = "{\"action\":\"created\",\"data\":{\"forged\":true}}";
  const std::string expected_signature = SentrySignature(kClientSecret, forged);
  // Its Request-ID holds JSON's special characters: the line must still parse and keep it exact.
  auto bad_headers = SentryHeaders("issue", std::string(64, 'a'));
  const std::string rejected_request_id = "quote\"back\\slash\ttab";
  for (auto& [k, v] : bad_headers) {
    if (k == "Request-ID") v = rejected_request_id;
  }
  r = Fetch(daemon_.port(), "POST", "/hooks/sentry", bad_headers, forged);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 401);

  // Admin requests with a wrong and with the right token; a good and a rejected reload.
  r = Fetch(daemon_.admin_port(), "GET", "/admin/dlq", AdminAuth("wrong-token"));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 401);
  r = Fetch(daemon_.admin_port(), "POST", "/admin/reload", AdminAuth(kAdminToken));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200) << r->body;
  dir_.Write("config.yaml", Config("unknown_key: 1\n"));
  r = Fetch(daemon_.admin_port(), "POST", "/admin/reload", AdminAuth(kAdminToken));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 400) << r->body;
  ASSERT_TRUE(daemon_.WaitForLog("delivery dead-lettered", kWait)) << daemon_.Log();
  ASSERT_EQ(daemon_.Terminate(), 0);  // the stop lines are logged too

  const std::string log = daemon_.Log();
  std::istringstream lines(log);
  std::string line;
  int n = 0;
  std::set<std::string> messages;
  bool saw_accepted = false, saw_rejected = false;
  while (std::getline(lines, line)) {
    ++n;
    boost::system::error_code ec;
    boost::json::value v = boost::json::parse(line, ec);
    ASSERT_FALSE(ec) << "line " << n << " is not JSON: " << line;
    ASSERT_TRUE(v.is_object()) << line;
    const auto& o = v.as_object();
    for (const char* key : {"ts", "level", "msg"}) {
      ASSERT_TRUE(o.contains(key) && o.at(key).is_string()) << "no \"" << key << "\": " << line;
    }
    std::string level(o.at("level").as_string());
    EXPECT_TRUE(level == "debug" || level == "info" || level == "warn" || level == "error")
        << line;
    std::string msg(o.at("msg").as_string());
    messages.insert(msg);
    // Every line about one webhook names Sentry's Request-ID.
    if (msg.rfind("webhook ", 0) == 0) {
      ASSERT_TRUE(o.contains("request_id") && o.at("request_id").is_string()) << line;
      std::string id(o.at("request_id").as_string());
      if (msg == "webhook accepted") {
        EXPECT_EQ(id, accepted_request_id) << line;
        saw_accepted = true;
      }
      if (msg == "webhook rejected") {
        EXPECT_EQ(id, rejected_request_id) << line;
        saw_rejected = true;
      }
    }
  }
  EXPECT_TRUE(saw_accepted) << log;
  EXPECT_TRUE(saw_rejected) << log;
  // The events above were all logged (so the secret search below covered their lines).
  for (const char* m : {"switchyard started", "delivery dead-lettered", "config reloaded",
                        "config reload rejected; keeping the running config", "stopped"}) {
    EXPECT_TRUE(messages.count(m)) << "no \"" << m << "\" line in:\n" << log;
  }

  for (const std::string& secret :
       {std::string(kClientSecret), std::string(kAdminToken), std::string(kSinkToken),
        expected_signature}) {
    EXPECT_EQ(log.find(secret), std::string::npos) << "secret in the log: " << secret;
    EXPECT_EQ(ReadFile(dir_.path() + "/daemon.out").find(secret), std::string::npos);
  }
}

TEST_F(LoggingTest, TextFormatStaysLogfmtWhenJsonIsNotAsked) {
  daemon_.Start(Config(), {std::string("SINK_TOKEN=") + kSinkToken});
  ASSERT_EQ(daemon_.Terminate(), 0);
  std::istringstream lines(daemon_.Log());
  std::string line;
  int n = 0;
  while (std::getline(lines, line)) {
    ++n;
    EXPECT_EQ(line.rfind("ts=", 0), 0u) << line;
    EXPECT_NE(line.find(" level="), std::string::npos) << line;
    EXPECT_NE(line.find(" msg=\""), std::string::npos) << line;
  }
  EXPECT_GT(n, 0);
}

}  // namespace
}  // namespace switchyard::testing
