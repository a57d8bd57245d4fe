// End-to-end tests of routing and delivery: the real daemon, a fake Pushover implementing its
// documented contract, a recording HTTP receiver, and the file sink.
#include <gtest/gtest.h>
#include <signal.h>

#include <atomic>
#include <boost/json.hpp>
#include <cctype>
#include <fstream>
#include <set>
#include <thread>

#include "fakes/fake_proxy.h"
#include "fakes/fake_pushover.h"
#include "fakes/recording_receiver.h"
#include "support/daemon_process.h"
#include "support/http_client.h"
#include "support/sentry.h"
#include "support/temp_dir.h"

namespace switchyard::testing {
namespace {

constexpr char kSecret[] = "delivery-e2e-secret";
constexpr auto kWait = std::chrono::seconds(20);

// The issue.created example with its project renamed (the seed's rule matches "Backend").
std::string IssueCreated(const std::string& project, const std::string& title = "") {
  auto v = boost::json::parse(CompactPayload("issue.created.json"));
  auto& issue = v.at("data").at("issue").as_object();
  issue["project"].as_object()["name"] = project;
  if (!title.empty()) issue["title"] = title;
  return boost::json::serialize(v);
}

// Code points in a UTF-8 string.
size_t CodePoints(const std::string& s) {
  size_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

class DeliveryTest : public ::testing::Test {
 protected:
  // Sinks: phone (fake Pushover), ops (recording receiver), archive (file). Routes are given.
  std::string Config(const std::string& routes, const std::string& extra_sinks = "",
                     const std::string& retry = "") {
    return "server:\n  listen: 127.0.0.1:0\n  admin_listen: 127.0.0.1:0\n  threads: 2\n"
           "storage:\n  path: " + dir_.path() + "/var\n"
           "sources:\n  sentry:\n    type: sentry\n    client_secret: " + kSecret + "\n"
           "sinks:\n"
           "  phone:\n    type: pushover\n    token: " + pushover_.options().token +
           "\n    user: " + pushover_.options().user + "\n    api_url: " + pushover_.url() +
           "\n"
           "  ops:\n    type: http\n    url: " + receiver_.url("/ingest") +
           "\n    headers: {Authorization: \"Bearer ops-token\"}\n    timeout: 2s\n"
           "  archive:\n    type: file\n    path: " + dir_.path() + "/events.jsonl\n" +
           extra_sinks +
           "retry:\n" + (retry.empty() ? "  initial: 200ms\n  max_delay: 1s\n  jitter: 0\n"
                                       : retry) +
           "routes:\n" + routes;
  }

  std::optional<HttpResponse> Post(const std::string& body, const std::string& resource = "issue") {
    return Fetch(daemon_.port(), "POST", "/hooks/sentry",
                 SentryHeaders(resource, SentrySignature(kSecret, body)), body);
  }

  std::optional<HttpResponse> Admin(const std::string& method, const std::string& target,
                                    const std::string& body = "") {
    return Fetch(daemon_.admin_port(), method, target,
                 body.empty() ? std::vector<std::pair<std::string, std::string>>{}
                              : std::vector<std::pair<std::string, std::string>>{
                                    {"Content-Type", "application/json"}},
                 body);
  }

  // Waits until /admin/queue reports `pending` pending and `dead` dead deliveries.
  bool WaitQueue(int pending, int dead) {
    auto deadline = std::chrono::steady_clock::now() + kWait;
    std::string want = "{\"pending\":" + std::to_string(pending) + ",\"dead\":" + std::to_string(dead);
    while (std::chrono::steady_clock::now() < deadline) {
      auto q = Admin("GET", "/admin/queue");
      if (q && q->body.starts_with(want)) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));  // polling the daemon's state
    }
    return false;
  }

