// InstallationManager with an injected clock, an in-memory TokenStore and an in-process Sentry
// token endpoint: refresh scheduling (spread, never later than refresh_before), persistence
// before use, and single-flight refreshes. The end-to-end behaviour against a fake Sentry over
// real sockets is in tests/e2e/sentry_integration_test.cc.
#include "sentry/installations.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <boost/json.hpp>
#include <cstdio>
#include <deque>
#include <fstream>
#include <functional>
#include <future>
#include <map>
#include <mutex>
#include <optional>
#include <thread>

#include "common/clock.h"
#include "common/time_format.h"
#include "config/config_holder.h"
#include "metrics/metrics.h"
#include "sentry/issue_enricher.h"

namespace switchyard::sentry {
namespace {

using std::chrono::hours;
using std::chrono::milliseconds;
using std::chrono::minutes;
using std::chrono::seconds;

// Records every Put; can be told to fail.
class MemoryTokenStore : public TokenStore {
 public:
  Status Put(const Installation& in) override {
    std::lock_guard lock(mu);
    if (full) {
      events.push_back("refused " + in.access_token);
      return Unavailable("storage nearly full");
    }
    events.push_back("put " + in.access_token);
    rows[in.source + "/" + in.uuid] = in;
    ++puts;
    return Status::Ok();
  }
  Status Delete(std::string_view source, std::string_view uuid) override {
    std::lock_guard lock(mu);
    rows.erase(std::string(source) + "/" + std::string(uuid));
    return Status::Ok();
  }
  Result<std::vector<Installation>> LoadAll() override {
    std::lock_guard lock(mu);
    std::vector<Installation> out;
    for (auto& [k, v] : rows) out.push_back(v);
    return out;
  }
  std::mutex mu;
  std::map<std::string, Installation> rows;
  std::vector<std::string> events;  // shared with the Sentry stub: "put X", "GET Bearer X"
  std::atomic<int> puts{0};
  bool full = false;  // GUARDED_BY(mu): Put fails as on a disk at its free-space floor
};

// Waits until no refresh is in flight. Busy() walks every installation under the manager's
// lock: polled back to back, it kept the pool thread that completes refreshes from that lock
// (10,000 installations took minutes instead of seconds), so each poll is 20 µs apart.
void WaitIdle(const InstallationManager& manager) {
  while (manager.Busy() > 0) std::this_thread::sleep_for(std::chrono::microseconds(20));
}

// Waits (yielding) until `done` holds; false after 10 s.
bool WaitUntil(const std::function<bool()>& done) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::yield();
  }
  return true;
}

// Answers token requests like Sentry (new pair, expiresAt = now + lifetime) and issue GETs with
// 200 for the current token, 401 otherwise. Synchronous. Records when each refresh arrived.
class SentryStub : public httpclient::HttpClient {
 public:
  SentryStub(Clock& clock, MemoryTokenStore& store) : clock_(clock), store_(store) {}
  void Send(httpclient::ClientRequest req, httpclient::ClientCallback done) override {
    httpclient::ClientResponse r;
    {
      std::lock_guard lock(mu);
      if (req.url.find("/authorizations/") != std::string::npos) {
        auto body = boost::json::parse(req.body).as_object();
        if (body["grant_type"].as_string() == "refresh_token") {
          refresh_times.push_back(clock_.NowMillis());
          refresh_uuids.push_back(req.url);
          if (!refresh_failures.empty()) {  // answered 429 with this Retry-After
            r.status = 429;
            r.headers.emplace_back("retry-after", refresh_failures.front());
            r.body = R"({"detail":"Request was throttled."})";
            refresh_failures.pop_front();
            done(std::move(r));
            return;
          }
        }
        current = "tok" + std::to_string(++counter);
        boost::json::object o;
        o["token"] = current;
        o["refreshToken"] = "ref" + std::to_string(counter);
        o["expiresAt"] = expires_at.empty()
                             ? FormatRfc3339Millis(clock_.NowMillis() + 8 * 3600 * 1000)
                             : expires_at;
        r.status = 201;
        r.body = boost::json::serialize(o);
      } else {
        std::string auth;
        for (auto& [k, v] : req.headers) {
          if (k == "Authorization") auth = v;
        }
        {
          std::lock_guard slock(store_.mu);
          store_.events.push_back("GET " + auth);
        }
        r.status = auth == "Bearer " + current ? 200 : 401;
        r.body = r.status == 200 ? R"({"id":"1"})" : R"({"detail":"Token expired"})";
        if (r.status == 200 && api_status != 0) {  // Sentry's API failing
          r.status = api_status;
          r.body = R"({"detail":"Internal Error"})";
        }
      }
    }
    done(std::move(r));
  }
  void Shutdown() override {}

