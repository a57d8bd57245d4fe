// End-to-end tests of the Sentry integration lifecycle: the real daemon against a fake Sentry
// that implements the protocol's semantics (single-use, expiring grants; rotation on refresh;
// Sentry's 401 bodies), a fake Pushover and a recording receiver.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/statvfs.h>

#include <algorithm>
#include <boost/json.hpp>
#include <filesystem>
#include <fstream>
#include <functional>
#include <set>
#include <thread>
#include <vector>

#include "fakes/fake_pushover.h"
#include "fakes/fake_sentry.h"
#include "fakes/recording_receiver.h"
#include "support/daemon_process.h"
#include "support/http_client.h"
#include "support/sentry.h"
#include "support/temp_dir.h"

namespace switchyard::testing {
namespace {

constexpr auto kWait = std::chrono::seconds(20);
constexpr char kUuid[] = "a8e5d37a-696c-4c54-adb5-b3f28d64c7de";  // the fixtures' installation
constexpr char kIssueId[] = "1117540176";  // event_alert.triggered.json's data.event.issue_id
constexpr char kAfterInstall[] = "https://sentry.example/settings/installed";

// Polls the daemon's (or a fake's) state until `done` holds.
bool Eventually(const std::function<bool()>& done, std::chrono::milliseconds timeout = kWait) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (done()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return done();
}

std::string InstallationCreated(const std::string& uuid, const std::string& code,
                                const std::string& org = "test-org") {
  auto v = boost::json::parse(CompactPayload("installation.created.json"));
  auto& inst = v.at("data").at("installation").as_object();
  inst["uuid"] = uuid;
  inst["code"] = code;
  inst["organization"].as_object()["slug"] = org;
  v.at("installation").as_object()["uuid"] = uuid;
  return boost::json::serialize(v);
}

std::string InstallationDeleted(const std::string& uuid) {
  auto v = boost::json::parse(InstallationCreated(uuid, "unused"));
  v.as_object()["action"] = "deleted";
  v.at("data").at("installation").as_object().erase("code");
  return boost::json::serialize(v);
}

// The issue-details example with the project the seed's route matches on.
std::string IssueJson(const std::string& project_slug, const std::string& title) {
  auto v = boost::json::parse(CompactPayload("api.issue-details.GET.example.json"));
  v.as_object()["id"] = kIssueId;
  v.as_object()["title"] = title;
  v.at("project").as_object()["slug"] = project_slug;
  return boost::json::serialize(v);
}

std::string EventAlert(const std::string& uuid = kUuid, const std::string& issue = kIssueId,
                       const std::string& salt = "") {
  auto v = boost::json::parse(CompactPayload("event_alert.triggered.json"));
  v.at("installation").as_object()["uuid"] = uuid;
  v.at("data").at("event").as_object()["issue_id"] = issue;
  if (!salt.empty()) v.at("data").at("event").as_object()["event_id"] = salt;  // not a duplicate
  return boost::json::serialize(v);
}

class SentryIntegrationTest : public ::testing::Test {
 protected:
  struct Options {
    bool verify_install = true;
    std::string refresh_before = "1h";
    std::string static_token;  // internal integration
    std::string extra_sources;
    bool stop_after_backend = false;  // alerts-for-backend says stop: true
    std::string extra_routes;         // appended after alerts-for-backend
    std::string storage_extra;        // more storage: keys ("  key: value\n")
  };

  std::string Config(const Options& o) {
    std::string source = "  sentry:\n    type: sentry\n    client_id: " +
                         sentry_.options().client_id + "\n    client_secret: " +
                         sentry_.options().client_secret + "\n    api_url: " + sentry_.url() +
                         "\n    verify_install: " + (o.verify_install ? "true" : "false") +
                         "\n    refresh_before: " + o.refresh_before +
                         "\n    after_install_url: " + kAfterInstall + "\n";
    if (!o.static_token.empty()) {
      source += "    token: " + o.static_token + "\n    org: test-org\n";
    }
    return "server:\n  listen: 127.0.0.1:0\n  admin_listen: 127.0.0.1:0\n  threads: 2\n"
           "storage:\n  path: " +
           dir_.path() + "/var\n" + o.storage_extra + "sources:\n" + source + o.extra_sources +
           "sinks:\n"
           "  phone:\n    type: pushover\n    token: " +
           pushover_.options().token + "\n    user: " + pushover_.options().user +
           "\n    api_url: " + pushover_.url() +
           "\n"
           "  ops:\n    type: http\n    url: " +
           receiver_.url("/ingest") +
           "\n    timeout: 2s\n"
           "retry:\n  initial: 200ms\n  max_delay: 2s\n  jitter: 0\n  max_attempts: 6\n"
           "routes:\n"
           "  - name: alerts-for-backend\n    source: sentry\n    resource: event_alert\n"
           "    enrich: [issue]\n    match: ['$issue.project.slug = \"backend\"']\n" +
           (o.stop_after_backend ? "    stop: true\n" : "") +
           "    to:\n      - sink: phone\n        title: '{{ $issue.title }}'\n"
           "        message: '{{ data.triggered_rule }}'\n" +
           o.extra_routes;
  }

  void Start(const Options& o) { daemon_.Start(Config(o)); }
  void Start() { Start(Options()); }

  std::optional<HttpResponse> Post(const std::string& body, const std::string& resource,
                                   const std::string& source = "sentry",
                                   const std::string& secret = "") {
    return Fetch(daemon_.port(), "POST", "/hooks/" + source,
                 SentryHeaders(resource, SentrySignature(
                                             secret.empty() ? sentry_.options().client_secret
                                                            : secret,
                                             body)),
                 body);
  }

  // Post with one more header.
  std::optional<HttpResponse> PostWithHeader(const std::string& body, const std::string& resource,
                                             const std::string& name, const std::string& value) {
    auto headers = SentryHeaders(resource, SentrySignature(sentry_.options().client_secret, body));
    headers.emplace_back(name, value);
    return Fetch(daemon_.port(), "POST", "/hooks/sentry", headers, body);
  }

  std::optional<HttpResponse> Setup(const std::string& code, const std::string& uuid = kUuid,
                                    const std::string& source = "sentry") {
    return Fetch(daemon_.port(), "GET",
                 "/setup/" + source + "?code=" + code + "&installationId=" + uuid +
                     "&orgSlug=test-org");
  }

  boost::json::array Installations() {
    auto r = Fetch(daemon_.admin_port(), "GET", "/admin/installations");
    if (!r || r->status != 200) return {};
    return boost::json::parse(r->body).as_array();
  }

  // The status of installation `uuid` in /admin/installations ("" when absent).
  std::string StatusOf(const std::string& uuid = kUuid) {
    for (const auto& row : Installations()) {
      if (row.at("uuid").as_string() == uuid) return std::string(row.at("status").as_string());
    }
    return "";
  }

  std::string Metrics() {
    auto r = Fetch(daemon_.admin_port(), "GET", "/metrics");
    return r ? r->body : "";
  }

  // Starts with tokens that live 3 s and are refreshed 2 s before they expire (after half their
  // life, so every 1.5 s), and installs kUuid.
  void InstallWithShortLivedTokens() {
    sentry_.SetTokenLifetime(std::chrono::seconds(3));
    Start({.refresh_before = "2s"});
    InstallViaSetup();
  }

  void InstallViaSetup(const std::string& uuid = kUuid) {
    auto r = Setup(sentry_.IssueGrant(uuid), uuid);
    ASSERT_TRUE(r);
    ASSERT_EQ(r->status, 302) << r->body;
  }