  TempDir dir_;
  FakePushover pushover_;
  RecordingReceiver receiver_;
  DaemonProcess daemon_{dir_.path()};
};

TEST_F(DeliveryTest, BackendIssueGoesToPushoverWithRenderedFieldsAndIsArchived) {
  daemon_.Start(Config(
      "  - name: backend-issues-to-phone\n    source: sentry\n    resource: issue\n"
      "    action: created\n    match: ['data.issue.project.name = \"Backend\"']\n"
      "    to:\n      - sink: phone\n        title: '{{ data.issue.title }}'\n"
      "        message: '{{ data.issue.culprit }}'\n        url: 'https://sentry.example/i/{{ data.issue.id }}'\n"
      "        url_title: Issue Details\n        priority: 0\n"
      "  - name: archive-everything\n    to: [archive]\n"));
  auto r = Post(IssueCreated("Backend"));
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 202);
  ASSERT_TRUE(pushover_.WaitFor(1, kWait));
  auto m = pushover_.messages().at(0);
  EXPECT_EQ(m["title"], "ReferenceError: blooopy is not defined");
  EXPECT_EQ(m["message"], "?(runner)");
  EXPECT_EQ(m["url"], "https://sentry.example/i/1170820242");
  EXPECT_EQ(m["url_title"], "Issue Details");
  EXPECT_EQ(m["priority"], "0");
  ASSERT_TRUE(WaitQueue(0, 0));
  std::string archive = ReadFile(dir_.path() + "/events.jsonl");
  auto line = boost::json::parse(archive.substr(0, archive.find('\n')));
  EXPECT_EQ(line.at("id"), boost::json::parse(r->body).at("id"))
      << "the archived line carries the id the webhook's 202 answered";
  EXPECT_FALSE(line.at("delivery_id").as_string().empty());
  EXPECT_NE(line.at("delivery_id"), line.at("id"));
  EXPECT_EQ(line.at("route").as_string(), "archive-everything");
  EXPECT_EQ(line.at("source").as_string(), "sentry");
  EXPECT_EQ(line.at("resource").as_string(), "issue");
  EXPECT_EQ(line.at("action").as_string(), "created");
  EXPECT_EQ(line.at("payload").at("data").at("issue").at("project").at("name").as_string(),
            "Backend");
}

TEST_F(DeliveryTest, AdminQueueListsEveryConfiguredSinkBeforeItsFirstDelivery) {
  daemon_.Start(Config("  - name: archive-everything\n    to: [archive]\n"));
  auto q = Admin("GET", "/admin/queue");
  ASSERT_TRUE(q);
  ASSERT_EQ(q->status, 200);
  const boost::json::value v = boost::json::parse(q->body);
  EXPECT_EQ(v.at("pending"), 0);
  EXPECT_EQ(v.at("dead"), 0);
  const auto& sinks = v.at("sinks").as_object();
  EXPECT_EQ(sinks.size(), 3u) << q->body;
  for (const char* name : {"phone", "ops", "archive"}) {
    ASSERT_TRUE(sinks.contains(name)) << name << " missing from " << q->body;
    EXPECT_EQ(sinks.at(name).at("pending"), 0);
    EXPECT_EQ(sinks.at(name).at("dead"), 0);
  }
}

TEST_F(DeliveryTest, IssueFromAnotherProjectIsNotSentToPushover) {
  daemon_.Start(Config(
      "  - name: backend-issues-to-phone\n    resource: issue\n"
      "    match: ['data.issue.project.name = \"Backend\"']\n    to: [phone]\n"
      "  - name: archive-everything\n    to: [archive]\n"));
  ASSERT_EQ(Post(IssueCreated("front-end"))->status, 202);
  ASSERT_TRUE(WaitQueue(0, 0));
  EXPECT_EQ(pushover_.message_count(), 0u);
  EXPECT_NE(ReadFile(dir_.path() + "/events.jsonl").find("front-end"), std::string::npos);
}

TEST_F(DeliveryTest, MatchersDecideDeliveryPerRoute) {
  daemon_.Start(Config(
      "  - name: regex\n    match: ['data.issue.title =~ \"Reference.*\"']\n    to: [ops]\n"
      "  - name: not-regex\n    match: ['data.issue.title !~ \"Reference.*\"']\n    to: [ops]\n"
      "  - name: any\n    match_any: ['data.issue.level = \"fatal\"', '$resource = \"issue\"']\n"
      "    to: [ops]\n"
      "  - name: present\n    match: ['data.issue.nope != \"\"']\n    to: [ops]\n"));
  ASSERT_EQ(Post(IssueCreated("x"))->status, 202);
  ASSERT_TRUE(receiver_.WaitFor(2, kWait));
  ASSERT_TRUE(WaitQueue(0, 0));
  std::set<std::string> routes;
  for (const auto& req : receiver_.requests()) routes.insert(req.Header("X-Switchyard-Route"));
  EXPECT_EQ(routes, (std::set<std::string>{"regex", "any"}));
}