  std::mutex mu;
  std::vector<int64_t> refresh_times;
  std::vector<std::string> refresh_uuids;
  std::deque<std::string> refresh_failures;  // Retry-After values of the next refreshes' 429s
  std::string expires_at;  // the expiresAt of every new pair, when set (else 8 h from now)
  std::string current = "initial";
  int counter = 0;
  int api_status = 0;  // when set, API GETs with the current token get this status

 private:
  Clock& clock_;
  MemoryTokenStore& store_;
};

std::shared_ptr<const config::Config> ConfigWith(std::chrono::milliseconds refresh_before) {
  auto cfg = std::make_shared<config::Config>();
  config::SourceConfig s;
  s.name = "sentry";
  s.client_id = "id";
  s.client_secret = "secret";
  s.api_url = "http://sentry.invalid";
  s.refresh_before = refresh_before;
  cfg->sources.push_back(s);
  return cfg;
}

long RssKiB() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
  }
  return 0;
}

// One installed app whose pair (`access_token`, "r0") expires 8 h from the clock's now.
Installation Installed(Clock& clock, std::string access_token) {
  Installation in;
  in.source = "sentry";
  in.uuid = "a8e5d37a-696c-4c54-adb5-b3f28d64c7de";
  in.org = "test-org";
  in.access_token = std::move(access_token);
  in.refresh_token = "r0";
  in.expires_at_ms = clock.NowMillis() + 8 * 3600 * 1000;
  in.status = InstallStatus::kInstalled;
  return in;
}

// One installed app (stored at the clock's now, its pair expiring 8 h later) and a started
// InstallationManager over it, with the Sentry stub.
struct OneInstalledApp {
  OneInstalledApp(std::chrono::milliseconds refresh_before, ManagerOptions options)
      : in(Installed(clock, "initial")), sentry(clock, store), holder(ConfigWith(refresh_before)) {
    in.updated_at_ms = clock.NowMillis();
    store.rows["sentry/" + in.uuid] = in;
    manager.emplace(holder, store, sentry, metrics, clock, options);
    EXPECT_TRUE(manager->Start(nullptr).ok());
  }
  ~OneInstalledApp() { manager->Stop(); }

  // `rounds` refresher rounds `step` apart: each refreshes what is due and waits until idle.
  void RunRounds(int rounds, std::chrono::milliseconds step) {
    for (int i = 0; i < rounds; ++i) {
      manager->RefreshDue();
      WaitIdle(*manager);
      clock.Advance(step);
    }
  }

  FakeClock clock;
  MemoryTokenStore store;
  Installation in;
  SentryStub sentry;
  config::ConfigHolder holder;
  metrics::Metrics metrics;
  std::optional<InstallationManager> manager;
};