  TempDir dir_;
  FakeSentry sentry_;
  FakePushover pushover_;
  RecordingReceiver receiver_;
  DaemonProcess daemon_{dir_.path()};
};

TEST_F(SentryIntegrationTest, InstallationWebhookExchangesTheGrantAfterThe202AndVerifies) {
  Start();
  const std::string code = sentry_.IssueGrant(kUuid);
  auto r = Post(InstallationCreated(kUuid, code), "installation");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 202);
  ASSERT_TRUE(Eventually([&] { return StatusOf() == "installed"; })) << daemon_.Log();
  EXPECT_EQ(sentry_.stats().exchanges_ok, 1);
  EXPECT_TRUE(sentry_.Verified(kUuid));
  auto rows = Installations();
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].at("source").as_string(), "sentry");
  EXPECT_EQ(rows[0].at("org").as_string(), "test-org");
  EXPECT_TRUE(rows[0].at("expires_at").is_string());
  EXPECT_EQ(rows[0].as_object().size(), 5u);  // source, uuid, org, status, expires_at: no token
}

TEST_F(SentryIntegrationTest, RedirectExchangesTheGrantThenSendsTheBrowserToAfterInstallUrl) {
  Start();
  auto r = Setup(sentry_.IssueGrant(kUuid));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 302) << r->body;
  EXPECT_EQ(r->Header("Location"), kAfterInstall);
  EXPECT_EQ(StatusOf(), "installed");  // stored and verified before the redirect
  EXPECT_TRUE(sentry_.Verified(kUuid));
}

TEST_F(SentryIntegrationTest, AVerifyAnswered401RefreshesTheTokenAndVerifiesAgain) {
  Start();
  sentry_.FailNext({.method = "PUT",
                    .path_part = "/sentry-app-installations/",
                    .status = 401,
                    .body = R"({"detail":"Invalid token"})"});
  auto r = Setup(sentry_.IssueGrant(kUuid));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 302) << r->body;
  EXPECT_EQ(StatusOf(), "installed");
  EXPECT_TRUE(sentry_.Verified(kUuid));
  EXPECT_EQ(sentry_.stats().refreshes_ok, 1);
  EXPECT_EQ(sentry_.PendingFaults(), 0u);
}

TEST_F(SentryIntegrationTest, ARedirectWithoutOrgSlugLearnsTheOrgFromTheInstallationWebhook) {
  Start();
  const std::string code = sentry_.IssueGrant(kUuid);
  auto r = Fetch(daemon_.port(), "GET",
                 "/setup/sentry?code=" + code + "&installationId=" + std::string(kUuid));
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 302) << r->body;
  auto rows = Installations();
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].at("org").as_string(), "");
  // /setup's orgSlug is not authenticated: once installed, a link naming another org changes
  // nothing.
  auto forged = Fetch(daemon_.port(), "GET",
                      "/setup/sentry?code=whatever&installationId=" + std::string(kUuid) +
                          "&orgSlug=evil");
  ASSERT_TRUE(forged);
  EXPECT_EQ(Installations().at(0).at("org").as_string(), "");
  ASSERT_EQ(Post(InstallationCreated(kUuid, code), "installation")->status, 202);
  ASSERT_TRUE(Eventually([&] {
    auto now = Installations();
    return now.size() == 1 && now[0].at("org").as_string() == "test-org";
  })) << daemon_.Log();
  EXPECT_EQ(sentry_.stats().exchanges_ok, 1) << "the code is not exchanged twice";
  // Kept across a restart.
  ASSERT_EQ(daemon_.Terminate(), 0);
  daemon_.Restart();
  rows = Installations();
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].at("org").as_string(), "test-org");
}

TEST_F(SentryIntegrationTest, TheSignedInstallationWebhooksOrgReplacesTheOrgARedirectNamed) {
  sentry_.AddIssue("test-org", kIssueId, IssueJson("backend", "Right org"));
  Start();
  // A forged link: the code and uuid are real, the unauthenticated orgSlug is not.
  const std::string code = sentry_.IssueGrant(kUuid);
  auto r = Fetch(daemon_.port(), "GET",
                 "/setup/sentry?code=" + code + "&installationId=" + std::string(kUuid) +
                     "&orgSlug=victim-org");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 302) << r->body;
  ASSERT_EQ(Installations().at(0).at("org").as_string(), "victim-org");
  ASSERT_EQ(Post(InstallationCreated(kUuid, code, "test-org"), "installation")->status, 202);
  ASSERT_TRUE(Eventually([&] {
    auto now = Installations();
    return now.size() == 1 && now[0].at("org").as_string() == "test-org";
  })) << daemon_.Log();
  EXPECT_TRUE(daemon_.WaitForLog("installation organization corrected"));
  // API calls use the webhook's org.
  ASSERT_EQ(Post(EventAlert(), "event_alert")->status, 202);
  ASSERT_TRUE(pushover_.WaitFor(1, kWait)) << daemon_.Log();
  EXPECT_EQ(sentry_.stats().issue_gets, 1);
  // Kept across a restart.
  ASSERT_EQ(daemon_.Terminate(), 0);
  daemon_.Restart();
  EXPECT_EQ(Installations().at(0).at("org").as_string(), "test-org");
}

// Sentry puts the grant code in installation.created only while the grant exists: a webhook
// built after /setup exchanged it has none. That was logged as a failed installation.
TEST_F(SentryIntegrationTest, AnInstallationWebhookWithoutACodeAfterSetupIsNotAFailure) {
  Start();
  InstallViaSetup();
  auto v = boost::json::parse(InstallationCreated(kUuid, "unused"));
  v.at("data").at("installation").as_object().erase("code");
  ASSERT_EQ(Post(boost::json::serialize(v), "installation")->status, 202);
  EXPECT_EQ(StatusOf(), "installed");
  ASSERT_EQ(daemon_.Terminate(), 0);  // the installer has heard of the webhook by then
  EXPECT_EQ(daemon_.Log().find("installation from webhook failed"), std::string::npos)
      << daemon_.Log();
}

// /setup is unauthenticated: anyone who can reach the listener could make the daemon call
// Sentry's token endpoint (with the app's client secret) as often as they like, and get the app
// rate-limited. At most 8 of its exchanges run at once; the rest are told to retry.
TEST_F(SentryIntegrationTest, SetupRunsAtMostEightExchangesAtOnce) {
  Start();
  constexpr int kRequests = 12;
  for (int i = 0; i < kRequests; ++i) {
    sentry_.FailNext({.method = "POST",
                      .path_part = "/authorizations/",
                      .delay = std::chrono::seconds(3),
                      .pass_through = true});
  }
  std::vector<std::thread> threads;
  std::vector<int> statuses(kRequests, 0);
  for (int i = 0; i < kRequests; ++i) {
    threads.emplace_back([&, i] {
      char uuid[40];
      snprintf(uuid, sizeof uuid, "00000000-0000-4000-8000-%012d", i);
      const std::string code = sentry_.IssueGrant(uuid);
      auto r =
          Fetch(daemon_.port(), "GET",
                "/setup/sentry?code=" + code + "&installationId=" + uuid + "&orgSlug=test-org");
      statuses[i] = r ? r->status : 0;
    });
  }
  for (auto& t : threads) t.join();
  const int refused = static_cast<int>(std::count(statuses.begin(), statuses.end(), 503));
  const int redirected = static_cast<int>(std::count(statuses.begin(), statuses.end(), 302));
  EXPECT_EQ(refused, kRequests - 8) << ::testing::PrintToString(statuses);
  EXPECT_EQ(redirected, 8) << ::testing::PrintToString(statuses);
}

// /setup is unauthenticated: a loop of bogus links ran 8 exchanges back to back (40-80 a
// second against Sentry's token endpoint with the app's secret, each logged three times). It
// starts 8 in a burst, then one every 6 s.
TEST_F(SentryIntegrationTest, SetupStartsAtMostEightExchangesInABurstThenTenAMinute) {
  Start();
  constexpr int kRequests = 12;
  std::vector<int> statuses;
  for (int i = 0; i < kRequests; ++i) {
    auto r = Setup("0123456789abcdef0123456789abcdef");  // never issued: Sentry refuses
    ASSERT_TRUE(r);
    statuses.push_back(r->status);
    if (r->status == 503) {
      EXPECT_FALSE(r->Header("Retry-After").empty());
    }
  }
  const int refused_by_sentry = static_cast<int>(std::count(statuses.begin(), statuses.end(), 502));
  const int refused_here = static_cast<int>(std::count(statuses.begin(), statuses.end(), 503));
  // One more may have been earned if the loop took over 6 s (a slow sanitizer build).
  EXPECT_GE(refused_by_sentry, 8) << ::testing::PrintToString(statuses);
  EXPECT_LE(refused_by_sentry, 9) << ::testing::PrintToString(statuses);
  EXPECT_EQ(refused_by_sentry + refused_here, kRequests) << ::testing::PrintToString(statuses);
  EXPECT_EQ(sentry_.stats().exchanges_refused, refused_by_sentry);
}