TEST_F(DeliveryTest, StopEndsRouteEvaluation) {
  daemon_.Start(Config("  - name: first\n    resource: issue\n    stop: true\n    to: [ops]\n"
                       "  - name: second\n    to: [archive]\n"));
  ASSERT_EQ(Post(IssueCreated("x"))->status, 202);
  ASSERT_TRUE(receiver_.WaitFor(1, kWait));
  ASSERT_TRUE(WaitQueue(0, 0));
  EXPECT_EQ(ReadFile(dir_.path() + "/events.jsonl"), "");
}

TEST_F(DeliveryTest, BehindAnEgressProxyDeliveriesGoThroughItByteForByte) {
  FakeProxy proxy;
  daemon_.Start(Config("  - name: all\n    to: [ops]\n"), {"HTTP_PROXY=" + proxy.url("ops:pw")});
  EXPECT_TRUE(daemon_.WaitForLog("outbound requests use a proxy"));
  const std::string body = IssueCreated("x");
  ASSERT_EQ(Post(body)->status, 202);
  ASSERT_TRUE(proxy.WaitFor(1, kWait));
  ASSERT_TRUE(WaitQueue(0, 0));  // the proxy's 200 is the delivery's outcome
  auto seen = proxy.seen();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].target, receiver_.url("/ingest"));  // absolute form
  EXPECT_EQ(seen[0].proxy_authorization, "Basic b3BzOnB3");
  EXPECT_EQ(seen[0].body, body);
  EXPECT_EQ(receiver_.count(), 0u);  // never reached directly
  EXPECT_EQ(daemon_.Log().find("ops:pw"), std::string::npos);
}