TEST(RefresherTest, TenThousandInstallationsRefreshSpreadOutAndNeverLate) {
  constexpr int kInstallations = 10000;
  FakeClock clock;
  const int64_t t0 = clock.NowMillis();
  const int64_t expiry = t0 + 8 * 3600 * 1000;  // all installed in the same second
  MemoryTokenStore store;
  for (int i = 0; i < kInstallations; ++i) {
    Installation in;
    in.source = "sentry";
    char uuid[40];
    snprintf(uuid, sizeof uuid, "%08x-0000-4000-8000-%012d", i * 2654435761u, i);
    in.uuid = uuid;
    in.org = std::string("org").append(std::to_string(i));  // append: GCC 12 -Wrestrict
    in.access_token = "initial";
    in.refresh_token = std::string("r").append(std::to_string(i));
    in.expires_at_ms = expiry;
    in.status = InstallStatus::kInstalled;
    store.rows[in.source + "/" + in.uuid] = in;
  }
  SentryStub sentry(clock, store);
  config::ConfigHolder holder(ConfigWith(hours(1)));
  metrics::Metrics metrics;
  const long rss_before = RssKiB();
  InstallationManager manager(holder, store, sentry, metrics, clock,
                              {.max_concurrent_refreshes = 16, .max_sleep = milliseconds(5)});
  ASSERT_TRUE(manager.Start(nullptr).ok());
  const long rss_loaded = RssKiB();
  // Walk the clock second by second from 6 h to 8 h after installation.
  clock.Advance(hours(6));
  for (int s = 0; s < 2 * 3600; ++s) {
    clock.Advance(seconds(1));
    manager.RefreshDue();
    // Let this second's refreshes complete (they persist on the manager's pool thread).
    WaitIdle(manager);
  }
  std::lock_guard lock(sentry.mu);
  ASSERT_EQ(sentry.refresh_times.size(), static_cast<size_t>(kInstallations));
  std::map<int64_t, int> per_second;
  const int64_t latest_allowed = expiry - 3600 * 1000;  // refresh_before: 1 h
  const int64_t earliest_expected = expiry - 3600 * 1000 - 1800 * 1000;
  for (int64_t t : sentry.refresh_times) {
    EXPECT_LE(t, latest_allowed + 1000);  // never later than refresh_before asks (1 s steps)
    EXPECT_GE(t, earliest_expected);      // spreading moves a refresh at most refresh_before/2
    ++per_second[t / 1000];
  }
  int busiest = 0;
  for (auto& [sec, n] : per_second) busiest = std::max(busiest, n);
  // 10,000 over a 30-minute window is ~5.6 a second; a herd would put them in one second.
  EXPECT_LE(busiest, 25);
  EXPECT_GE(per_second.size(), 1500u);
  RecordProperty("busiest_second", busiest);
  RecordProperty("seconds_with_refreshes", static_cast<int>(per_second.size()));
  RecordProperty("rss_kib_for_10k", static_cast<int>(rss_loaded - rss_before));
  std::printf("refresher: 10000 installations, %zu distinct seconds, busiest second %d, "
              "RSS +%ld KiB after loading\n",
              per_second.size(), busiest, rss_loaded - rss_before);
  manager.Stop();
}

TEST(RefresherTest, ARefreshBeforeLongerThanTheTokensLifeRefreshesAtHalfLifeNotInALoop) {
  // refresh_before longer than the 8 h a pair lives.
  OneInstalledApp app(hours(9), {.max_sleep = milliseconds(5)});
  const int64_t t0 = app.clock.NowMillis();
  app.RunRounds(10 * 60, minutes(1));  // 10 hours, a minute at a time
  std::lock_guard lock(app.sentry.mu);
  // Every 4 h (half of each new pair's 8 h): at 4 h and 8 h, not once a minute.
  ASSERT_EQ(app.sentry.refresh_times.size(), 2u);
  EXPECT_EQ(app.sentry.refresh_times[0] - t0, 4 * 3600 * 1000);
  EXPECT_EQ(app.sentry.refresh_times[1] - t0, 8 * 3600 * 1000);
}

TEST(RefresherTest, ANewPairIsPersistedBeforeTheRetriedCallUsesIt) {
  FakeClock clock;
  MemoryTokenStore store;
  Installation in = Installed(clock, "stale");
  store.rows["sentry/" + in.uuid] = in;
  SentryStub sentry(clock, store);
  config::ConfigHolder holder(ConfigWith(hours(1)));
  metrics::Metrics metrics;
  InstallationManager manager(holder, store, sentry, metrics, clock);
  ASSERT_TRUE(manager.Start(nullptr).ok());
  std::promise<Result<std::string>> got;
  manager.ApiGet("sentry", in.uuid, "/api/0/organizations/{org}/issues/1/", "issue",
                 [&got](Result<std::string> r, std::optional<milliseconds>) {
                   got.set_value(std::move(r));
                 });
  auto result = got.get_future().get();
  ASSERT_TRUE(result.ok()) << result.status().ToString();
  std::lock_guard lock(store.mu);
  ASSERT_EQ(store.events.size(), 3u);
  EXPECT_EQ(store.events[0], "GET Bearer stale");
  EXPECT_EQ(store.events[1], "put tok1");  // persisted ...
  EXPECT_EQ(store.events[2], "GET Bearer tok1");  // ... before it is used
  manager.Stop();
}