TEST_F(SentryIntegrationTest, WithoutVerifyInstallNoStatusPutIsSent) {
  Start({.verify_install = false});
  InstallViaSetup();
  EXPECT_EQ(StatusOf(), "installed");
  EXPECT_FALSE(sentry_.Verified(kUuid));
  EXPECT_EQ(sentry_.stats().verifies, 0);
}

TEST_F(SentryIntegrationTest, RefusedGrantShowsAReadable502PageAndStoresNothing) {
  Start();
  auto r = Setup("0123456789abcdef0123456789abcdef");  // never issued
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 502);
  EXPECT_NE(r->Header("Content-Type").find("text/html"), std::string::npos);
  EXPECT_NE(r->body.find("Could not find grant for given code"), std::string::npos) << r->body;
  EXPECT_EQ(StatusOf(), "");
  // An incomplete link is the browser's problem, not Sentry's: 400.
  auto bad = Fetch(daemon_.port(), "GET", "/setup/sentry?installationId=" + std::string(kUuid));
  ASSERT_TRUE(bad);
  EXPECT_EQ(bad->status, 400);
}

// The tokens are stored before the verify: a verify that fails for now is retried in the
// background, so the browser is sent on (not to "Sentry refused the installation").
TEST_F(SentryIntegrationTest, AVerifyThatFailsForNowStillRedirectsAndVerifiesLater) {
  Start();
  sentry_.FailNext({.method = "PUT",
                    .path_part = "/sentry-app-installations/",
                    .status = 503,
                    .body = R"({"detail":"Service Unavailable"})"});
  auto r = Setup(sentry_.IssueGrant(kUuid));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 302) << r->body;
  ASSERT_TRUE(Eventually([&] { return sentry_.Verified(kUuid); })) << daemon_.Log();
  ASSERT_TRUE(Eventually([&] { return StatusOf() == "installed"; })) << daemon_.Log();
  // The redirect came while the verify was failing, not after it succeeded.
  EXPECT_NE(daemon_.Log().find("installation verify failed; retrying in the background"),
            std::string::npos);
}

TEST_F(SentryIntegrationTest, AGrantRefusedWith400Or403IsA502PageNotTheBrowsersFault) {
  Start();
  for (int status : {400, 403}) {
    sentry_.FailNext({.method = "POST",
                      .path_part = "/authorizations/",
                      .status = status,
                      .body = R"({"detail":"Grant refused"})"});
    auto r = Setup(sentry_.IssueGrant(kUuid));
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 502) << status << ": " << r->body;
    EXPECT_NE(r->body.find("Grant refused"), std::string::npos) << r->body;
  }
  EXPECT_EQ(StatusOf(), "");
}

TEST_F(SentryIntegrationTest, WebhookAndRedirectRacingShareOneExchangeAndBothSucceed) {
  Start();
  // Slow the exchange down so the second arrival finds the first under way.
  sentry_.FailNext({.method = "POST",
                    .path_part = "/authorizations/",
                    .delay = std::chrono::milliseconds(500),
                    .pass_through = true});
  const std::string code = sentry_.IssueGrant(kUuid);
  std::optional<HttpResponse> setup, hook;
  std::thread a([&] { setup = Setup(code); });
  std::thread b([&] { hook = Post(InstallationCreated(kUuid, code), "installation"); });
  a.join();
  b.join();
  ASSERT_TRUE(setup && hook);
  EXPECT_EQ(setup->status, 302) << setup->body;
  EXPECT_EQ(hook->status, 202);
  ASSERT_TRUE(Eventually([&] { return StatusOf() == "installed"; }));
  // The single-use code was exchanged exactly once: no refused second exchange.
  EXPECT_EQ(sentry_.stats().exchanges_ok, 1);
  EXPECT_EQ(sentry_.stats().exchanges_refused, 0);
  // The redirect arriving after the webhook's exchange redirects as a success too.
  auto again = Setup(code);
  ASSERT_TRUE(again);
  EXPECT_EQ(again->status, 302);
  EXPECT_EQ(sentry_.stats().exchanges_ok, 1);
}

TEST_F(SentryIntegrationTest, IssueAlertFetchesTheIssueAndBackendGoesToPushover) {
  sentry_.AddIssue("test-org", kIssueId, IssueJson("backend", "Boom in the backend"));
  Start();
  InstallViaSetup();
  auto r = Post(EventAlert(), "event_alert");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 202);
  ASSERT_TRUE(pushover_.WaitFor(1, kWait)) << daemon_.Log();
  auto m = pushover_.messages().at(0);
  EXPECT_EQ(m["title"], "Boom in the backend");
  EXPECT_EQ(sentry_.stats().issue_gets, 1);
  ASSERT_FALSE(sentry_.IssueAuthorizations().empty());
  EXPECT_EQ(sentry_.IssueAuthorizations()[0], "Bearer " + sentry_.CurrentAccessToken(kUuid));
}

TEST_F(SentryIntegrationTest, RoutesReadTheInstallationsOrgHeadersAndTheIssueAfterTheFetch) {
  sentry_.AddIssue("test-org", kIssueId, IssueJson("frontend", "Checkout is down"));
  // No matcher reads $issue.*: enrich alone makes the route wait for the fetch, and the
  // org and header matchers are decided the same before and after it.
  Start({.extra_routes = "  - name: team-alerts\n    source: sentry\n    resource: event_alert\n"
                         "    enrich: [issue]\n"
                         "    match:\n      - '$installation.org = \"test-org\"'\n"
                         "      - '$header.x-team = \"payments\"'\n"
                         "    to:\n      - sink: ops\n        body: '{{ $installation.org }}|"
                         "{{ $header.x-team }}|{{ $issue.title }}'\n"});
  InstallViaSetup();
  auto r = PostWithHeader(EventAlert(), "event_alert", "X-Team", "payments");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 202);
  ASSERT_TRUE(receiver_.WaitFor(1, kWait)) << daemon_.Log();
  EXPECT_EQ(receiver_.requests().at(0).body, "test-org|payments|Checkout is down");
  EXPECT_NE(Metrics().find("switchyard_route_matches_total{route=\"team-alerts\"} 1"),
            std::string::npos)
      << Metrics();

  // Another team's alert does not match at ingest: no fetch is needed for it.
  auto other =
      PostWithHeader(EventAlert(kUuid, kIssueId, "other-team"), "event_alert", "X-Team", "search");
  ASSERT_TRUE(other);
  ASSERT_EQ(other->status, 202);
  ASSERT_TRUE(Eventually([&] {
    return Metrics().find("switchyard_deliveries_total{outcome=\"filtered\",sink=\"phone\"} 2") !=
           std::string::npos;
  })) << Metrics();
  EXPECT_EQ(receiver_.count(), 1u);
}

TEST_F(SentryIntegrationTest, ADeferredRouteCountsOneMatchPerEventWhateverItsSinksAndRetries) {
  sentry_.AddIssue("test-org", kIssueId, IssueJson("frontend", "Retried twice"));
  Start({.extra_routes = "  - name: fan\n    source: sentry\n    resource: event_alert\n"
                         "    enrich: [issue]\n"
                         "    match: ['$issue.project.slug = \"frontend\"']\n"
                         "    to: [ops, phone]\n"});
  InstallViaSetup();
  receiver_.EnqueueStatus(503, 2);  // ops retries twice: each attempt fetches and decides again
  auto r = Post(EventAlert(), "event_alert");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 202);
  ASSERT_TRUE(pushover_.WaitFor(1, kWait)) << daemon_.Log();
  ASSERT_TRUE(Eventually([&] {
    return Metrics().find("switchyard_deliveries_total{outcome=\"success\",sink=\"ops\"} 1") !=
           std::string::npos;
  })) << Metrics();
  EXPECT_EQ(receiver_.count(), 3u);
  EXPECT_NE(Metrics().find("switchyard_route_matches_total{route=\"fan\"} 1\n"), std::string::npos)
      << Metrics();
}