TEST_F(DeliveryTest, AnInvalidProxySettingStopsStartUpNamingTheVariableNotItsPassword) {
  const std::string config = dir_.path() + "/bad-proxy.yaml";
  {
    std::ofstream f(config);
    f << Config("  - name: all\n    to: [ops]\n");
  }
  RunResult r = RunCli({"run", "-c", config}, std::chrono::seconds(30),
                       {"HTTPS_PROXY=socks5://ops:hunter2@proxy:1080"});
  EXPECT_EQ(r.exit_code, 1);  // the operator's error, as a bad config
  EXPECT_NE(r.err.find("invalid proxy setting"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("HTTPS_PROXY"), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find("hunter2"), std::string::npos) << r.err;
}

TEST_F(DeliveryTest, MultiByteTitleIsCutToPushoversLimitOnACharacterBoundary) {
  daemon_.Start(Config("  - name: phone\n    to:\n      - sink: phone\n"
                       "        title: '{{ data.issue.title }}'\n"));
  std::string title;
  for (int i = 0; i < 300; ++i) title += "日";  // 300 code points, 900 bytes
  ASSERT_EQ(Post(IssueCreated("x", title))->status, 202);
  ASSERT_TRUE(pushover_.WaitFor(1, kWait));  // the fake rejects titles over 250 code points
  std::string got = pushover_.messages().at(0)["title"];
  EXPECT_EQ(CodePoints(got), 250u);
  EXPECT_TRUE(got.ends_with("…"));
  EXPECT_TRUE(got.starts_with("日日日"));
}

TEST_F(DeliveryTest, HttpSinkGetsTheBodyByteForByteAndAStableIdempotencyKeyAcrossRetries) {
  receiver_.EnqueueStatus(503, 2);
  daemon_.Start(Config("  - name: to-ops\n    to: [ops]\n"));
  std::string body = CompactPayload("error.created.json");
  ASSERT_EQ(Post(body, "error")->status, 202);
  ASSERT_TRUE(receiver_.WaitFor(3, kWait));
  ASSERT_TRUE(WaitQueue(0, 0));
  auto reqs = receiver_.requests();
  ASSERT_EQ(reqs.size(), 3u);
  for (const auto& req : reqs) {
    EXPECT_EQ(req.method, "POST");
    EXPECT_EQ(req.target, "/ingest");
    EXPECT_EQ(req.body, body);  // byte for byte, including Sentry's \u escapes
    EXPECT_EQ(req.Header("Content-Type"), "application/json");
    EXPECT_EQ(req.Header("Authorization"), "Bearer ops-token");
    EXPECT_EQ(req.Header("Idempotency-Key"), reqs[0].Header("Idempotency-Key"));
    EXPECT_EQ(req.Header("X-Switchyard-Source"), "sentry");
    EXPECT_EQ(req.Header("X-Switchyard-Resource"), "error");
    EXPECT_EQ(req.Header("X-Switchyard-Action"), "created");
    EXPECT_EQ(req.Header("X-Switchyard-Route"), "to-ops");
  }
  EXPECT_FALSE(reqs[0].Header("Idempotency-Key").empty());
}

TEST_F(DeliveryTest, RetryAfterIsHonoured) {
  ServerReply busy;
  busy.status = 429;
  busy.headers = {{"Retry-After", "2"}};
  receiver_.Enqueue(busy);
  daemon_.Start(Config("  - name: to-ops\n    to: [ops]\n", "",
                       "  initial: 100ms\n  max_delay: 10s\n  jitter: 0\n"));
  ASSERT_EQ(Post(IssueCreated("x"))->status, 202);
  ASSERT_TRUE(receiver_.WaitFor(1, kWait));
  auto first = std::chrono::steady_clock::now();
  ASSERT_TRUE(receiver_.WaitFor(2, kWait));
  // Backoff alone would retry after 100 ms; Retry-After asked for 2 s.
  EXPECT_GE(std::chrono::steady_clock::now() - first, std::chrono::milliseconds(1900));
}

TEST_F(DeliveryTest, PermanentErrorIsDeadLetteredAtOnceAndReplayDeliversIt) {
  receiver_.EnqueueStatus(400);
  daemon_.Start(Config("  - name: to-ops\n    to: [ops]\n"));
  ASSERT_EQ(Post(IssueCreated("x"))->status, 202);
  ASSERT_TRUE(WaitQueue(0, 1));
  EXPECT_EQ(receiver_.count(), 1u);  // 400 is not retried
  auto dlq = Admin("GET", "/admin/dlq");
  ASSERT_TRUE(dlq);
  auto list = boost::json::parse(dlq->body).as_array();
  ASSERT_EQ(list.size(), 1u);
  EXPECT_EQ(list[0].at("sink").as_string(), "ops");
  EXPECT_EQ(list[0].at("route").as_string(), "to-ops");
  EXPECT_EQ(list[0].at("attempts").as_int64(), 1);
  EXPECT_EQ(list[0].at("last_error").as_string(), "HTTP 400: status 400")
      << "the status and the start of the receiver's body";
  EXPECT_TRUE(list[0].at("first_attempt_at").is_string());
  auto replay = Admin("POST", "/admin/dlq/replay",
                      "{\"ids\":[\"" + std::string(list[0].at("id").as_string()) + "\"]}");
  ASSERT_TRUE(replay);
  EXPECT_EQ(replay->body, "{\"replayed\":1}");
  ASSERT_TRUE(receiver_.WaitFor(2, kWait));
  ASSERT_TRUE(WaitQueue(0, 0));
}

TEST_F(DeliveryTest, MaxAttemptsEndsInADeadLetter) {
  receiver_.SetDefault(ServerReply{500, {}, "boom"});
  daemon_.Start(Config("  - name: to-ops\n    to: [ops]\n", "",
                       "  initial: 50ms\n  max_delay: 100ms\n  jitter: 0\n  max_attempts: 3\n"));
  ASSERT_EQ(Post(IssueCreated("x"))->status, 202);
  ASSERT_TRUE(WaitQueue(0, 1));
  EXPECT_EQ(receiver_.count(), 3u);
  auto dlq = Admin("GET", "/admin/dlq");
  EXPECT_NE(dlq->body.find("max_attempts reached"), std::string::npos) << dlq->body;
}

TEST_F(DeliveryTest, CliListsReplaysAndDropsDeadLetters) {
  receiver_.EnqueueStatus(404, 2);
  daemon_.Start(Config("  - name: to-ops\n    to: [ops]\n"));
  ASSERT_EQ(Post(IssueCreated("a"))->status, 202);
  ASSERT_EQ(Post(IssueCreated("b"))->status, 202);
  ASSERT_TRUE(WaitQueue(0, 2));
  const std::string admin = "127.0.0.1:" + std::to_string(daemon_.admin_port());
  auto list = RunCli({"dlq", "list", "-c", daemon_.config_path(), "--json", "--admin", admin});
  ASSERT_EQ(list.exit_code, 0) << list.err;
  auto dead = boost::json::parse(list.out).as_array();
  ASSERT_EQ(dead.size(), 2u);
  std::string first(dead[0].at("id").as_string()), second(dead[1].at("id").as_string());
  auto table = RunCli({"dlq", "list", "-c", daemon_.config_path(), "--admin", admin});
  EXPECT_NE(table.out.find(first), std::string::npos);
  EXPECT_NE(table.out.find("HTTP 404"), std::string::npos);

  auto drop = RunCli({"dlq", "drop", second, "--admin", admin, "-c", daemon_.config_path()});
  EXPECT_EQ(drop.exit_code, 0) << drop.err;
  EXPECT_NE(drop.out.find("\"dropped\":1"), std::string::npos);
  auto replay = RunCli({"-c", daemon_.config_path(), "dlq", "replay", "--all", "--admin", admin});
  EXPECT_EQ(replay.exit_code, 0) << replay.err;
  EXPECT_NE(replay.out.find("\"replayed\":1"), std::string::npos);
  ASSERT_TRUE(receiver_.WaitFor(3, kWait));
  ASSERT_TRUE(WaitQueue(0, 0));

  // Ids that are not dead letters (a typo; one replayed already, here also given in lower case,
  // which names the same ULID) are named once each, and exit 1.
  std::string lower = first;
  for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  auto typo = RunCli({"dlq", "replay", lower, first, "01ARZ3NDEKTSV4RRFFQ69G5FAV", "--admin", admin,
                      "-c", daemon_.config_path()});
  EXPECT_EQ(typo.exit_code, 1);
  EXPECT_NE(typo.out.find("{\"replayed\":0,\"skipped\":[\"" + first +
                          "\",\"01ARZ3NDEKTSV4RRFFQ69G5FAV\"]}"),
            std::string::npos)
      << typo.out;
  EXPECT_NE(typo.err.find("not dead letters"), std::string::npos) << typo.err;
  EXPECT_NE(typo.err.find("01ARZ3NDEKTSV4RRFFQ69G5FAV"), std::string::npos) << typo.err;
  auto bad = Admin("POST", "/admin/dlq/replay", R"({"ids":["../../etc"]})");
  ASSERT_TRUE(bad);
  EXPECT_EQ(bad->status, 400) << bad->body;
  auto gone = RunCli({"dlq", "drop", second, "--admin", admin, "-c", daemon_.config_path()});
  EXPECT_EQ(gone.exit_code, 1);
  EXPECT_NE(gone.out.find("\"skipped\":[\"" + second + "\"]"), std::string::npos) << gone.out;
}

TEST_F(DeliveryTest, AdminDlqPagesWithLimitAndAfterAndLinksTheNextPage) {
  receiver_.SetDefault(ServerReply{404, {}, "gone"});  // permanent: dead at once
  daemon_.Start(Config("  - name: to-ops\n    to: [ops]\n"));
  for (int i = 0; i < 5; ++i) ASSERT_EQ(Post(IssueCreated(std::to_string(i) + "-p"))->status, 202);
  ASSERT_TRUE(WaitQueue(0, 5));
  auto whole = Admin("GET", "/admin/dlq");
  ASSERT_TRUE(whole);
  EXPECT_EQ(whole->Header("Link"), "");  // nothing cut
  const boost::json::value whole_list = boost::json::parse(whole->body);
  const auto& all = whole_list.as_array();
  ASSERT_EQ(all.size(), 5u);

  std::vector<std::string> paged;
  std::string target = "/admin/dlq?limit=2";
  for (int page = 0; page < 5 && !target.empty(); ++page) {
    auto r = Admin("GET", target);
    ASSERT_TRUE(r);
    ASSERT_EQ(r->status, 200) << r->body;
    const boost::json::value listed = boost::json::parse(r->body);
    for (const auto& e : listed.as_array()) paged.emplace_back(e.at("id").as_string());
    const std::string link = r->Header("Link");  // </admin/dlq?after=ID&limit=2>; rel="next"
    const size_t close = link.find('>');
    target = link.empty() || close == std::string::npos ? "" : link.substr(1, close - 1);
    if (!link.empty()) {
      EXPECT_NE(link.find("rel=\"next\""), std::string::npos) << link;
    }
  }
  EXPECT_TRUE(target.empty());  // the last page (one entry) has no Link
  ASSERT_EQ(paged.size(), 5u);
  for (size_t i = 0; i < 5; ++i) EXPECT_EQ(paged[i], std::string(all[i].at("id").as_string()));

  EXPECT_EQ(Admin("GET", "/admin/dlq?limit=0")->status, 400);
  EXPECT_EQ(Admin("GET", "/admin/dlq?limit=10001")->status, 400);
  EXPECT_EQ(Admin("GET", "/admin/dlq?after=%22x%22")->status, 400);
}

TEST_F(DeliveryTest, CliListsEveryDeadLetterAcrossPages) {
  receiver_.SetDefault(ServerReply{404, {}, "gone"});
  std::string routes;  // 60 routes to one sink: a webhook makes 60 dead letters
  for (int i = 0; i < 60; ++i) routes += "  - name: r" + std::to_string(i) + "\n    to: [ops]\n";
  daemon_.Start(Config(routes));
  for (int i = 0; i < 18; ++i) ASSERT_EQ(Post(IssueCreated(std::to_string(i) + "-c"))->status, 202);
  ASSERT_TRUE(WaitQueue(0, 1080));  // more than the CLI's page of 1,000
  const std::string admin = "127.0.0.1:" + std::to_string(daemon_.admin_port());
  auto list = RunCli({"dlq", "list", "-c", daemon_.config_path(), "--json", "--admin", admin});
  ASSERT_EQ(list.exit_code, 0) << list.err;
  const boost::json::value listed = boost::json::parse(list.out);
  const auto& dead = listed.as_array();
  EXPECT_EQ(dead.size(), 1080u);
  std::set<std::string> ids;
  for (const auto& e : dead) ids.emplace(e.at("id").as_string());
  EXPECT_EQ(ids.size(), 1080u);  // no entry twice at the page boundary
}

TEST_F(DeliveryTest, CliReportsAnUnreachableDaemonAsRuntimeFailure) {
  TempDir other;
  other.Write("c.yaml", "server:\n  admin_listen: 127.0.0.1:1\n");
  auto r = RunCli({"dlq", "list", "-c", other.File("c.yaml")});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("admin listener"), std::string::npos);
}

