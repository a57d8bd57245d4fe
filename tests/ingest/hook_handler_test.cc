#include "ingest/hook_handler.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <future>
#include <string>

#include "common/clock.h"
#include "common/crypto.h"
#include "config/config.h"
#include "config/config_holder.h"
#include "metrics/metrics.h"
#include "storage/event_store.h"
#include "support/captured_stderr.h"
#include "support/temp_dir.h"

namespace switchyard::ingest {
namespace {

using std::chrono::milliseconds;

constexpr char kSecret[] = "hook-handler-test-secret";
constexpr char kBody[] =
    R"({"action":"created","data":{"issue":{"id":"1"}},"installation":{"uuid":"u-1"}})";

// The real handler over a real store in a temporary directory, with a clock the test sets.
class HookHandlerTest : public ::testing::Test {
 protected:
  void Start(const std::string& source_extra, const std::string& rest = "routes: []\n",
             Installer* installer = nullptr) {
    config::LoadResult r = config::LoadConfigFromString(
        std::string("sources:\n  sentry:\n    type: sentry\n    client_secret: ") + kSecret + "\n" +
            source_extra + rest,
        "routes.yaml");
    ASSERT_TRUE(r.errors.empty()) << r.errors.front().ToString();
    holder_ = std::make_unique<config::ConfigHolder>(r.config);
    storage::StoreOptions o;
    o.path = dir_.path() + "/store";
    o.sync = false;
    o.min_free_bytes = 0;
    o.dedupe_window = milliseconds(0);  // the same body is posted again
    auto s = storage::OpenStore(o, clock_);
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    store_ = std::move(s).value();
    handler_ = std::make_unique<HookHandler>(*holder_, *store_, metrics_, clock_, stopping_,
                                             std::function<void()>{}, installer);
  }

  void TearDown() override {
    handler_.reset();
    if (store_) store_->Close();
  }

  // Posts kBody, signed, with `timestamp` as Sentry-Hook-Timestamp; returns the status.
  int Post(const std::string& timestamp) {
    crypto::Sha256Digest mac;
    EXPECT_TRUE(crypto::HmacSha256(kSecret, kBody, &mac));
    http::Request req;
    req.method = "POST";
    req.target = "/hooks/sentry";
    req.headers = {{"content-type", "application/json"},
                   {"sentry-hook-resource", "issue"},
                   {"sentry-hook-signature", crypto::HexLower(mac)},
                   {"sentry-hook-timestamp", timestamp},
                   {"request-id", "r-" + std::to_string(++requests_)}};
    req.body = kBody;
    std::promise<int> status;
    handler_->Handle(std::move(req), [&status](http::Response r) { status.set_value(r.status); });
    return status.get_future().get();
  }

  switchyard::testing::TempDir dir_;
  FakeClock clock_{1700000000000};
  metrics::Metrics metrics_;
  std::atomic<bool> stopping_{false};
  std::unique_ptr<config::ConfigHolder> holder_;
  std::unique_ptr<storage::Store> store_;
  std::unique_ptr<HookHandler> handler_;
  int requests_ = 0;
};

// Sentry sends int(time()): whole seconds, up to 999 ms behind the moment it signed. That part
// of a second used to count as skew, so with `max_clock_skew: 500ms` about half of all genuine
// webhooks got 401, and Sentry never retries a 4xx.
TEST_F(HookHandlerTest, MaxClockSkewAllowsForTheTimestampBeingWholeSeconds) {
  Start("    max_clock_skew: 500ms\n");
  clock_.Advance(milliseconds(900));  // now = 1700000000.900 s
  EXPECT_EQ(Post("1700000000"), 202) << "signed 0.9 s ago at most: no skew at all";
  EXPECT_EQ(Post("1700000001"), 202) << "0.1 s ahead, within 500 ms";
  EXPECT_EQ(Post("1699999999"), 401) << "1.9 s ago at least: over 500 ms";
  EXPECT_EQ(Post("1700000002"), 401) << "1.1 s ahead: over 500 ms";
}

size_t CountLines(const std::string& text, const std::string& needle) {
  size_t n = 0;
  for (size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) ++n;
  return n;
}

// Rejections are unauthenticated: one info line each let any client fill the disk with logs
// (~3 MB/s at the listener's rate). The counter still counts each one.
TEST_F(HookHandlerTest, RejectionsAreLoggedTenAMinuteAndTheRestAreCountedThenSummarised) {
  Start("    max_clock_skew: 1s\n");
  testing::CapturedStderr captured;
  const std::string stale = std::to_string(clock_.NowMillis() / 1000 - 3600);
  for (int i = 0; i < 100; ++i) ASSERT_EQ(Post(stale), 401);
  std::string log = captured.Read();
  EXPECT_EQ(CountLines(log, "msg=\"webhook rejected\""), 10u) << log;
  EXPECT_EQ(CountLines(log, "not logged"), 0u);
  EXPECT_NE(metrics_.Serialize().find(
                "switchyard_webhooks_rejected_total{reason=\"timestamp\",source=\"sentry\"} 100"),
            std::string::npos);

  clock_.Advance(std::chrono::minutes(1));
  ASSERT_EQ(Post(std::to_string(clock_.NowMillis() / 1000 - 3600)), 401);
  log = captured.Read();
  EXPECT_EQ(CountLines(log, "msg=\"webhook rejected\""), 11u) << log;
  EXPECT_EQ(CountLines(log, "msg=\"webhook rejections not logged\""), 1u) << log;
  EXPECT_NE(log.find("count=90"), std::string::npos) << log;
}

// Answers OrgOf for every installation with one organization.
class OneOrgInstaller : public Installer {
 public:
  explicit OneOrgInstaller(std::string org) : org_(std::move(org)) {}
  void Setup(const std::string&, const std::string&, const std::string&, const std::string&,
             std::function<void(Status)> done) override {
    done(Unavailable("not in this test"));
  }
  void OnInstallationEvent(InstallationEvent) override {}
  std::string OrgOf(const std::string&, const std::string&) const override { return org_; }

 private:
  std::string org_;
};

// `org` names the organization of an internal integration (a source with `token`). On a public
// app's source it was taken for every installation's organization, so globex's events went to
// acme's route.
TEST_F(HookHandlerTest, APublicAppsInstallationOrgIsTheInstallersNotTheSourcesOrg) {
  OneOrgInstaller installer("globex");
  Start("    org: acme\n",
        "sinks:\n"
        "  acme-file: {type: file, path: " +
            dir_.File("acme.jsonl") +
            "}\n"
            "  globex-file: {type: file, path: " +
            dir_.File("globex.jsonl") +
            "}\n"
            "routes:\n"
            "  - {name: acme, match: ['$installation.org = \"acme\"'], to: [{sink: acme-file}]}\n"
            "  - {name: globex, match: ['$installation.org = \"globex\"'], to: [{sink: "
            "globex-file}]}\n",
        &installer);
  EXPECT_EQ(Post(std::to_string(clock_.NowMillis() / 1000)), 202);
  storage::QueueCounts counts = store_->Counts();
  EXPECT_EQ(counts.sinks["globex-file"].pending, 1u);
  EXPECT_EQ(counts.sinks["acme-file"].pending, 0u);
}

}  // namespace
}  // namespace switchyard::ingest