// comment.* names its issue as data.issue_id and seer.* as data.group_id; neither was looked
// at, so routes enriching them read every $issue.* as "" and never matched.
TEST_F(SentryIntegrationTest, CommentAndSeerWebhooksAreEnrichedWithTheirIssue) {
  sentry_.AddIssue("test-org", kIssueId, IssueJson("backend", "Commented"));
  Start({.extra_routes = "  - name: enriched\n    source: sentry\n    resource: [comment, seer]\n"
                         "    enrich: [issue]\n    match: ['$issue.project.slug = \"backend\"']\n"
                         "    to:\n      - sink: ops\n"
                         "        body: '{{ $resource }}: {{ $issue.title }}'\n"});
  InstallViaSetup();
  const int64_t issue = std::stoll(kIssueId);
  auto comment = boost::json::parse(CompactPayload("comment.created.json"));
  comment.at("installation").as_object()["uuid"] = kUuid;
  comment.at("data").as_object()["issue_id"] = issue;
  ASSERT_EQ(Post(boost::json::serialize(comment), "comment")->status, 202);
  auto seer = boost::json::parse(CompactPayload("seer.root_cause_completed.json"));
  seer.at("installation").as_object()["uuid"] = kUuid;
  seer.at("data").as_object()["group_id"] = issue;
  ASSERT_EQ(Post(boost::json::serialize(seer), "seer")->status, 202);
  ASSERT_TRUE(receiver_.WaitFor(2, kWait)) << daemon_.Log();
  std::multiset<std::string> bodies;
  for (const auto& r : receiver_.requests()) bodies.insert(r.body);
  EXPECT_EQ(bodies, (std::multiset<std::string>{"comment: Commented", "seer: Commented"}));
}

TEST_F(SentryIntegrationTest, AnEventThatNamesNoIssueIsDecidedWithIssueFieldsReadingEmpty) {
  // A metric alert is about no issue: nothing to fetch, and $issue.* reads as "" like any
  // missing field. It is neither fetched nor dead-lettered.
  Start({.extra_routes = "  - name: no-issue\n    source: sentry\n    resource: metric_alert\n"
                         "    enrich: [issue]\n    match: ['$issue.id = \"\"']\n"
                         "    to:\n      - sink: ops\n"
                         "        body: 'issue={{ $issue.title | default(\"none\") }}'\n"
                         "  - name: needs-an-issue\n    source: sentry\n    resource: metric_alert\n"
                         "    enrich: [issue]\n    match: ['$issue.id != \"\"']\n    to: [phone]\n"});
  InstallViaSetup();
  auto v = boost::json::parse(CompactPayload("metric_alert.resolved.json"));
  v.at("installation").as_object()["uuid"] = kUuid;
  auto r = Post(boost::json::serialize(v), "metric_alert");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 202);
  ASSERT_TRUE(receiver_.WaitFor(1, kWait)) << daemon_.Log();
  EXPECT_EQ(receiver_.requests().at(0).body, "issue=none");
  ASSERT_TRUE(Eventually([&] {
    return Metrics().find("switchyard_deliveries_total{outcome=\"filtered\",sink=\"phone\"} 1") !=
           std::string::npos;
  })) << Metrics();
  auto queue = Fetch(daemon_.admin_port(), "GET", "/admin/queue");
  ASSERT_TRUE(queue);
  EXPECT_EQ(boost::json::parse(queue->body).at("dead").as_int64(), 0) << queue->body;
  EXPECT_EQ(sentry_.stats().issue_gets, 0);
  EXPECT_TRUE(pushover_.messages().empty());
}

TEST_F(SentryIntegrationTest, AStopRouteDecidedByTheIssueStopsTheRoutesAfterIt) {
  sentry_.AddIssue("test-org", kIssueId, IssueJson("backend", "Backend only"));
  sentry_.AddIssue("test-org", "2220001", IssueJson("frontend", "Everyone"));
  Start({.stop_after_backend = true, .extra_routes = "  - name: everything-else\n    to: [ops]\n"});
  InstallViaSetup();
  ASSERT_EQ(Post(EventAlert(), "event_alert")->status, 202);
  ASSERT_TRUE(pushover_.WaitFor(1, kWait)) << daemon_.Log();
  ASSERT_TRUE(Eventually([&] {
    return Metrics().find("switchyard_deliveries_total{outcome=\"filtered\",sink=\"ops\"} 1") !=
           std::string::npos;
  })) << Metrics();
  EXPECT_EQ(receiver_.count(), 0u) << "the backend route matched and stops everything-else";

  // An issue of another project: the stop route does not match, so the next one delivers.
  ASSERT_EQ(Post(EventAlert(kUuid, "2220001"), "event_alert")->status, 202);
  ASSERT_TRUE(receiver_.WaitFor(1, kWait)) << daemon_.Log();
  EXPECT_EQ(pushover_.messages().size(), 1u);
}

TEST_F(SentryIntegrationTest, AnIssueOfAnotherProjectIsFilteredNotDelivered) {
  sentry_.AddIssue("test-org", kIssueId, IssueJson("frontend", "Not ours"));
  Start();
  InstallViaSetup();
  ASSERT_EQ(Post(EventAlert(), "event_alert")->status, 202);
  ASSERT_TRUE(Eventually([&] {
    return Metrics().find("switchyard_deliveries_total{outcome=\"filtered\",sink=\"phone\"} 1") !=
           std::string::npos;
  })) << Metrics();
  EXPECT_EQ(pushover_.messages().size(), 0u);
}

TEST_F(SentryIntegrationTest, ABurstOfEventsForOneIssueMakesOneApiCall) {
  sentry_.AddIssue("test-org", kIssueId, IssueJson("backend", "Burst"));
  Start();
  InstallViaSetup();
  constexpr int kEvents = 20;
  for (int i = 0; i < kEvents; ++i) {
    ASSERT_EQ(Post(EventAlert(kUuid, kIssueId, "evt" + std::to_string(i)), "event_alert")->status,
              202);
  }
  ASSERT_TRUE(pushover_.WaitFor(kEvents, kWait));
  EXPECT_EQ(sentry_.stats().issue_gets, 1);
}

TEST_F(SentryIntegrationTest, ExpiredTokenIsRefreshedOnceAndTheCallRetried) {
  sentry_.AddIssue("test-org", kIssueId, IssueJson("backend", "After refresh"));
  Start();
  InstallViaSetup();
  const std::string before = sentry_.CurrentAccessToken(kUuid);
  sentry_.ExpireAccessToken(kUuid);  // Sentry now answers 401 {"detail":"Token expired"}
  ASSERT_EQ(Post(EventAlert(), "event_alert")->status, 202);
  ASSERT_TRUE(pushover_.WaitFor(1, kWait)) << daemon_.Log();
  EXPECT_EQ(sentry_.stats().unauthorized, 1);
  EXPECT_EQ(sentry_.stats().refreshes_ok, 1);
  auto auths = sentry_.IssueAuthorizations();
  ASSERT_EQ(auths.size(), 2u);
  EXPECT_EQ(auths[0], "Bearer " + before);
  EXPECT_EQ(auths[1], "Bearer " + sentry_.CurrentAccessToken(kUuid));
  EXPECT_NE(before, sentry_.CurrentAccessToken(kUuid));
}