TEST_F(DeliveryTest, AReceiverThatIsDownForAWhileGetsEverythingWhenItReturns) {
  ASSERT_TRUE(receiver_.SetDown(true));
  daemon_.Start(Config("  - name: to-ops\n    to: [ops]\n", "",
                       "  initial: 100ms\n  max_delay: 300ms\n  jitter: 0\n  max_attempts: 1000\n"));
  std::set<std::string> sent;
  for (int i = 0; i < 20; ++i) {
    std::string body = IssueCreated(std::string("p").append(std::to_string(i)));
    ASSERT_EQ(Post(body)->status, 202);
    sent.insert(body);
  }
  // Let it fail for a while (attempts are made and retried), then come back.
  ASSERT_TRUE(daemon_.WaitForLog("circuit open", kWait));
  ASSERT_TRUE(receiver_.SetDown(false));
  ASSERT_TRUE(WaitQueue(0, 0));
  std::set<std::string> got;
  for (const auto& req : receiver_.requests()) got.insert(req.body);
  EXPECT_EQ(got, sent);
}

TEST_F(DeliveryTest, FanOutToSeveralSinksDeliversToEach) {
  std::string more;
  std::vector<std::unique_ptr<RecordingReceiver>> extra;
  std::string targets = "[ops";
  for (int i = 0; i < 4; ++i) {
    extra.push_back(std::make_unique<RecordingReceiver>());
    more += "  r" + std::to_string(i) + ":\n    type: http\n    url: " + extra.back()->url() + "\n";
    targets += ", r" + std::to_string(i);
  }
  targets += "]";
  daemon_.Start(Config("  - name: fan\n    to: " + targets + "\n", more));
  ASSERT_EQ(Post(IssueCreated("x"))->status, 202);
  ASSERT_TRUE(receiver_.WaitFor(1, kWait));
  for (auto& r : extra) EXPECT_TRUE(r->WaitFor(1, kWait));
}