TEST(RefresherTest, APairTheStoreRefusedIsWrittenAgainByALaterRound) {
  FakeClock clock;
  MemoryTokenStore store;
  Installation in = Installed(clock, "initial");
  in.updated_at_ms = clock.NowMillis();
  store.rows["sentry/" + in.uuid] = in;
  SentryStub sentry(clock, store);
  config::ConfigHolder holder(ConfigWith(hours(1)));
  metrics::Metrics metrics;
  InstallationManager manager(holder, store, sentry, metrics, clock,
                              {.max_sleep = milliseconds(5)});
  ASSERT_TRUE(manager.Start(nullptr).ok());
  {
    std::lock_guard lock(store.mu);
    store.full = true;  // Sentry rotates the pair while the disk refuses writes
  }
  clock.Advance(hours(7));
  manager.RefreshDue();
  ASSERT_TRUE(WaitUntil([&] {
    std::lock_guard lock(store.mu);
    return !store.events.empty();
  }));
  ASSERT_TRUE(WaitUntil([&] { return manager.Busy() == 0; }));
  {
    std::lock_guard lock(store.mu);
    EXPECT_EQ(store.events.at(0), "refused tok1");
    EXPECT_EQ(store.rows["sentry/" + in.uuid].access_token, "initial");
    store.full = false;  // space is back
  }
  // The refresher's next rounds store the pair Sentry issued (the stored one is dead).
  ASSERT_TRUE(WaitUntil([&] {
    manager.RefreshDue();
    std::lock_guard lock(store.mu);
    return store.rows["sentry/" + in.uuid].access_token == "tok1";
  }));
  EXPECT_EQ(store.rows["sentry/" + in.uuid].refresh_token, "ref1");
  std::lock_guard lock(sentry.mu);
  EXPECT_EQ(sentry.refresh_times.size(), 1u);  // no second refresh was needed
  manager.Stop();
}

// Sentry's Retry-After is honoured up to retry_max (5 min), as a sink's is up to max_delay: a
// value of years (or one past int64, which overflowed `now + wait` before) must not stop the
// installation's refreshes.
TEST(RefresherTest, ARetryAfterOfYearsOnARefreshIsCappedAtRetryMax) {
  OneInstalledApp app(hours(1), {.retry_max = minutes(5), .max_sleep = milliseconds(5)});
  {
    std::lock_guard lock(app.sentry.mu);
    app.sentry.refresh_failures = {"99999999999999999999", "31536000000",
                                   "Fri, 31 Dec 9999 23:59:59 GMT"};
  }
  app.clock.Advance(hours(7));  // past the refresh time
  const int64_t t0 = app.clock.NowMillis();
  app.RunRounds(20 * 60, seconds(1));  // 20 minutes, a second at a time
  std::lock_guard lock(app.sentry.mu);
  // Three 429s, each followed by a retry after exactly retry_max; the fourth refresh succeeds.
  ASSERT_EQ(app.sentry.refresh_times.size(), 4u);
  EXPECT_EQ(app.sentry.refresh_times[0], t0);
  for (size_t i = 1; i < 4; ++i) {
    EXPECT_EQ(app.sentry.refresh_times[i] - app.sentry.refresh_times[i - 1], 5 * 60 * 1000) << i;
  }
  std::lock_guard store_lock(app.store.mu);
  EXPECT_EQ(app.store.rows["sentry/" + app.in.uuid].access_token, "tok1");
}

// Sentry should never issue a pair that has already expired, but if it does (here: an expiresAt
// in 1969, and one an hour ago), the refresher neither stops refreshing that installation (a
// time before 1970 was a negative due time, read as "not scheduled") nor refreshes it in a loop
// (a due time in the past, every round): it refreshes retry_max after storing the pair.
TEST(RefresherTest, APairIssuedAlreadyExpiredIsRefreshedAfterRetryMaxNotInALoopOrNever) {
  for (const std::string expires_at : {"1969-12-31T00:00:00.000Z", "past"}) {
    SCOPED_TRACE(expires_at);
    OneInstalledApp app(hours(1), {.retry_max = minutes(5), .max_sleep = milliseconds(5)});
    app.clock.Advance(hours(7));  // past the refresh time
    const int64_t t0 = app.clock.NowMillis();
    {
      std::lock_guard lock(app.sentry.mu);
      app.sentry.expires_at =
          expires_at == "past" ? FormatRfc3339Millis(t0 - 3600 * 1000) : expires_at;
    }
    app.RunRounds(12 * 60, seconds(1));  // 12 minutes, a second at a time
    std::lock_guard lock(app.sentry.mu);
    ASSERT_EQ(app.sentry.refresh_times.size(), 3u);
    EXPECT_EQ(app.sentry.refresh_times[0], t0);
    EXPECT_EQ(app.sentry.refresh_times[1], t0 + 5 * 60 * 1000);
    EXPECT_EQ(app.sentry.refresh_times[2], t0 + 10 * 60 * 1000);
  }
}