TEST_F(SentryIntegrationTest, AnApiCallAnswered401WhileTheVerifyRunsIsRetriedWhenTheVerifyEnds) {
  sentry_.AddIssue("test-org", kIssueId, IssueJson("backend", "Not parked"));
  Start();
  // The verify PUT reaches Sentry (which marks the installation installed) but its answer is slow.
  sentry_.FailNext({.method = "PUT",
                    .path_part = "/sentry-app-installations/",
                    .delay = std::chrono::seconds(3),
                    .pass_through = true});
  ASSERT_EQ(Post(InstallationCreated(kUuid, sentry_.IssueGrant(kUuid)), "installation")->status,
            202);
  ASSERT_TRUE(Eventually([&] { return sentry_.PendingFaults() == 0; })) << daemon_.Log();
  // Meanwhile the token expires: the issue fetch gets a 401 and its refresh waits for the verify.
  sentry_.ExpireAccessToken(kUuid);
  ASSERT_EQ(Post(EventAlert(), "event_alert")->status, 202);
  ASSERT_TRUE(pushover_.WaitFor(1, kWait)) << daemon_.Log();
  EXPECT_EQ(sentry_.stats().unauthorized, 1);
  EXPECT_EQ(sentry_.stats().refreshes_ok, 1);
  EXPECT_EQ(StatusOf(), "installed");
}

TEST_F(SentryIntegrationTest, RefresherRenewsTokensBeforeTheyExpire) {
  sentry_.SetTokenLifetime(std::chrono::seconds(4));
  sentry_.AddIssue("test-org", kIssueId, IssueJson("backend", "Fresh"));
  Start({.refresh_before = "3s"});
  InstallViaSetup();
  ASSERT_TRUE(Eventually([&] { return sentry_.stats().refreshes_ok >= 2; })) << daemon_.Log();
  EXPECT_EQ(sentry_.stats().refreshes_refused, 0);
  // Whatever pair is current works: no call ever met an expired token.
  ASSERT_EQ(Post(EventAlert(), "event_alert")->status, 202);
  ASSERT_TRUE(pushover_.WaitFor(1, kWait));
  EXPECT_EQ(sentry_.stats().unauthorized, 0);
  EXPECT_TRUE(Eventually([&] {
    return Metrics().find("switchyard_token_refreshes_total{outcome=\"success\",source=\"sentry\"}") !=
           std::string::npos;
  }));
}

TEST_F(SentryIntegrationTest, RefreshRefusedWith401MarksTheInstallationForReinstall) {
  InstallWithShortLivedTokens();
  sentry_.RevokeTokens(kUuid);  // the refresh token no longer exists at Sentry
  ASSERT_TRUE(Eventually([&] { return StatusOf() == "needs_reinstall"; })) << daemon_.Log();
  EXPECT_GE(sentry_.stats().refreshes_refused, 1);
  EXPECT_TRUE(Eventually([&] {
    const std::string m = Metrics();
    return m.find("switchyard_token_refreshes_total{outcome=\"failure\",source=\"sentry\"} 1") !=
               std::string::npos &&
           m.find("switchyard_installations{source=\"sentry\",status=\"needs_reinstall\"} 1") !=
               std::string::npos;
  }));
  EXPECT_EQ(Metrics().find("switchyard_token_refreshes_total{outcome=\"rejected\""),
            std::string::npos)
      << "refresh outcomes are the contract's: success, failure";
  EXPECT_TRUE(daemon_.WaitForLog("must be re-installed"));
  // A manual refresh was tried first; this organization does not have Sentry's feature for it.
  EXPECT_EQ(sentry_.stats().manual_refreshes_refused, 1);
  EXPECT_TRUE(daemon_.WaitForLog("Manual token refresh is not enabled for this organization"));
}

// Sentry deletes the old pair when it answers a refresh: if that answer is lost on the way, the
// stored refresh token is dead. Where the organization allows it, a manual refresh (a JWT signed
// with the client secret) gets a new pair and the installation keeps working.
TEST_F(SentryIntegrationTest, ARefreshTokenSentryNoLongerKnowsIsReplacedByAManualRefresh) {
  sentry_.SetManualRefresh(true);
  sentry_.AddIssue("test-org", kIssueId, IssueJson("backend", "After manual refresh"));
  InstallWithShortLivedTokens();
  sentry_.RotateTokens(kUuid);  // Sentry's state after a refresh whose answer never arrived
  ASSERT_TRUE(Eventually([&] { return sentry_.stats().manual_refreshes_ok >= 1; }))
      << daemon_.Log();
  EXPECT_GE(sentry_.stats().refreshes_refused, 1);
  EXPECT_EQ(sentry_.stats().manual_refreshes_refused, 0);
  EXPECT_TRUE(daemon_.WaitForLog("a manual refresh issued a new pair"));
  const boost::json::value claims = boost::json::parse(sentry_.LastJwtClaims());
  EXPECT_EQ(claims.at("iss").as_string(), sentry_.options().client_id);
  EXPECT_EQ(claims.at("sub").as_string(), sentry_.options().client_id);
  EXPECT_EQ(StatusOf(), "installed");
  ASSERT_EQ(Post(EventAlert(), "event_alert")->status, 202);
  ASSERT_TRUE(pushover_.WaitFor(1, kWait)) << daemon_.Log();
  EXPECT_EQ(sentry_.stats().unauthorized, 0);
  EXPECT_EQ(daemon_.Log().find(sentry_.options().client_secret), std::string::npos);
}

TEST_F(SentryIntegrationTest,
       ARefreshRefusedForTheAppsCredentialsKeepsTheTokensAndAReloadRetriesIt) {
  sentry_.SetTokenLifetime(std::chrono::seconds(3));
  sentry_.AddIssue("test-org", kIssueId, IssueJson("backend", "Recovered"));
  const Options options{.refresh_before = "2s"};
  Start(options);
  InstallViaSetup();
  // A wrong client_secret is reloaded: Sentry refuses every refresh with 401 "Invalid Client
  // ID / Secret pair", which says nothing about the installation's tokens.
  const std::string good = Config(options);
  std::string bad = good;
  const std::string secret_line = "client_secret: " + sentry_.options().client_secret;
  bad.replace(bad.find(secret_line), secret_line.size(), "client_secret: not-the-app-secret");
  dir_.Write("config.yaml", bad);
  ASSERT_EQ(Fetch(daemon_.admin_port(), "POST", "/admin/reload")->status, 200);
  // Retried with backoff (2 s, 4 s; the next in 8 s).
  ASSERT_TRUE(Eventually([&] {
    return Metrics().find(
               "switchyard_token_refreshes_total{outcome=\"failure\",source=\"sentry\"} 3") !=
           std::string::npos;
  })) << daemon_.Log();
  EXPECT_TRUE(daemon_.WaitForLog("check the source's client_id and client_secret"));
  EXPECT_EQ(StatusOf(), "installed");
  // The config is fixed: the reload retries at once (not after the backoff) with the kept pair.
  const int refreshed = sentry_.stats().refreshes_ok;
  dir_.Write("config.yaml", good);
  ASSERT_EQ(Fetch(daemon_.admin_port(), "POST", "/admin/reload")->status, 200);
  ASSERT_TRUE(
      Eventually([&] { return sentry_.stats().refreshes_ok > refreshed; }, std::chrono::seconds(4)))
      << daemon_.Log();
  EXPECT_EQ(sentry_.stats().refreshes_refused, 0);
  EXPECT_EQ(StatusOf(), "installed");
  ASSERT_EQ(Post(EventAlert(), "event_alert")->status, 202);
  ASSERT_TRUE(pushover_.WaitFor(1, kWait)) << daemon_.Log();
  EXPECT_EQ(daemon_.Log().find("not-the-app-secret"), std::string::npos);
  // Refused three times in all: the retries waited for their backoff.
  EXPECT_NE(
      Metrics().find("switchyard_token_refreshes_total{outcome=\"failure\",source=\"sentry\"} 3"),
      std::string::npos);
}