TEST_F(DeliveryTest, PushoverServerErrorIsRetriedNoSoonerThanFiveSeconds) {
  pushover_.FailNext(1, 500);
  daemon_.Start(Config("  - name: phone\n    to: [phone]\n", "",
                       "  initial: 100ms\n  max_delay: 1m\n  jitter: 0\n"));
  ASSERT_EQ(Post(IssueCreated("x"))->status, 202);
  ASSERT_TRUE(pushover_.WaitForRequests(1, kWait));
  auto first = std::chrono::steady_clock::now();
  ASSERT_TRUE(pushover_.WaitFor(1, kWait));
  EXPECT_GE(std::chrono::steady_clock::now() - first, std::chrono::milliseconds(4900));
  EXPECT_EQ(pushover_.messages().at(0)["message"], "ReferenceError: blooopy is not defined");
}

TEST_F(DeliveryTest, PushoverSinkWithoutCredentialsIsSkippedAndLoggedOnce) {
  daemon_.Start(Config("  - name: phone\n    to: [idle-phone, archive]\n",
                       "  idle-phone:\n    type: pushover\n    token: \"\"\n    user: \"\"\n"
                       "    api_url: " + pushover_.url() + "\n"));
  ASSERT_EQ(Post(IssueCreated("x"))->status, 202);
  ASSERT_EQ(Post(IssueCreated("y"))->status, 202);
  ASSERT_TRUE(WaitQueue(0, 0));  // nothing queued for the inactive sink
  EXPECT_EQ(pushover_.request_count(), 0u);
  std::string log = daemon_.Log();
  auto first = log.find("sink inactive");
  ASSERT_NE(first, std::string::npos);
  EXPECT_EQ(log.find("sink inactive", first + 1), std::string::npos);
  EXPECT_NE(ReadFile(dir_.path() + "/events.jsonl").find("\"y\""), std::string::npos);
}