// `enrich: [issue]` keeps a fetched issue for its ttl on the steady clock: a wall clock stepped
// back an hour (NTP, a resumed VM) must not keep serving an hour-old copy.
TEST(IssueEnricherTest, ACachedIssueExpiresAfterItsTtlEvenWhenTheWallClockStepsBack) {
  OneInstalledApp app(hours(1), {.max_sleep = milliseconds(5)});
  IssueEnricher enricher(*app.manager, app.metrics, app.clock, {.ttl = seconds(10)});
  storage::StoredEvent event;
  event.source = "sentry";
  event.installation_uuid = app.in.uuid;
  event.body = R"({"action":"created","data":{"issue":{"id":"42"}}})";
  auto fetch = [&] {
    std::promise<Result<std::string>> got;
    enricher.FetchIssue(event, "route", [&got](Result<std::string> r, std::optional<milliseconds>) {
      got.set_value(std::move(r));
    });
    auto r = got.get_future().get();
    EXPECT_TRUE(r.ok()) << r.status().ToString();
  };
  auto gets = [&] {
    std::lock_guard lock(app.store.mu);
    return std::count_if(app.store.events.begin(), app.store.events.end(),
                         [](const std::string& e) { return e.rfind("GET ", 0) == 0; });
  };
  fetch();
  ASSERT_EQ(gets(), 1);
  app.clock.Advance(seconds(9));
  fetch();
  EXPECT_EQ(gets(), 1) << "within its ttl the issue comes from the cache";
  app.clock.StepWall(-hours(1));
  app.clock.Advance(seconds(2));
  fetch();
  EXPECT_EQ(gets(), 2) << "11 s after the fetch the copy is stale, whatever the wall clock says";
}

// While Sentry's API fails, fetches for the installation fail fast for a backoff (1 s, then 2 s,
// ...) instead of each due delivery calling it; a success ends the backoff.
TEST(IssueEnricherTest, AfterAnApiFailureFetchesFailFastForABackoffWithoutCallingSentry) {
  OneInstalledApp app(hours(1), {.max_sleep = milliseconds(5)});
  IssueEnricher enricher(*app.manager, app.metrics, app.clock);
  auto fetch = [&](int issue) {
    storage::StoredEvent event;
    event.source = "sentry";
    event.installation_uuid = app.in.uuid;
    event.body = R"({"data":{"issue":{"id":")" + std::to_string(issue) + R"("}}})";
    std::promise<std::pair<Result<std::string>, std::optional<milliseconds>>> got;
    enricher.FetchIssue(event, "route",
                        [&got](Result<std::string> r, std::optional<milliseconds> ra) {
                          got.set_value({std::move(r), ra});
                        });
    return got.get_future().get();
  };
  auto gets = [&] {
    std::lock_guard lock(app.store.mu);
    return std::count_if(app.store.events.begin(), app.store.events.end(),
                         [](const std::string& e) { return e.rfind("GET ", 0) == 0; });
  };
  {
    std::lock_guard lock(app.sentry.mu);
    app.sentry.api_status = 502;
  }
  EXPECT_FALSE(fetch(1).first.ok());
  ASSERT_EQ(gets(), 1);
  auto fast = fetch(2);  // another issue of the same installation, at once
  EXPECT_FALSE(fast.first.ok());
  EXPECT_EQ(gets(), 1) << "failed fast, without a call";
  ASSERT_TRUE(fast.second);
  EXPECT_EQ(*fast.second, seconds(1)) << "the dispatcher retries it when the backoff ends";
  app.clock.Advance(seconds(1));
  EXPECT_FALSE(fetch(3).first.ok());
  EXPECT_EQ(gets(), 2);
  app.clock.Advance(seconds(1));
  EXPECT_FALSE(fetch(4).first.ok());
  EXPECT_EQ(gets(), 2) << "the second failure's backoff is 2 s";
  app.clock.Advance(seconds(1));
  {
    std::lock_guard lock(app.sentry.mu);
    app.sentry.api_status = 0;
  }
  EXPECT_TRUE(fetch(5).first.ok());
  EXPECT_EQ(gets(), 3);
  EXPECT_TRUE(fetch(6).first.ok());
  EXPECT_EQ(gets(), 4) << "a success ends the backoff";
}

}  // namespace
}  // namespace switchyard::sentry