// A pair revoked in Sentry's UI is gone for good: a manual refresh needs a current pair to
// replace, and Sentry refuses it (401 "Installation does not have a token").
TEST_F(SentryIntegrationTest, ARevokedPairIsNotRecoveredByAManualRefresh) {
  sentry_.SetManualRefresh(true);
  InstallWithShortLivedTokens();
  sentry_.RevokeTokens(kUuid);
  ASSERT_TRUE(Eventually([&] { return StatusOf() == "needs_reinstall"; })) << daemon_.Log();
  EXPECT_EQ(sentry_.stats().manual_refreshes_refused, 1);
  EXPECT_EQ(sentry_.stats().manual_refreshes_ok, 0);
  EXPECT_TRUE(daemon_.WaitForLog("Installation does not have a token"));
}

// Two switchyards serving one installation take each other's pairs. The first manual refresh
// takes it back; a pair taken again within the hour is left to the other (needs_reinstall, and
// the log says why) instead of a tug of war that also spends the app's refresh rate limit.
TEST_F(SentryIntegrationTest, APairTakenAgainSoonAfterAManualRefreshIsNotTakenBack) {
  sentry_.SetManualRefresh(true);
  InstallWithShortLivedTokens();
  sentry_.RotateTokens(kUuid);
  ASSERT_TRUE(Eventually([&] { return sentry_.stats().manual_refreshes_ok == 1; }))
      << daemon_.Log();
  EXPECT_EQ(StatusOf(), "installed");
  // A regular refresh with the recovered pair, then the pair is taken again.
  ASSERT_TRUE(Eventually([&] { return sentry_.stats().refreshes_ok >= 1; })) << daemon_.Log();
  sentry_.RotateTokens(kUuid);
  ASSERT_TRUE(Eventually([&] { return StatusOf() == "needs_reinstall"; })) << daemon_.Log();
  EXPECT_EQ(sentry_.stats().manual_refreshes_ok, 1);
  EXPECT_TRUE(daemon_.WaitForLog("is another switchyard serving this installation?"));
}

// The hour after a manual refresh is kept with the pair: a restart (systemd's, after a crash)
// does not let two switchyards take the pair from each other once more each.
TEST_F(SentryIntegrationTest, TheHourAfterAManualRefreshHoldsAcrossARestart) {
  sentry_.SetManualRefresh(true);
  InstallWithShortLivedTokens();
  sentry_.RotateTokens(kUuid);
  ASSERT_TRUE(Eventually([&] { return sentry_.stats().manual_refreshes_ok == 1; }))
      << daemon_.Log();
  ASSERT_TRUE(Eventually([&] { return StatusOf() == "installed"; })) << daemon_.Log();
  daemon_.Kill();
  daemon_.Restart();
  // The restarted daemon refreshes the recovered pair, then the pair is taken again.
  const int refreshed = sentry_.stats().refreshes_ok;
  ASSERT_TRUE(Eventually([&] { return sentry_.stats().refreshes_ok > refreshed; }))
      << daemon_.Log();
  sentry_.RotateTokens(kUuid);
  ASSERT_TRUE(Eventually([&] { return StatusOf() == "needs_reinstall"; })) << daemon_.Log();
  EXPECT_EQ(sentry_.stats().manual_refreshes_ok, 1);
  EXPECT_TRUE(daemon_.WaitForLog("is another switchyard serving this installation?"));
}

// A manual refresh that could not be made (Sentry answered 503) proves nothing about the pair: the
// installation is not marked for re-installation, and the next attempt recovers it.
TEST_F(SentryIntegrationTest, AManualRefreshThatFailsTransientlyIsRetriedNotGivenUp) {
  sentry_.SetManualRefresh(true);
  InstallWithShortLivedTokens();
  sentry_.RotateTokens(kUuid);
  sentry_.FailNext({.method = "POST",
                    .path_part = "/authorizations/",
                    .status = 401,
                    .body = R"({"detail":"Given refresh token does not exist"})"});
  sentry_.FailNext({.method = "POST", .path_part = "/authorizations/", .status = 503});
  ASSERT_TRUE(Eventually([&] { return sentry_.stats().manual_refreshes_ok == 1; }))
      << daemon_.Log();
  EXPECT_TRUE(daemon_.WaitForLog("manual refresh failed"));
  EXPECT_EQ(daemon_.Log().find("must be re-installed"), std::string::npos);
  EXPECT_EQ(StatusOf(), "installed");
}

// Sentry answers a refresh for a deleted installation 404 "Could not find given sentry app
// installation": the pair is dead.
TEST_F(SentryIntegrationTest, ARefreshOfAnInstallationSentryDeletedMarksItForReinstall) {
  InstallWithShortLivedTokens();
  sentry_.Uninstall(kUuid);
  ASSERT_TRUE(Eventually([&] { return StatusOf() == "needs_reinstall"; })) << daemon_.Log();
}

// Any other 404 used to mark every installation needs_reinstall for good: a reload with a
// mistyped api_url (or a proxy's 404) needed every organization to re-install the app. It is
// now like a refusal of the app's credentials: the pair is kept and a fixed reload recovers.
TEST_F(SentryIntegrationTest, ARefreshAnsweredByAnother404KeepsThePairAndAReloadRecovers) {
  sentry_.SetTokenLifetime(std::chrono::seconds(3));
  const Options options{.refresh_before = "2s"};
  Start(options);
  InstallViaSetup();
  const std::string good = Config(options);
  std::string bad = good;
  const std::string url_line = "api_url: " + sentry_.url();
  bad.replace(bad.find(url_line), url_line.size(), url_line + "/mistyped");
  dir_.Write("config.yaml", bad);
  ASSERT_EQ(Fetch(daemon_.admin_port(), "POST", "/admin/reload")->status, 200);
  ASSERT_TRUE(Eventually([&] {
    return Metrics().find(
               "switchyard_token_refreshes_total{outcome=\"failure\",source=\"sentry\"}") !=
           std::string::npos;
  })) << daemon_.Log();
  EXPECT_TRUE(daemon_.WaitForLog("check the source's api_url")) << daemon_.Log();
  EXPECT_EQ(StatusOf(), "installed");
  const int refreshed = sentry_.stats().refreshes_ok;
  dir_.Write("config.yaml", good);
  ASSERT_EQ(Fetch(daemon_.admin_port(), "POST", "/admin/reload")->status, 200);
  ASSERT_TRUE(Eventually([&] { return sentry_.stats().refreshes_ok > refreshed; }))
      << daemon_.Log();
  EXPECT_EQ(StatusOf(), "installed");
}

TEST_F(SentryIntegrationTest, RefreshFailingWith5xxIsRetriedWithBackoff) {
  InstallWithShortLivedTokens();
  sentry_.FailNext({.method = "POST", .path_part = "/authorizations/", .status = 503});
  ASSERT_TRUE(Eventually([&] { return sentry_.stats().refreshes_ok >= 1; })) << daemon_.Log();
  EXPECT_EQ(StatusOf(), "installed");
  EXPECT_TRUE(Eventually([&] {
    return Metrics().find("switchyard_token_refreshes_total{outcome=\"failure\",source=\"sentry\"} 1") !=
           std::string::npos;
  }));
}

TEST_F(SentryIntegrationTest, RateLimitedIssueFetchWaitsForRetryAfter) {
  sentry_.AddIssue("test-org", kIssueId, IssueJson("backend", "Patience"));
  Start();
  InstallViaSetup();
  sentry_.FailNext({.method = "GET",
                    .path_part = "/issues/",
                    .status = 429,
                    .body = R"({"detail":"Request was throttled."})",
                    .headers = {{"Retry-After", "2"}}});
  ASSERT_EQ(Post(EventAlert(), "event_alert")->status, 202);
  ASSERT_TRUE(pushover_.WaitFor(1, kWait));
  auto times = sentry_.IssueRequestTimes();
  ASSERT_EQ(times.size(), 2u);
  // Retry-After: 2 is honoured although the route's backoff starts at 200ms.
  EXPECT_GE(times[1] - times[0], std::chrono::milliseconds(1900));
}