TEST_F(DeliveryTest, PushoverRejectionIsPermanent) {
  daemon_.Start(
      Config("  - name: phone\n    to: [bad-phone]\n",
             "  bad-phone:\n    type: pushover\n    token: wrongwrongwrongwrongwrongwrong\n"
             "    user: " + pushover_.options().user + "\n    api_url: " + pushover_.url() + "\n"));
  ASSERT_EQ(Post(IssueCreated("x"))->status, 202);
  ASSERT_TRUE(WaitQueue(0, 1));
  EXPECT_EQ(pushover_.request_count(), 1u);
  auto dlq = Admin("GET", "/admin/dlq");
  EXPECT_NE(dlq->body.find("application token is invalid"), std::string::npos) << dlq->body;
  EXPECT_EQ(dlq->body.find("wrongwrong"), std::string::npos);  // never the token
}

TEST_F(DeliveryTest, DeliveryMetricsAreExported) {
  receiver_.EnqueueStatus(503);
  daemon_.Start(Config("  - name: to-ops\n    to: [ops]\n"));
  ASSERT_EQ(Post(IssueCreated("x"))->status, 202);
  ASSERT_TRUE(receiver_.WaitFor(2, kWait));
  ASSERT_TRUE(WaitQueue(0, 0));
  auto m = Admin("GET", "/metrics");
  ASSERT_TRUE(m);
  EXPECT_NE(m->body.find("switchyard_route_matches_total{route=\"to-ops\"} 1"), std::string::npos)
      << m->body;
  EXPECT_NE(m->body.find("switchyard_deliveries_total{outcome=\"retry\",sink=\"ops\"} 1"),
            std::string::npos);
  EXPECT_NE(m->body.find("switchyard_deliveries_total{outcome=\"success\",sink=\"ops\"} 1"),
            std::string::npos);
  EXPECT_NE(m->body.find("switchyard_delivery_duration_seconds_count{sink=\"ops\"} 2"),
            std::string::npos);
  EXPECT_NE(m->body.find("switchyard_queue_pending{sink=\"ops\"}"), std::string::npos);
  EXPECT_NE(m->body.find("switchyard_dlq_entries{sink=\"ops\"}"), std::string::npos);
}