TEST_F(SentryIntegrationTest, UninstallForgetsTheInstallation) {
  sentry_.AddIssue("test-org", kIssueId, IssueJson("backend", "Gone"));
  Start();
  InstallViaSetup();
  ASSERT_EQ(Post(InstallationDeleted(kUuid), "installation")->status, 202);
  ASSERT_TRUE(Eventually([&] { return Installations().empty(); }));
  // An alert for the forgotten installation cannot be enriched: a dead letter saying why.
  ASSERT_EQ(Post(EventAlert(), "event_alert")->status, 202);
  ASSERT_TRUE(Eventually([&] {
    auto r = Fetch(daemon_.admin_port(), "GET", "/admin/dlq");
    return r && r->body.find("holds no tokens") != std::string::npos;
  }));
  // And it stays forgotten across a restart.
  daemon_.Terminate();
  daemon_.Restart();
  EXPECT_TRUE(Installations().empty());
}

// Sentry retries an uninstall webhook it saw fail (e.g. a daemon that stored it while stopping and
// never answered, so its tokens were not deleted). The retry is a duplicate of the stored one,
// and it still forgets the installation. Here the first copy came before the install was set up
// (so it had nothing to forget); the retry after it must not leave the installation in place.
TEST_F(SentryIntegrationTest, ARetriedUninstallWebhookThatIsADuplicateStillForgets) {
  Start();
  ASSERT_EQ(Post(InstallationDeleted(kUuid), "installation")->status, 202);
  // The uninstall is acted on after its 202: wait for it, or the install below races it (an
  // exchange the uninstall overtakes is discarded, as it should be; one CI run met that).
  ASSERT_TRUE(daemon_.WaitForLog("msg=\"installation deleted\"")) << daemon_.Log();
  InstallViaSetup();
  ASSERT_EQ(StatusOf(), "installed");
  auto retried = Post(InstallationDeleted(kUuid), "installation");
  ASSERT_TRUE(retried);
  EXPECT_EQ(retried->status, 200) << "a duplicate";
  ASSERT_TRUE(Eventually([&] { return Installations().empty(); })) << daemon_.Log();
  daemon_.Terminate();
  daemon_.Restart();
  EXPECT_TRUE(Installations().empty()) << "the tokens were deleted from the store too";
}

TEST_F(SentryIntegrationTest, InternalIntegrationUsesItsStaticTokenWithoutOAuth) {
  sentry_.AddStaticToken("internal-static-token-7f3a");
  sentry_.AddIssue("test-org", kIssueId, IssueJson("backend", "Internal"));
  Start({.static_token = "internal-static-token-7f3a"});
  ASSERT_EQ(Post(EventAlert(), "event_alert")->status, 202);
  ASSERT_TRUE(pushover_.WaitFor(1, kWait)) << daemon_.Log();
  EXPECT_EQ(sentry_.IssueAuthorizations().at(0), "Bearer internal-static-token-7f3a");
  EXPECT_EQ(sentry_.stats().exchanges_ok + sentry_.stats().refreshes_ok, 0);
  auto rows = Installations();
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].at("status").as_string(), "internal");
  EXPECT_EQ(Metrics().find("internal-static-token-7f3a"), std::string::npos);
}

TEST_F(SentryIntegrationTest, TwoAppsKeepTheirOwnSecretsAndTokens) {
  const std::string other_uuid = "b9f6e48b-7a7d-4d5d-bec4-c4a3e75c389e";
  Start({.extra_sources = "  other:\n    type: sentry\n    client_id: " +
                          sentry_.options().client_id + "\n    client_secret: " +
                          sentry_.options().client_secret + "\n    api_url: " + sentry_.url() +
                          "\n"});
  InstallViaSetup();
  auto r = Setup(sentry_.IssueGrant(other_uuid), other_uuid, "other");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 302);
  auto rows = Installations();
  ASSERT_EQ(rows.size(), 2u);
  std::set<std::string> pairs;
  for (const auto& row : rows) {
    pairs.insert(std::string(row.at("source").as_string()) + "/" +
                 std::string(row.at("uuid").as_string()));
  }
  EXPECT_TRUE(pairs.count(std::string("sentry/") + kUuid));
  EXPECT_TRUE(pairs.count("other/" + other_uuid));
  // A webhook signed with some other secret is refused by each source.
  auto bad = Post(EventAlert(), "event_alert", "other", "not-the-secret");
  ASSERT_TRUE(bad);
  EXPECT_EQ(bad->status, 401);
}

TEST_F(SentryIntegrationTest, TokensSurviveARestartWithoutANewExchange) {
  sentry_.AddIssue("test-org", kIssueId, IssueJson("backend", "Persisted"));
  Start();
  InstallViaSetup();
  daemon_.Terminate();
  daemon_.Restart();
  EXPECT_EQ(StatusOf(), "installed");
  ASSERT_EQ(Post(EventAlert(), "event_alert")->status, 202);
  ASSERT_TRUE(pushover_.WaitFor(1, kWait));
  EXPECT_EQ(sentry_.stats().exchanges_ok, 1);
}

TEST_F(SentryIntegrationTest, AnExchangeAnswered5xxIsRetriedWithinTheGrantsLifetime) {
  Start();
  sentry_.FailNext({.method = "POST", .path_part = "/authorizations/", .status = 503});
  const std::string code = sentry_.IssueGrant(kUuid);
  ASSERT_EQ(Post(InstallationCreated(kUuid, code), "installation")->status, 202);
  ASSERT_TRUE(Eventually([&] { return StatusOf() == "installed"; })) << daemon_.Log();
  EXPECT_EQ(sentry_.stats().exchanges_ok, 1);
  EXPECT_TRUE(daemon_.WaitForLog("grant exchange failed"));
}

TEST_F(SentryIntegrationTest, AKillDuringTheExchangeIsResumedFromTheStoredWebhookAtStart) {
  Start();
  // The exchange request reaches Sentry but its answer would come only much later.
  sentry_.FailNext({.method = "POST",
                    .path_part = "/authorizations/",
                    .status = 503,
                    .delay = std::chrono::seconds(60)});
  const std::string code = sentry_.IssueGrant(kUuid);
  ASSERT_EQ(Post(InstallationCreated(kUuid, code), "installation")->status, 202);
  ASSERT_TRUE(daemon_.WaitForLog("exchanging grant code"));
  daemon_.Kill();
  daemon_.Restart();
  ASSERT_TRUE(Eventually([&] { return StatusOf() == "installed"; })) << daemon_.Log();
  EXPECT_EQ(sentry_.stats().exchanges_ok, 1);
  EXPECT_TRUE(daemon_.WaitForLog("resuming an interrupted installation"));
}

TEST_F(SentryIntegrationTest, TokensNeverReachDiskLogsMetricsOrAdminOutput) {
  sentry_.SetTokenLifetime(std::chrono::seconds(4));
  sentry_.AddIssue("test-org", kIssueId, IssueJson("backend", "Secretive"));
  Start({.refresh_before = "3s"});
  InstallViaSetup();
  ASSERT_TRUE(Eventually([&] { return sentry_.stats().refreshes_ok >= 1; }));
  ASSERT_EQ(Post(EventAlert(), "event_alert")->status, 202);
  ASSERT_TRUE(pushover_.WaitFor(1, kWait));
  const std::string metrics = Metrics();
  const std::string admin = Fetch(daemon_.admin_port(), "GET", "/admin/installations")->body;
  daemon_.Terminate();  // flush memtables to SST files too
  const std::vector<std::string> tokens = sentry_.AllTokens();
  ASSERT_GE(tokens.size(), 4u);
  std::vector<std::string> secrets = tokens;
  secrets.push_back(sentry_.options().client_secret);
  size_t files = 0;
  for (const auto& entry : std::filesystem::recursive_directory_iterator(dir_.path())) {
    if (!entry.is_regular_file()) continue;
    ++files;
    const std::string content = ReadFile(entry.path().string());
    for (const auto& t : tokens) {
      EXPECT_EQ(content.find(t), std::string::npos) << "token found in " << entry.path();
    }
  }
  EXPECT_GT(files, 5u);  // the store's WAL, SST, MANIFEST files, the log, the config
  const std::string log = daemon_.Log();
  for (const auto& s : secrets) {
    EXPECT_EQ(log.find(s), std::string::npos) << "secret in the log";
    EXPECT_EQ(metrics.find(s), std::string::npos) << "secret in /metrics";
    EXPECT_EQ(admin.find(s), std::string::npos) << "secret in /admin/installations";
  }
}

TEST_F(SentryIntegrationTest, AKillDuringATokenRefreshLosesNoTokenPair) {
  sentry_.AddIssue("test-org", kIssueId, IssueJson("backend", "Still here"));
  InstallWithShortLivedTokens();
  // The next refresh request reaches Sentry and hangs there (Sentry has not answered, so the
  // old pair is still the valid one) while the daemon is killed.
  sentry_.FailNext({.method = "POST",
                    .path_part = "/authorizations/",
                    .status = 503,
                    .delay = std::chrono::seconds(60)});
  ASSERT_TRUE(Eventually([&] { return sentry_.PendingFaults() == 0; }));
  daemon_.Kill();
  daemon_.Restart();
  ASSERT_TRUE(Eventually([&] { return sentry_.stats().refreshes_ok >= 1; })) << daemon_.Log();
  EXPECT_EQ(StatusOf(), "installed");
  ASSERT_EQ(Post(EventAlert(), "event_alert")->status, 202);
  ASSERT_TRUE(pushover_.WaitFor(1, kWait)) << daemon_.Log();
  EXPECT_EQ(sentry_.stats().refreshes_refused, 0);
}

TEST_F(SentryIntegrationTest, ATermDuringATokenRefreshStoresTheNewPairSentryIssued) {
  sentry_.AddIssue("test-org", kIssueId, IssueJson("backend", "Rotated"));
  InstallWithShortLivedTokens();
  // Sentry commits the next refresh (the old pair dies at once) but its answer is slow; SIGTERM
  // arrives while it is on the way.
  sentry_.FailNext({.method = "POST",
                    .path_part = "/authorizations/",
                    .delay = std::chrono::seconds(2),
                    .pass_through = true});
  ASSERT_TRUE(Eventually([&] { return sentry_.PendingFaults() == 0; })) << daemon_.Log();
  ASSERT_EQ(daemon_.Terminate(), 0);
  EXPECT_EQ(sentry_.stats().refreshes_ok, 1);
  daemon_.Restart();
  // The stored pair is the one Sentry issued: it refreshes, and calls work.
  ASSERT_TRUE(Eventually([&] { return sentry_.stats().refreshes_ok >= 2; })) << daemon_.Log();
  EXPECT_EQ(sentry_.stats().refreshes_refused, 0);
  EXPECT_EQ(StatusOf(), "installed");
  ASSERT_EQ(Post(EventAlert(), "event_alert")->status, 202);
  ASSERT_TRUE(pushover_.WaitFor(1, kWait)) << daemon_.Log();
}

TEST_F(SentryIntegrationTest, ATermDuringAGrantExchangeStoresTheTokensSentryIssued) {
  Start();
  // Sentry uses the single-use code at once but answers slowly; SIGTERM arrives meanwhile.
  sentry_.FailNext({.method = "POST",
                    .path_part = "/authorizations/",
                    .delay = std::chrono::seconds(2),
                    .pass_through = true});
  const std::string code = sentry_.IssueGrant(kUuid);
  ASSERT_EQ(Post(InstallationCreated(kUuid, code), "installation")->status, 202);
  ASSERT_TRUE(Eventually([&] { return sentry_.PendingFaults() == 0; })) << daemon_.Log();
  ASSERT_EQ(daemon_.Terminate(), 0);
  daemon_.Restart();
  // Stored before the exit (pending: the verify is sent after the restart), not re-exchanged.
  ASSERT_TRUE(Eventually([&] { return StatusOf() == "installed"; })) << daemon_.Log();
  EXPECT_TRUE(sentry_.Verified(kUuid));
  EXPECT_EQ(sentry_.stats().exchanges_ok, 1);
  EXPECT_EQ(sentry_.stats().exchanges_refused, 0);
}

TEST_F(SentryIntegrationTest, TokenPairsAreStoredWhileTheDiskIsAtTheWebhooksFreeSpaceFloor) {
  struct statvfs fs;
  ASSERT_EQ(::statvfs(dir_.path().c_str(), &fs), 0);
  const uint64_t free_bytes = static_cast<uint64_t>(fs.f_bavail) * fs.f_frsize;
  ASSERT_GT(free_bytes, 256ull << 20) << "the test needs some free space";
  // The floor is 64 MiB above what is free: webhooks are refused, and a token pair (a few
  // hundred bytes) is still stored.
  sentry_.SetTokenLifetime(std::chrono::seconds(3));
  Start(
      {.refresh_before = "2s",
       .storage_extra = "  min_free_bytes: " + std::to_string(free_bytes + (64ull << 20)) + "\n"});
  ASSERT_EQ(Post(EventAlert(), "event_alert")->status, 503);
  InstallViaSetup();
  ASSERT_TRUE(Eventually([&] { return sentry_.stats().refreshes_ok >= 1; })) << daemon_.Log();
  ASSERT_EQ(daemon_.Terminate(), 0);
  daemon_.Restart();
  // The stored pair is the newest: it refreshes after the restart.
  const int refreshed = sentry_.stats().refreshes_ok;
  ASSERT_TRUE(Eventually([&] { return sentry_.stats().refreshes_ok > refreshed; }))
      << daemon_.Log();
  EXPECT_EQ(sentry_.stats().refreshes_refused, 0);
  EXPECT_EQ(StatusOf(), "installed");
}

TEST_F(SentryIntegrationTest, CliListsInstallationsAndTheQueueWithoutTokens) {
  Start();
  InstallViaSetup();
  const std::string admin = "127.0.0.1:" + std::to_string(daemon_.admin_port());
  RunResult r = RunCli({"installations", "-c", daemon_.config_path(), "--admin", admin});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find(kUuid), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("installed"), std::string::npos);
  EXPECT_NE(r.out.find("test-org"), std::string::npos);
  for (const auto& t : sentry_.AllTokens()) EXPECT_EQ(r.out.find(t), std::string::npos);
  RunResult q = RunCli({"queue", "-c", daemon_.config_path(), "--admin", admin, "--json"});
  ASSERT_EQ(q.exit_code, 0) << q.err;
  auto v = boost::json::parse(q.out);
  EXPECT_EQ(v.at("pending").as_int64(), 0);
  EXPECT_TRUE(v.at("sinks").is_object());
  RunResult table = RunCli({"queue", "-c", daemon_.config_path(), "--admin", admin});
  ASSERT_EQ(table.exit_code, 0);
  EXPECT_NE(table.out.find("(total)"), std::string::npos) << table.out;
}

TEST_F(SentryIntegrationTest, TokenKeyReadableByOthersRefusesToStart) {
  Start();
  daemon_.Terminate();
  const std::string key = dir_.path() + "/var/token.key";
  struct stat st;
  ASSERT_EQ(::stat(key.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  ASSERT_EQ(::chmod(key.c_str(), 0644), 0);
  RunResult r = RunCli({"run", "-c", daemon_.config_path()}, std::chrono::seconds(30));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("chmod 600"), std::string::npos) << r.err;
}

TEST_F(SentryIntegrationTest, AStoreOpenedWithAnotherKeyIsRefusedNotReset) {
  Start();
  InstallViaSetup();
  daemon_.Terminate();
  const std::string key = dir_.path() + "/var/token.key";
  {
    std::ofstream out(key, std::ios::trunc);
    out << std::string(64, 'a') << "\n";
  }
  RunResult r = RunCli({"run", "-c", daemon_.config_path()}, std::chrono::seconds(30));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("cannot be decrypted"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace switchyard::testing