// Pushover's X-Limit-App-* headers are exported as gauges (the README's metric names); they
// used to be parsed and never reach /metrics.
TEST_F(DeliveryTest, PushoverQuotaHeadersAreExportedAsMetrics) {
  pushover_.SetQuotaRemaining(1234);
  daemon_.Start(Config("  - name: to-phone\n    to: [phone]\n"));
  ASSERT_EQ(Post(IssueCreated("x"))->status, 202);
  ASSERT_TRUE(pushover_.WaitFor(1, kWait));
  ASSERT_TRUE(WaitQueue(0, 0));
  auto m = Admin("GET", "/metrics");
  ASSERT_TRUE(m);
  EXPECT_NE(m->body.find("switchyard_pushover_quota_remaining{sink=\"phone\"} 1233"),
            std::string::npos)
      << "one message sent after 1234 were left\n"
      << m->body;
  EXPECT_NE(m->body.find("switchyard_pushover_quota_limit{sink=\"phone\"} 10000"),
            std::string::npos);
  EXPECT_NE(m->body.find("switchyard_pushover_quota_reset_timestamp_seconds{sink=\"phone\"} "
                         "1893456000"),
            std::string::npos);

  // A reload that makes `phone` an http sink: its last quota is no longer exported as current.
  const std::string pushover_block =
      "  phone:\n    type: pushover\n    token: " + pushover_.options().token +
      "\n    user: " + pushover_.options().user + "\n    api_url: " + pushover_.url() + "\n";
  std::string yaml = Config("  - name: to-phone\n    to: [phone]\n");
  const size_t at = yaml.find(pushover_block);
  ASSERT_NE(at, std::string::npos);
  yaml.replace(at, pushover_block.size(),
               "  phone:\n    type: http\n    url: " + receiver_.url("/phone") + "\n");
  dir_.Write("config.yaml", yaml);
  auto reloaded = Admin("POST", "/admin/reload");
  ASSERT_TRUE(reloaded);
  ASSERT_EQ(reloaded->status, 200) << reloaded->body;
  ASSERT_EQ(Post(IssueCreated("y"))->status, 202);  // the dispatcher has rebuilt once it sends
  ASSERT_TRUE(receiver_.WaitFor(1, kWait));
  m = Admin("GET", "/metrics");
  ASSERT_TRUE(m);
  EXPECT_EQ(m->body.find("switchyard_pushover_quota_remaining{sink=\"phone\"}"), std::string::npos)
      << m->body;
  EXPECT_EQ(m->body.find("switchyard_pushover_quota_limit{sink=\"phone\"}"), std::string::npos);
}

// Crash safety: SIGKILL under concurrent load; every acknowledged webhook is delivered after the
// restart. Duplicates (delivered before the kill, redelivered after) are allowed and reported.
TEST_F(DeliveryTest, SigkillUnderLoadLosesNoAcknowledgedWebhook) {
  daemon_.Start(Config("  - name: to-ops\n    to: [ops]\n"));
  std::mutex mu;
  std::set<std::string> acknowledged;
  std::atomic<bool> stop{false};
  std::vector<std::thread> posters;
  for (int t = 0; t < 4; ++t) {
    posters.emplace_back([&, t] {
      for (int i = 0; !stop; ++i) {
        std::string marker = "m-" + std::to_string(t) + "-" + std::to_string(i);
        std::string body = "{\"action\":\"created\",\"marker\":\"" + marker + "\"}";
        std::optional<HttpResponse> r;
        try {
          r = Post(body);
        } catch (const std::exception&) {
          return;  // the daemon is gone
        }
        if (!r) return;
        if (r->status == 202) {
          std::lock_guard lock(mu);
          acknowledged.insert(marker);
        }
      }
    });
  }
  receiver_.WaitFor(200, kWait);
  daemon_.Kill();
  stop = true;
  for (auto& t : posters) t.join();
  ASSERT_GT(acknowledged.size(), 100u);
  daemon_.Restart();
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  std::map<std::string, int> seen;
  for (;;) {
    seen.clear();
    for (const auto& req : receiver_.requests()) {
      auto v = boost::json::parse(req.body);
      ++seen[std::string(v.at("marker").as_string())];
    }
    size_t missing = 0;
    for (const auto& m : acknowledged) missing += !seen.count(m);
    if (missing == 0) break;
    ASSERT_LT(std::chrono::steady_clock::now(), deadline) << missing << " acknowledged lost";
    std::this_thread::sleep_for(std::chrono::milliseconds(50));  // waiting for redelivery
  }
  size_t duplicates = 0;
  for (const auto& [m, n] : seen) duplicates += n - 1;
  printf("[ crash    ] acknowledged=%zu delivered_unique=%zu duplicates=%zu lost=0\n",
         acknowledged.size(), seen.size(), duplicates);
}

}  // namespace
}  // namespace switchyard::testing
