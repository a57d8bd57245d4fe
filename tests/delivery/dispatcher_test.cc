// Dispatcher: a real store in a temp dir, a FakeClock, scriptable fake sinks. Time-dependent
// behaviour (backoff, breaker cool-down, rate) moves with the FakeClock; the tests wait for
// conditions with a deadline instead of sleeping for a fixed time. Checks that something does
// NOT happen give the dispatcher a few poll intervals (Settle) to do it wrongly.
#include "delivery/dispatcher.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "common/clock.h"
#include "config/config.h"
#include "config/config_holder.h"
#include "metrics/metrics.h"
#include "sinks/sink.h"
#include "storage/event_store.h"
#include "support/captured_stderr.h"
#include "support/metrics_text.h"
#include "support/temp_dir.h"

namespace switchyard::delivery {
namespace {

using std::chrono::hours;
using std::chrono::milliseconds;
using std::chrono::minutes;
using std::chrono::seconds;
using ::testing::HasSubstr;
using Kind = sinks::Outcome::Kind;

std::string ReadPayload(const std::string& name) {
  return switchyard::testing::ReadFile(std::string(SWITCHYARD_PAYLOADS_DIR) + "/" + name);
}

sinks::Outcome Success() { return {}; }
sinks::Outcome Retry(std::string error = "HTTP 503",
                     std::optional<milliseconds> retry_after = std::nullopt) {
  sinks::Outcome o;
  o.kind = Kind::kRetry;
  o.error = std::move(error);
  o.http_status = 503;
  o.retry_after = retry_after;
  return o;
}
sinks::Outcome Permanent(std::string error = "HTTP 400") {
  sinks::Outcome o;
  o.kind = Kind::kPermanent;
  o.error = std::move(error);
  o.http_status = 400;
  return o;
}

// Waits until `pred` holds (checking every millisecond), at most `timeout`.
template <typename Pred>
bool Eventually(Pred pred, milliseconds timeout = seconds(10)) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!pred()) {
    if (std::chrono::steady_clock::now() > deadline) return pred();
    std::this_thread::sleep_for(milliseconds(1));
  }
  return true;
}

constexpr milliseconds kPoll{10};
// Long enough for several dispatcher rounds: for checks that something does not happen.
void Settle() { std::this_thread::sleep_for(kPoll * 8); }

// A sink that records every delivery and answers with scripted outcomes (then the default).
// Modes: kImmediate calls `done` inside Deliver; kHold keeps the calls until the test releases
// them; kAsync completes each call on its own thread after a short random pause.
class FakeSink {
 public:
  enum class Mode { kImmediate, kHold, kAsync };

  ~FakeSink() { JoinThreads(); }

  void SetMode(Mode m) {
    std::lock_guard lock(mu_);
    mode_ = m;
  }
  void SetDefault(sinks::Outcome o) {
    std::lock_guard lock(mu_);
    default_ = std::move(o);
  }
  void Script(std::vector<sinks::Outcome> outcomes) {
    std::lock_guard lock(mu_);
    for (auto& o : outcomes) script_.push_back(std::move(o));
  }
  void SetActive(bool active) {
    std::lock_guard lock(mu_);
    active_ = active;
  }
  // While held, closing or reopening this sink (its proxy's destructor, Reopen) waits, as a
  // file sink's does behind an fdatasync that hangs.
  void HoldTeardown(bool hold) {
    std::lock_guard lock(mu_);
    teardown_held_ = hold;
    cv_.notify_all();
  }
  void Teardown() {
    std::unique_lock lock(mu_);
    ++teardowns_;
    cv_.notify_all();
    cv_.wait(lock, [this] { return !teardown_held_; });
  }
  int teardowns() const {
    std::lock_guard lock(mu_);
    return teardowns_;
  }
  bool active() const {
    std::lock_guard lock(mu_);
    return active_;
  }

  // While blocked, Deliver waits on the dispatcher's thread until unblocked: a wedged
  // dispatcher (no real sink may block it).
  void Block(bool block) {
    std::lock_guard lock(mu_);
    blocked_ = block;
    cv_.notify_all();
  }
  int blocked_calls() const {
    std::lock_guard lock(mu_);
    return blocked_calls_;
  }

  void Deliver(const sinks::Delivery& d, sinks::DeliverCallback done) {
    std::unique_lock lock(mu_);
    if (blocked_) {
      ++blocked_calls_;
      cv_.wait(lock, [this] { return !blocked_; });
    }
    deliveries_.push_back(d);
    ++in_flight_;
    max_in_flight_ = std::max(max_in_flight_, in_flight_);
    sinks::Outcome o = default_;
    if (!script_.empty()) {
      o = std::move(script_.front());
      script_.pop_front();
    }
    switch (mode_) {
      case Mode::kImmediate:
        --in_flight_;
        lock.unlock();
        done(std::move(o));
        return;
      case Mode::kHold:
        held_.push_back({std::move(o), std::move(done)});
        return;
      case Mode::kAsync: {
        int pause_us = 200 + static_cast<int>(deliveries_.size() % 7) * 300;
        threads_.emplace_back([this, o = std::move(o), done = std::move(done), pause_us]() mutable {
          std::this_thread::sleep_for(std::chrono::microseconds(pause_us));
          {
            std::lock_guard inner(mu_);
            --in_flight_;
          }
          done(std::move(o));
        });
        return;
      }
    }
  }

  // Completes the oldest held call with its scripted outcome, or `override` when given.
  bool ReleaseOne(std::optional<sinks::Outcome> override = std::nullopt) {
    Held h;
    {
      std::lock_guard lock(mu_);
      if (held_.empty()) return false;
      h = std::move(held_.front());
      held_.pop_front();
      --in_flight_;
    }
    h.done(override ? std::move(*override) : std::move(h.outcome));
    return true;
  }
  void ReleaseAll(std::optional<sinks::Outcome> override = std::nullopt) {
    while (ReleaseOne(override)) {
    }
  }

  void JoinThreads() {
    std::vector<std::thread> threads;
    {
      std::lock_guard lock(mu_);
      threads.swap(threads_);
    }
    for (auto& t : threads) t.join();
  }

  size_t calls() const {
    std::lock_guard lock(mu_);
    return deliveries_.size();
  }
  size_t held() const {
    std::lock_guard lock(mu_);
    return held_.size();
  }
  size_t max_in_flight() const {
    std::lock_guard lock(mu_);
    return max_in_flight_;
  }
  std::vector<sinks::Delivery> deliveries() const {
    std::lock_guard lock(mu_);
    return deliveries_;
  }
  sinks::Delivery last() const {
    std::lock_guard lock(mu_);
    return deliveries_.empty() ? sinks::Delivery{} : deliveries_.back();
  }

 private:
  struct Held {
    sinks::Outcome outcome;
    sinks::DeliverCallback done;
  };
  mutable std::mutex mu_;
  Mode mode_ = Mode::kImmediate;
  bool active_ = true;
  sinks::Outcome default_;
  std::deque<sinks::Outcome> script_;
  std::vector<sinks::Delivery> deliveries_;
  std::deque<Held> held_;
  size_t in_flight_ = 0;
  size_t max_in_flight_ = 0;
  std::vector<std::thread> threads_;
  std::condition_variable cv_;
  bool teardown_held_ = false;
  int teardowns_ = 0;
  bool blocked_ = false;
  int blocked_calls_ = 0;
};

// What the dispatcher owns: forwards to the test's FakeSink (which outlives reloads).
class SinkProxy : public sinks::Sink {
 public:
  explicit SinkProxy(std::shared_ptr<FakeSink> fake) : fake_(std::move(fake)) {}
  ~SinkProxy() override { fake_->Teardown(); }
  void Reopen() override { fake_->Teardown(); }
  void Deliver(const sinks::Delivery& d, sinks::DeliverCallback done) override {
    fake_->Deliver(d, std::move(done));
  }
  bool active() const override { return fake_->active(); }

 private:
  std::shared_ptr<FakeSink> fake_;
};

// Answers FetchIssue on its own thread with a fixed result; after Hold(), only once released.
class FakeEnricher : public Enricher {
 public:
  explicit FakeEnricher(Result<std::string> answer) : answer_(std::move(answer)) {}
  ~FakeEnricher() override {
    Release();
    Join();
  }
  void FetchIssue(const storage::StoredEvent& event, const std::string& route,
                  IssueCallback done) override {
    std::lock_guard lock(mu_);
    ++calls_;
    last_event_id_ = event.id;
    last_route_ = route;
    threads_.emplace_back([this, answer = answer_, done = std::move(done)]() mutable {
      {
        std::unique_lock lock(mu_);
        released_cv_.wait(lock, [this] { return !held_; });
      }
      done(answer, std::nullopt);
    });
  }
  void Hold() {
    std::lock_guard lock(mu_);
    held_ = true;
  }
  void Release() {
    {
      std::lock_guard lock(mu_);
      held_ = false;
    }
    released_cv_.notify_all();
  }
  void Join() {
    std::vector<std::thread> threads;
    {
      std::lock_guard lock(mu_);
      threads.swap(threads_);
    }
    for (auto& t : threads) t.join();
  }
  int calls() const {
    std::lock_guard lock(mu_);
    return calls_;
  }
  std::string last_route() const {
    std::lock_guard lock(mu_);
    return last_route_;
  }

 private:
  Result<std::string> answer_;
  mutable std::mutex mu_;
  std::condition_variable released_cv_;
  bool held_ = false;
  int calls_ = 0;
  std::string last_event_id_, last_route_;
  std::vector<std::thread> threads_;
};

constexpr char kSources[] = "sources:\n  sentry: {type: sentry}\n";

class DispatcherTest : public ::testing::Test {
 protected:
  void SetUp() override {
    storage::StoreOptions o;
    o.path = dir_.path() + "/store";
    o.sync = false;
    o.min_free_bytes = 0;
    o.dedupe_window = milliseconds(0);  // tests append identical payloads
    auto s = storage::OpenStore(o, clock_);
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    store_ = std::move(s).value();
  }

  void TearDown() override {
    // Nothing may still hold a completion callback once the dispatcher is gone. (A copy: the
    // dispatcher's factory may still add to fakes_ until it stops.)
    std::map<std::string, std::shared_ptr<FakeSink>> fakes;
    {
      std::lock_guard lock(factory_mu_);
      fakes = fakes_;
    }
    for (auto& [name, fake] : fakes) {
      fake->SetMode(FakeSink::Mode::kImmediate);
      fake->SetDefault(Success());
      fake->ReleaseAll();
    }
    if (dispatcher_) dispatcher_->Stop(seconds(5));
    for (auto& [name, fake] : fakes_) fake->JoinThreads();
    if (enricher_) enricher_->Join();
    dispatcher_.reset();
    if (store_) store_->Close();
  }

  static DispatcherOptions Options() {
    DispatcherOptions o;
    o.poll = kPoll;
    o.breaker_failures = 5;
    o.breaker_cooldown = seconds(10);
    o.breaker_max_cooldown = minutes(5);
    o.jitter_source = [] { return 0.5; };  // factor 1: no jitter
    return o;
  }

  static std::shared_ptr<const config::Config> Parse(const std::string& yaml) {
    config::LoadResult r = config::LoadConfigFromString(kSources + yaml, "routes.yaml");
    std::string errors;
    for (const auto& e : r.errors) errors += e.ToString() + "\n";
    EXPECT_TRUE(r.errors.empty()) << errors;
    return r.config;
  }

  // Any thread: the dispatcher's factory (a reload) may look a sink up at the same time.
  FakeSink& Fake(const std::string& name) {
    std::lock_guard lock(factory_mu_);
    auto& f = fakes_[name];
    if (!f) f = std::make_shared<FakeSink>();
    return *f;
  }

  void Start(const std::string& yaml, DispatcherOptions options = Options()) {
    auto cfg = Parse(yaml);
    ASSERT_TRUE(cfg);
    holder_ = std::make_unique<config::ConfigHolder>(cfg);
    auto factory = [this](const config::SinkConfig& sc) -> Result<std::unique_ptr<sinks::Sink>> {
      if (sc.name == "unbuildable") return Unavailable("this sink cannot be built");
      std::lock_guard lock(factory_mu_);
      auto& f = fakes_[sc.name];
      if (!f) f = std::make_shared<FakeSink>();
      return std::unique_ptr<sinks::Sink>(std::make_unique<SinkProxy>(f));
    };
    dispatcher_ = std::make_unique<Dispatcher>(*holder_, *store_, factory, enricher_.get(),
                                               metrics_, clock_, std::move(options));
    Status s = dispatcher_->Start();
    ASSERT_TRUE(s.ok()) << s.ToString();
  }

  void Reload(const std::string& yaml) {
    auto cfg = Parse(yaml);
    ASSERT_TRUE(cfg);
    holder_->Set(cfg);
    dispatcher_->ConfigChanged();
  }

  // Stores an event with one delivery per (route, sink); returns the event id.
  std::string Add(const std::string& route, const std::string& sink, bool deferred = false,
                  const std::string& body = ReadPayload("issue.created.json"),
                  const std::string& resource = "issue") {
    storage::StoredEvent e;
    e.source = "sentry";
    e.resource = resource;
    e.action = "created";
    e.body = body;
    std::promise<Result<storage::AppendResult>> p;
    store_->Append(std::move(e), {{route, sink, deferred}},
                   [&p](Result<storage::AppendResult> r) { p.set_value(std::move(r)); });
    auto r = p.get_future().get();
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    if (dispatcher_) dispatcher_->Wake();
    return r.ok() ? r->id : "";
  }

  std::optional<storage::DeliveryRecord> Record(const std::string& id) {
    auto d = store_->GetDelivery(id);
    EXPECT_TRUE(d.ok());
    return d.ok() ? d.value() : std::nullopt;
  }

  // Waits until delivery `id` has recorded `attempts` attempts (and is still pending).
  storage::DeliveryRecord WaitAttempts(const std::string& id, uint32_t attempts) {
    std::optional<storage::DeliveryRecord> r;
    EXPECT_TRUE(Eventually([&] {
      r = Record(id);
      return r && r->attempts == attempts && !r->dead;
    })) << "delivery " << id << " never reached " << attempts << " attempts";
    return r.value_or(storage::DeliveryRecord{});
  }

  std::vector<storage::DeliveryRecord> WaitDead(size_t n) {
    std::vector<storage::DeliveryRecord> dead;
    EXPECT_TRUE(Eventually([&] {
      auto l = store_->ListDead(100);
      if (l.ok()) dead = l.value();
      return dead.size() >= n;
    })) << "expected " << n << " dead letters, have " << dead.size();
    return dead;
  }

  // The max_age tests: one route r → the http sink ops, `retry` as the retry block, and one
  // delivery added. Returns once its first attempt has started.
  void StartOneDelivery(const std::string& retry) {
    Start("sinks:\n  ops: {type: http, url: \"http://127.0.0.1:1/\"}\nretry: " + retry +
          "\nroutes:\n  - name: r\n    to: [ops]\n");
    Add("r", "ops");
    EXPECT_TRUE(WaitCalls("ops", 1));
  }

  // An hour later, still exactly `calls` attempts: nothing is retried after a dead letter.
  void ExpectNoMoreAttempts(size_t calls) {
    clock_.Advance(hours(1));
    Settle();
    EXPECT_EQ(Fake("ops").calls(), calls);
  }

  uint64_t Pending(const std::string& sink) {
    auto c = store_->Counts();
    auto it = c.sinks.find(sink);
    return it == c.sinks.end() ? 0 : it->second.pending;
  }

  bool WaitCalls(const std::string& sink, size_t n) {
    bool ok = Eventually([&] { return Fake(sink).calls() >= n; });
    EXPECT_TRUE(ok) << sink << " got " << Fake(sink).calls() << " calls, expected " << n;
    return ok;
  }
  bool WaitHeld(const std::string& sink, size_t n) {
    bool ok = Eventually([&] { return Fake(sink).held() >= n; });
    EXPECT_TRUE(ok) << sink << " holds " << Fake(sink).held() << " calls, expected " << n;
    return ok;
  }

  // Completes the one attempt held by "ops" (concurrency 1) with `o` and waits until the
  // dispatcher has recorded it, so that the clock may move on.
  void ReleaseHeld(sinks::Outcome o) {
    ASSERT_TRUE(WaitHeld("ops", 1));
    const std::string id = Fake("ops").last().id;
    auto before = Record(id);
    ASSERT_TRUE(before);
    ASSERT_TRUE(Fake("ops").ReleaseOne(std::move(o)));
    ASSERT_TRUE(Eventually([&] {
      auto r = Record(id);
      return !r || r->dead || r->attempts > before->attempts;
    }));
  }

  // Pending deliveries of `sink` that have been attempted at least once.
  size_t Attempted(const std::string& sink) {
    auto due = store_->Due(sink, INT64_MAX - 1, 100000, {});
    size_t n = 0;
    if (due.ok()) {
      for (const auto& d : *due) n += d.attempts > 0;
    }
    return n;
  }

  // Waits for `n` dead letters, moving the clock on by a second per check (housekeeping runs
  // about once a second of clock time).
  // Moves the clock on a second at a time, letting housekeeping (about once a second) run.
  void RunSecondsOfHousekeeping(int seconds_to_run) {
    for (int i = 0; i < seconds_to_run; ++i) {
      clock_.Advance(seconds(1));
      Settle();
    }
  }

  // Stops and destroys the dispatcher (what it has not recorded stays pending in the store).
  void StopDispatcher() {
    dispatcher_->Stop(seconds(5));
    dispatcher_.reset();
  }

  // Reopens the store so that it refuses every write (disk below min_free_bytes).
  void ReopenRefusingWrites() {
    store_->Close();
    storage::StoreOptions o;
    o.path = dir_.path() + "/store";
    o.sync = false;
    o.min_free_bytes = uint64_t{1} << 62;
    o.dedupe_window = milliseconds(0);
    auto s = storage::OpenStore(o, clock_);
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    store_ = std::move(s).value();
  }

  std::vector<storage::DeliveryRecord> WaitDeadAdvancing(size_t n) {
    std::vector<storage::DeliveryRecord> dead;
    EXPECT_TRUE(Eventually([&] {
      clock_.Advance(seconds(1));
      auto l = store_->ListDead(100);
      if (l.ok()) dead = l.value();
      return dead.size() >= n;
    })) << "expected " << n << " dead letters, have " << dead.size();
    return dead;
  }

  int64_t now() const { return clock_.NowMillis(); }

  switchyard::testing::TempDir dir_;
  FakeClock clock_;
  std::unique_ptr<storage::Store> store_;
  metrics::Metrics metrics_;
  std::mutex factory_mu_;
  std::map<std::string, std::shared_ptr<FakeSink>> fakes_;
  std::unique_ptr<FakeEnricher> enricher_;
  std::unique_ptr<config::ConfigHolder> holder_;
  std::unique_ptr<Dispatcher> dispatcher_;  // last: stopped and destroyed first
};

constexpr char kOps[] = R"yaml(sinks:
  ops: {type: http, url: "http://127.0.0.1:1/", concurrency: 4}
routes:
  - name: r
    to: [ops]
)yaml";

TEST_F(DispatcherTest, DeliversWithTheRoutesRenderedFieldsAndTheDefaultTitle) {
  Start(R"yaml(sinks:
  phone: {type: pushover}
  ops: {type: http, url: "http://127.0.0.1:1/"}
routes:
  - name: to-phone
    to:
      - sink: phone
        title: '{{ data.issue.title | upper }}'
        message: 'culprit {{ data.issue.culprit }} in {{ data.issue.project.slug }}'
        url_title: Issue Details
      - sink: ops
  - name: other-route
    to:
      - sink: phone
        title: 'not this one'
)yaml");
  const std::string payload = ReadPayload("issue.created.json");
  std::string event_id = Add("to-phone", "phone");
  ASSERT_TRUE(WaitCalls("phone", 1));
  sinks::Delivery d = Fake("phone").last();
  EXPECT_FALSE(d.id.empty());
  EXPECT_EQ(d.route, "to-phone");
  EXPECT_EQ(d.attempt, 1);
  ASSERT_TRUE(d.event);
  EXPECT_EQ(d.event->id, event_id);
  EXPECT_EQ(d.event->body, payload);
  EXPECT_EQ(d.event->source, "sentry");
  EXPECT_EQ(d.event->resource, "issue");
  EXPECT_EQ(d.fields["title"], "REFERENCEERROR: BLOOOPY IS NOT DEFINED");
  EXPECT_EQ(d.fields["message"], "culprit ?(runner) in front-end");
  EXPECT_EQ(d.fields["url_title"], "Issue Details");
  EXPECT_EQ(d.fields.size(), 3u) << "only the fields this route sets for this sink";
  EXPECT_EQ(d.default_title, "ReferenceError: blooopy is not defined");

  // Delivered: removed from the queue.
  EXPECT_TRUE(Eventually([&] { return Pending("phone") == 0 && !Record(d.id); }));
  EXPECT_EQ(Fake("ops").calls(), 0u) << "only the stored (route, sink) pair is delivered";
  EXPECT_EQ(Fake("phone").calls(), 1u);
  EXPECT_THAT(metrics_.Serialize(), HasSubstr("outcome=\"success\""));
}

// An http sink's own `body` is the body of every route target that sets none; a target's `body`
// overrides it.
TEST_F(DispatcherTest, AnHttpSinksOwnBodyIsTheDefaultAndATargetsBodyWins) {
  Start(R"yaml(sinks:
  ops:
    type: http
    url: "http://127.0.0.1:1/"
    body: '{"title": {{ data.issue.title | json }}}'
routes:
  - name: plain
    to: [ops]
  - name: own-body
    to:
      - sink: ops
        body: 'culprit {{ data.issue.culprit }}'
)yaml");
  Add("plain", "ops");
  ASSERT_TRUE(WaitCalls("ops", 1));
  EXPECT_EQ(Fake("ops").last().fields["body"],
            R"({"title": "ReferenceError: blooopy is not defined"})");
  Add("own-body", "ops");
  ASSERT_TRUE(WaitCalls("ops", 2));
  EXPECT_EQ(Fake("ops").last().fields["body"], "culprit ?(runner)");
  EXPECT_EQ(Fake("ops").last().fields.size(), 1u);
}

// The delivery path parses a stored event with the deepest nesting ingest can ever accept
// (max_json_depth's ceiling, 1024), not a smaller fixed limit of its own: a webhook 300 levels
// deep, accepted under max_json_depth: 1024, used to render as if it were not JSON.
TEST_F(DispatcherTest, AnEventAsDeepAsIngestAcceptsRendersItsTemplates) {
  Start(R"yaml(sinks:
  ops: {type: http, url: "http://127.0.0.1:1/"}
routes:
  - name: r
    to:
      - sink: ops
        body: 'title {{ data.issue.title }}'
)yaml");
  std::string deep = R"({"data":{"issue":{"title":"deep"}},"nest":)";
  for (int i = 0; i < 1020; ++i) deep += "[";
  for (int i = 0; i < 1020; ++i) deep += "]";
  deep += "}";
  Add("r", "ops", /*deferred=*/false, deep);
  ASSERT_TRUE(WaitCalls("ops", 1));
  EXPECT_EQ(Fake("ops").last().fields["body"], "title deep");
}

// A templated url and header values are rendered per delivery, like route fields.
TEST_F(DispatcherTest, AnHttpSinksTemplatedUrlAndHeadersAreRenderedForEachEvent) {
  Start(R"yaml(sinks:
  ops:
    type: http
    url: "http://127.0.0.1:1/ok/{{ data.issue.id }}?p={{ data.issue.project.slug | urlencode }}"
    headers:
      X-Issue: '{{ data.issue.shortId }}'
      X-Team: backend
routes:
  - name: r
    to: [ops]
)yaml");
  Add("r", "ops");
  ASSERT_TRUE(WaitCalls("ops", 1));
  const sinks::Delivery d = Fake("ops").last();
  EXPECT_EQ(d.url, "http://127.0.0.1:1/ok/1170820242?p=front-end");
  EXPECT_EQ(d.headers, (std::map<std::string, std::string>{{"X-Issue", "FRONT-END-9"}}))
      << "only templated header values are rendered";
  EXPECT_TRUE(d.fields.empty());
}

TEST_F(DispatcherTest, PushoverDefaultTitleFollowsThePayloadKind) {
  Start(R"yaml(sinks:
  phone: {type: pushover}
routes:
  - name: r
    to: [phone]
)yaml");
  Add("r", "phone", false, ReadPayload("event_alert.triggered.json"), "event_alert");
  ASSERT_TRUE(WaitCalls("phone", 1));
  EXPECT_EQ(Fake("phone").last().default_title, "ReferenceError: heck is not defined");
  EXPECT_TRUE(Fake("phone").last().fields.empty());
  Add("r", "phone", false, R"({"data":{}})");
  ASSERT_TRUE(WaitCalls("phone", 2));
  EXPECT_EQ(Fake("phone").last().default_title, "");
  // A body that is not JSON is still delivered as is.
  Add("r", "phone", false, "not json");
  ASSERT_TRUE(WaitCalls("phone", 3));
  EXPECT_EQ(Fake("phone").last().event->body, "not json");
  EXPECT_TRUE(Eventually([&] { return Pending("phone") == 0; }));
}

TEST_F(DispatcherTest, AnHttpSinkWithoutTemplatesGetsTheStoredBytesUnparsed) {
  Start(kOps);
  Add("r", "ops", false, ReadPayload("event_alert.triggered.json"), "event_alert");
  ASSERT_TRUE(WaitCalls("ops", 1));
  EXPECT_EQ(Fake("ops").last().default_title, "") << "nothing read the body";
  EXPECT_TRUE(Fake("ops").last().fields.empty());
  EXPECT_EQ(Fake("ops").last().event->body, ReadPayload("event_alert.triggered.json"));
}

TEST_F(DispatcherTest, ARetryIsRescheduledWithExponentialBackoffAndWaitsForTheClock) {
  Fake("ops").Script({Retry("HTTP 503"), Retry("HTTP 502"), Success()});
  Start(kOps);
  const int64_t t0 = now();
  Add("r", "ops");
  ASSERT_TRUE(WaitCalls("ops", 1));
  const std::string id = Fake("ops").last().id;

  storage::DeliveryRecord r1 = WaitAttempts(id, 1);
  EXPECT_EQ(r1.due_ms, t0 + 1000);  // initial
  EXPECT_EQ(r1.last_error, "HTTP 503");
  EXPECT_EQ(r1.first_attempt_ms, t0);
  EXPECT_EQ(r1.last_attempt_ms, t0);

  Settle();
  EXPECT_EQ(Fake("ops").calls(), 1u) << "not redelivered before it is due";
  clock_.Advance(milliseconds(999));
  Settle();
  EXPECT_EQ(Fake("ops").calls(), 1u) << "not redelivered 1 ms before it is due";
  clock_.Advance(milliseconds(1));
  ASSERT_TRUE(WaitCalls("ops", 2));
  EXPECT_EQ(Fake("ops").last().id, id) << "same delivery id across retries";
  EXPECT_EQ(Fake("ops").last().attempt, 2);

  storage::DeliveryRecord r2 = WaitAttempts(id, 2);
  EXPECT_EQ(r2.due_ms, t0 + 1000 + 2000);  // initial × multiplier
  EXPECT_EQ(r2.last_error, "HTTP 502");
  EXPECT_EQ(r2.first_attempt_ms, t0);
  EXPECT_EQ(r2.last_attempt_ms, t0 + 1000);

  clock_.Advance(milliseconds(1999));
  Settle();
  EXPECT_EQ(Fake("ops").calls(), 2u);
  clock_.Advance(milliseconds(1));
  ASSERT_TRUE(WaitCalls("ops", 3));
  EXPECT_EQ(Fake("ops").last().attempt, 3);
  EXPECT_TRUE(Eventually([&] { return !Record(id) && Pending("ops") == 0; }));
  EXPECT_THAT(metrics_.Serialize(), HasSubstr("outcome=\"retry\""));
}

TEST_F(DispatcherTest, RetryAfterLongerThanTheBackoffWinsAndIsCappedAtMaxDelay) {
  Fake("ops").Script({Retry("HTTP 429", seconds(30)),   // > backoff 1 s: wins
                      Retry("HTTP 429", hours(1)),      // > max_delay 10 m: capped
                      Retry("HTTP 429", milliseconds(100)),  // < backoff 4 s: backoff wins
                      Success()});
  Start(kOps);
  Add("r", "ops");
  ASSERT_TRUE(WaitCalls("ops", 1));
  const std::string id = Fake("ops").last().id;

  int64_t t = now();
  EXPECT_EQ(WaitAttempts(id, 1).due_ms, t + 30000);
  clock_.Advance(seconds(30));
  ASSERT_TRUE(WaitCalls("ops", 2));

  t = now();
  EXPECT_EQ(WaitAttempts(id, 2).due_ms, t + 600000);
  clock_.Advance(minutes(10));
  ASSERT_TRUE(WaitCalls("ops", 3));

  t = now();
  EXPECT_EQ(WaitAttempts(id, 3).due_ms, t + 4000);
  clock_.Advance(seconds(4));
  ASSERT_TRUE(WaitCalls("ops", 4));
  EXPECT_TRUE(Eventually([&] { return !Record(id); }));
}

TEST_F(DispatcherTest, ASinksMinimumRetryHoldsEvenAboveMaxDelay) {
  // Pushover's contract: never sooner than 5 s, whatever retry.max_delay says.
  sinks::Outcome pushover_429 = Retry("pushover: HTTP 429", seconds(5));
  pushover_429.min_retry = seconds(5);
  Fake("ops").Script({pushover_429, Success()});
  Start(R"yaml(sinks:
  ops: {type: http, url: "http://127.0.0.1:1/", retry: {initial: 100ms, max_delay: 1s}}
routes:
  - name: r
    to: [ops]
)yaml");
  Add("r", "ops");
  ASSERT_TRUE(WaitCalls("ops", 1));
  const std::string id = Fake("ops").last().id;
  const int64_t t = now();
  EXPECT_EQ(WaitAttempts(id, 1).due_ms, t + 5000);
  clock_.Advance(seconds(5));
  ASSERT_TRUE(WaitCalls("ops", 2));
}

// A receiver's error body can be any UTF-8: the stored error is cut to 512 bytes on a
// character boundary, not inside one (the DLQ listing showed a U+FFFD).
TEST_F(DispatcherTest, ALongErrorIsCutOnACharacterBoundary) {
  std::string error = "HTTP 400: ";  // 10 bytes, then 3-byte characters: 512 falls inside one
  for (int i = 0; i < 200; ++i) error += "\xE2\x82\xAC";  // U+20AC
  Fake("ops").Script({Permanent(error)});
  Start(kOps);
  Add("r", "ops");
  auto dead = WaitDead(1);
  ASSERT_EQ(dead.size(), 1u);
  EXPECT_EQ(dead[0].last_error, error.substr(0, 10 + 3 * 167));  // 511 bytes: 512 would split one
}

TEST_F(DispatcherTest, APermanentFailureIsADeadLetterAtOnce) {
  Fake("ops").Script({Permanent("HTTP 400: bad request")});
  Start(kOps);
  Add("r", "ops");
  auto dead = WaitDead(1);
  ASSERT_EQ(dead.size(), 1u);
  EXPECT_TRUE(dead[0].dead);
  EXPECT_EQ(dead[0].attempts, 1u);
  EXPECT_EQ(dead[0].last_error, "HTTP 400: bad request");
  EXPECT_EQ(dead[0].sink, "ops");
  EXPECT_EQ(dead[0].route, "r");
  EXPECT_EQ(Pending("ops"), 0u);
  EXPECT_EQ(store_->Counts().dead, 1u);
  clock_.Advance(hours(1));
  Settle();
  EXPECT_EQ(Fake("ops").calls(), 1u) << "a dead letter is never retried";
  EXPECT_THAT(metrics_.Serialize(), HasSubstr("outcome=\"dead\""));
}

TEST_F(DispatcherTest, ReachingMaxAttemptsIsADeadLetterWithTheReason) {
  Fake("ops").SetDefault(Retry("HTTP 503"));
  Start(R"yaml(sinks:
  ops:
    type: http
    url: "http://127.0.0.1:1/"
    retry: {max_attempts: 3}
routes:
  - name: r
    to: [ops]
)yaml");
  Add("r", "ops");
  ASSERT_TRUE(WaitCalls("ops", 1));
  const std::string id = Fake("ops").last().id;
  for (uint32_t n = 1; n < 3; ++n) {
    WaitAttempts(id, n);
    clock_.Advance(minutes(10));
    ASSERT_TRUE(WaitCalls("ops", n + 1));
  }
  auto dead = WaitDead(1);
  ASSERT_EQ(dead.size(), 1u);
  EXPECT_EQ(dead[0].id, id);
  EXPECT_EQ(dead[0].attempts, 3u);
  EXPECT_EQ(dead[0].last_error, "HTTP 503 (max_attempts reached)");
  clock_.Advance(hours(1));
  Settle();
  EXPECT_EQ(Fake("ops").calls(), 3u);
}

TEST_F(DispatcherTest, ReachingMaxAgeIsADeadLetterWithTheReason) {
  Fake("ops").SetDefault(Retry("timeout"));
  const int64_t created = now();
  StartOneDelivery("{initial: 2s, multiplier: 2, max_delay: 1m, max_age: 5s}");
  const std::string id = Fake("ops").last().id;
  EXPECT_EQ(WaitAttempts(id, 1).due_ms, created + 2000);
  clock_.Advance(seconds(2));
  ASSERT_TRUE(WaitCalls("ops", 2));
  // The 4-s backoff would end past max_age (5 s): one last attempt comes at max_age instead.
  EXPECT_EQ(WaitAttempts(id, 2).due_ms, created + 5000);
  clock_.Advance(seconds(3));
  auto dead = WaitDead(1);
  ASSERT_EQ(dead.size(), 1u);
  EXPECT_EQ(dead[0].attempts, 3u);
  EXPECT_EQ(dead[0].last_error, "timeout (max_age reached)");
  ExpectNoMoreAttempts(3);
}

TEST_F(DispatcherTest, LessThanTheInitialDelayLeftBeforeMaxAgeIsADeadLetterAtOnce) {
  Fake("ops").SetDefault(Retry("timeout"));
  StartOneDelivery("{initial: 2s, multiplier: 2, max_delay: 1m, max_age: 3s}");
  WaitAttempts(Fake("ops").last().id, 1);
  clock_.Advance(seconds(2));
  auto dead = WaitDead(1);
  ASSERT_EQ(dead.size(), 1u);
  EXPECT_EQ(dead[0].attempts, 2u) << "1 s left, less than initial: no hurried last attempt";
  EXPECT_EQ(dead[0].last_error, "timeout (max_age reached before the next attempt)");
  ExpectNoMoreAttempts(2);
}

TEST_F(DispatcherTest, AMaxAgeOfACenturyRetriesAsUsual) {
  Fake("ops").Script({Retry("HTTP 503"), Success()});
  StartOneDelivery("{initial: 1s, max_age: 36500d}");
  const std::string id = Fake("ops").last().id;
  EXPECT_EQ(WaitAttempts(id, 1).due_ms, now() + 1000);
  clock_.Advance(seconds(1));
  ASSERT_TRUE(WaitCalls("ops", 2));
  EXPECT_TRUE(Eventually([&] { return Pending("ops") == 0 && store_->Counts().pending == 0; }));
  EXPECT_EQ(store_->Counts().dead, 0u);
}

TEST_F(DispatcherTest, ASinkAskingToWaitPastMaxAgeGetsNoFurtherAttempt) {
  Fake("ops").SetDefault(Retry("HTTP 429", seconds(30)));
  StartOneDelivery("{initial: 1s, max_delay: 1m, max_age: 20s}");
  auto dead = WaitDead(1);
  ASSERT_EQ(dead.size(), 1u);
  EXPECT_EQ(dead[0].attempts, 1u) << "Retry-After: 30 would start the next attempt past max_age";
  EXPECT_EQ(dead[0].last_error, "HTTP 429 (max_age reached before the next attempt)");
  EXPECT_EQ(Pending("ops"), 0u);
  ExpectNoMoreAttempts(1);
}

TEST_F(DispatcherTest, PerSinkConcurrencyIsNeverExceeded) {
  Fake("ops").SetMode(FakeSink::Mode::kHold);
  Start(R"yaml(sinks:
  ops: {type: http, url: "http://127.0.0.1:1/", concurrency: 3}
routes:
  - name: r
    to: [ops]
)yaml");
  for (int i = 0; i < 10; ++i) Add("r", "ops");
  ASSERT_TRUE(WaitHeld("ops", 3));
  Settle();
  EXPECT_EQ(Fake("ops").held(), 3u);
  EXPECT_EQ(Fake("ops").calls(), 3u);
  // Each completion frees exactly one slot.
  ASSERT_TRUE(Fake("ops").ReleaseOne(Success()));
  ASSERT_TRUE(WaitCalls("ops", 4));
  Settle();
  EXPECT_EQ(Fake("ops").calls(), 4u);
  EXPECT_EQ(Fake("ops").held(), 3u);
  // Drain the rest, releasing whatever is held.
  EXPECT_TRUE(Eventually([&] {
    Fake("ops").ReleaseAll(Success());
    return Pending("ops") == 0;
  }));
  EXPECT_EQ(Fake("ops").calls(), 10u);
  EXPECT_EQ(Fake("ops").max_in_flight(), 3u);
}

TEST_F(DispatcherTest, ConcurrencyHoldsWithSinksCompletingOnOtherThreads) {
  Fake("ops").SetMode(FakeSink::Mode::kAsync);
  Fake("slow").SetMode(FakeSink::Mode::kAsync);
  Start(R"yaml(sinks:
  ops: {type: http, url: "http://127.0.0.1:1/", concurrency: 2}
  slow: {type: http, url: "http://127.0.0.1:1/", concurrency: 5}
routes:
  - name: r
    to: [ops, slow]
)yaml");
  for (int i = 0; i < 40; ++i) {
    Add("r", "ops");
    Add("r", "slow");
  }
  EXPECT_TRUE(Eventually([&] { return Pending("ops") == 0 && Pending("slow") == 0; }));
  EXPECT_EQ(Fake("ops").calls(), 40u);
  EXPECT_EQ(Fake("slow").calls(), 40u);
  EXPECT_LE(Fake("ops").max_in_flight(), 2u);
  EXPECT_LE(Fake("slow").max_in_flight(), 5u);
  std::set<std::string> ids;
  for (const auto& d : Fake("ops").deliveries()) ids.insert(d.id);
  EXPECT_EQ(ids.size(), 40u) << "each delivery exactly once";
}

TEST_F(DispatcherTest, RateLimitStartsNoMoreThanTheBurstUntilTokensRefill) {
  Start(R"yaml(sinks:
  ops: {type: http, url: "http://127.0.0.1:1/", concurrency: 16, rate: 2/s}
routes:
  - name: r
    to: [ops]
)yaml");
  for (int i = 0; i < 6; ++i) Add("r", "ops");
  ASSERT_TRUE(WaitCalls("ops", 2));
  Settle();
  EXPECT_EQ(Fake("ops").calls(), 2u) << "burst of 2, then no tokens while the clock stands";
  clock_.Advance(milliseconds(500));  // one token
  ASSERT_TRUE(WaitCalls("ops", 3));
  Settle();
  EXPECT_EQ(Fake("ops").calls(), 3u);
  clock_.Advance(seconds(10));  // refills to the burst, not beyond
  ASSERT_TRUE(WaitCalls("ops", 5));
  Settle();
  EXPECT_EQ(Fake("ops").calls(), 5u);
  clock_.Advance(seconds(1));
  ASSERT_TRUE(WaitCalls("ops", 6));
  EXPECT_TRUE(Eventually([&] { return Pending("ops") == 0; }));
}

constexpr char kSerialOps[] = R"yaml(sinks:
  ops: {type: http, url: "http://127.0.0.1:1/", concurrency: 1}
routes:
  - name: r
    to: [ops]
)yaml";

// Drives `failures` consecutive retry outcomes through a concurrency-1 sink in hold mode.
#define FAIL_SERIALLY(failures)                                   \
  for (int i = 0; i < (failures); ++i) {                          \
    ASSERT_NO_FATAL_FAILURE(ReleaseHeld(Retry("connection refused"))); \
  }

TEST_F(DispatcherTest, CircuitOpensAfterFiveRetriesThenSendsOneProbeAndClosesOnSuccess) {
  Fake("ops").SetMode(FakeSink::Mode::kHold);
  Start(kSerialOps);
  for (int i = 0; i < 8; ++i) Add("r", "ops");
  FAIL_SERIALLY(5);
  Settle();
  EXPECT_EQ(Fake("ops").calls(), 5u) << "open: no attempts although deliveries are due";
  EXPECT_EQ(Fake("ops").held(), 0u);
  EXPECT_THAT(metrics_.Serialize(), HasSubstr("switchyard_sink_circuit_open{sink=\"ops\"} 1"));

  clock_.Advance(milliseconds(9999));
  Settle();
  EXPECT_EQ(Fake("ops").calls(), 5u) << "still cooling down";

  clock_.Advance(milliseconds(1));  // half-open
  ASSERT_TRUE(WaitHeld("ops", 1));
  Settle();
  EXPECT_EQ(Fake("ops").calls(), 6u) << "exactly one probe while half-open";
  EXPECT_EQ(Fake("ops").held(), 1u);

  Fake("ops").SetMode(FakeSink::Mode::kImmediate);
  ASSERT_TRUE(Fake("ops").ReleaseOne(Success()));
  // Closed: everything due drains (the 5 rescheduled ones are due by now too).
  EXPECT_TRUE(Eventually([&] { return Pending("ops") == 0; }));
  EXPECT_EQ(Fake("ops").calls(), 6u + 7u);
  EXPECT_THAT(metrics_.Serialize(), HasSubstr("switchyard_sink_circuit_open{sink=\"ops\"} 0"));
}

// Deliveries held back by an open circuit used to be checked against max_age only after an
// attempt: the probe then sent them hours stale, and the ones never attempted stayed pending.
TEST_F(DispatcherTest, DeliveriesAnOpenCircuitHoldsPastMaxAgeAreDeadLettersNotSentStale) {
  Fake("ops").SetMode(FakeSink::Mode::kHold);
  Start(std::string(kSerialOps) + "retry: {initial: 1s, max_age: 1m}\n");
  for (int i = 0; i < 8; ++i) Add("r", "ops");
  FAIL_SERIALLY(5);
  Settle();
  ASSERT_EQ(Fake("ops").calls(), 5u) << "open";
  clock_.Advance(minutes(2));  // the cool-down is long over, and so is every max_age
  auto dead = WaitDead(8);
  ASSERT_EQ(dead.size(), 8u);
  for (const auto& d : dead)
    EXPECT_THAT(d.last_error, HasSubstr("max_age reached before an attempt"));
  Fake("ops").SetMode(FakeSink::Mode::kImmediate);
  Fake("ops").ReleaseAll();
  Settle();
  EXPECT_EQ(Fake("ops").calls(), 5u) << "nothing sent past its max_age";
  EXPECT_EQ(Pending("ops"), 0u);
}

// The cool-down is monotonic time: a wall clock set back an hour (NTP, a resumed VM) used to
// pause the sink, new deliveries too, for that hour on top of the cool-down.
TEST_F(DispatcherTest, AWallClockSetBackDoesNotStretchTheCooldown) {
  Fake("ops").SetMode(FakeSink::Mode::kHold);
  Start(kSerialOps);
  for (int i = 0; i < 5; ++i) Add("r", "ops");
  FAIL_SERIALLY(5);
  Settle();
  ASSERT_EQ(Fake("ops").calls(), 5u) << "open";
  clock_.StepWall(-hours(1));
  clock_.Advance(seconds(10));
  Add("r", "ops");  // due at once by the (stepped) wall clock
  ASSERT_TRUE(WaitHeld("ops", 1)) << "the half-open probe goes after the 10-s cool-down";
}

// Two sinks, and the same config once a reload has removed "gone".
constexpr char kOpsAndGone[] = R"yaml(sinks:
  ops: {type: http, url: "http://127.0.0.1:1/"}
  gone: {type: http, url: "http://127.0.0.1:1/"}
routes:
  - name: r
    to: [ops, gone]
)yaml";
constexpr char kOpsWithoutGone[] = R"yaml(sinks:
  ops: {type: http, url: "http://127.0.0.1:1/"}
routes:
  - name: r
    to: [ops]
)yaml";

// Housekeeping (gauges, removed sinks, retention) runs on monotonic time too.
TEST_F(DispatcherTest, AWallClockSetBackDoesNotStopHousekeeping) {
  Fake("gone").SetActive(false);
  Start(kOpsAndGone);
  Add("r", "gone");
  clock_.Advance(seconds(2));
  Settle();
  clock_.StepWall(-hours(1));
  Reload(kOpsWithoutGone);
  for (int i = 0; i < 3; ++i) {  // three seconds, not the hour the wall clock went back
    clock_.Advance(seconds(1));
    Settle();
  }
  auto dead = WaitDead(1);
  ASSERT_EQ(dead.size(), 1u);
  EXPECT_THAT(dead[0].last_error, HasSubstr("not configured"));
}

// The SwitchyardSinkCircuitOpen alert used to fire until a restart for a sink removed while
// its circuit was open.
TEST_F(DispatcherTest, ACircuitOpenGaugeIsClearedWhenAReloadRemovesTheSink) {
  Fake("ops").SetMode(FakeSink::Mode::kHold);
  Start(kSerialOps);
  for (int i = 0; i < 5; ++i) Add("r", "ops");
  FAIL_SERIALLY(5);
  Settle();
  ASSERT_THAT(metrics_.Serialize(), HasSubstr("switchyard_sink_circuit_open{sink=\"ops\"} 1"));
  Reload(R"yaml(sinks:
  spare: {type: http, url: "http://127.0.0.1:1/"}
routes:
  - name: r2
    to: [spare]
)yaml");
  EXPECT_TRUE(Eventually([&] {
    return metrics_.Serialize().find("switchyard_sink_circuit_open{sink=\"ops\"} 0") !=
           std::string::npos;
  }));
}

// Every SIGHUP reloads: it used to grant each sink a fresh burst, so `rate: 1/h` let one more
// delivery through per reload.
TEST_F(DispatcherTest, AReloadDoesNotRefillTheRateLimit) {
  const std::string yaml = R"yaml(sinks:
  ops: {type: http, url: "http://127.0.0.1:1/", rate: 1/h}
routes:
  - name: r
    to: [ops]
)yaml";
  Start(yaml);
  Add("r", "ops");
  ASSERT_TRUE(WaitCalls("ops", 1));
  Reload(yaml);
  Add("r", "ops");
  Settle();
  EXPECT_EQ(Fake("ops").calls(), 1u) << "the burst of 1 is spent; the reload gives no other";
  clock_.Advance(hours(1));
  EXPECT_TRUE(WaitCalls("ops", 2));
}

// A delivery waiting for a retry whose route a reload removed or renamed used to be sent
// without that route's templates: the raw payload instead of the route's `body`.
TEST_F(DispatcherTest, ADeliveryWhoseRouteAReloadRemovedIsADeadLetterNotSentWithoutItsTemplates) {
  Fake("ops").Script({Retry("HTTP 503")});
  const std::string sink = "sinks:\n  ops: {type: http, url: \"http://127.0.0.1:1/\"}\n";
  Start(sink + R"yaml(routes:
  - name: r
    to:
      - sink: ops
        body: '{"x":"{{ data.issue.title }}"}'
)yaml");
  const std::string id = [&] {
    Add("r", "ops");
    EXPECT_TRUE(WaitCalls("ops", 1));
    return Fake("ops").last().id;
  }();
  WaitAttempts(id, 1);
  Reload(sink + "routes:\n  - name: renamed\n    to: [ops]\n");
  clock_.Advance(seconds(2));
  auto dead = WaitDead(1);
  ASSERT_EQ(dead.size(), 1u);
  EXPECT_EQ(dead[0].id, id);
  EXPECT_THAT(dead[0].last_error, HasSubstr("route no longer configured"));
  EXPECT_EQ(Fake("ops").calls(), 1u);
}

// A reload whose sinks cannot all be built keeps the running ones as they were. It used to
// move their in-flight bookkeeping out before it failed: an attempt still running was read as
// due again and sent a second time.
TEST_F(DispatcherTest, AReloadWhoseSinksCannotBeBuiltLeavesAttemptsInFlightAlone) {
  Fake("ops").SetMode(FakeSink::Mode::kHold);
  Start(kOps);  // concurrency 4: room to start the attempt in flight again
  Add("r", "ops");
  ASSERT_TRUE(WaitHeld("ops", 1));
  Reload(R"yaml(sinks:
  ops: {type: http, url: "http://127.0.0.1:1/", concurrency: 4}
  unbuildable: {type: http, url: "http://127.0.0.1:1/"}
routes:
  - name: r
    to: [ops]
)yaml");
  Settle();
  EXPECT_EQ(Fake("ops").calls(), 1u) << "the attempt in flight was not started again";
  Fake("ops").SetMode(FakeSink::Mode::kImmediate);
  ASSERT_TRUE(Fake("ops").ReleaseOne(Success()));
  EXPECT_TRUE(Eventually([&] { return Pending("ops") == 0; }));
  Settle();
  EXPECT_EQ(Fake("ops").calls(), 1u);
}

// Ingest routes with a reloaded config at once; the dispatcher rebuilds on its next pass. A
// delivery to a sink the reload added, read before that notice arrived, used to be
// dead-lettered as "not configured".
TEST_F(DispatcherTest, ADeliveryToASinkAReloadAddedIsDeliveredEvenBeforeTheReloadNotice) {
  Start(kOps);
  holder_->Set(Parse(R"yaml(sinks:
  ops: {type: http, url: "http://127.0.0.1:1/", concurrency: 4}
  added: {type: http, url: "http://127.0.0.1:1/"}
routes:
  - name: r
    to: [ops]
  - name: r2
    to: [added]
)yaml"));  // no ConfigChanged(): the window between the swap and the notice, held open
  Add("r2", "added");
  clock_.Advance(seconds(2));
  EXPECT_TRUE(WaitCalls("added", 1));
  auto dead = store_->ListDead(10);
  ASSERT_TRUE(dead.ok());
  EXPECT_TRUE(dead->empty()) << dead->front().last_error;
}

// Dead letters older than dlq_retention are removed (the purge reads every dead letter, so it
// runs once a minute, not at every housekeeping round).
TEST_F(DispatcherTest, DeadLettersPastDlqRetentionAreRemoved) {
  Fake("ops").SetDefault(Permanent("HTTP 400"));
  Start(std::string(kOps) + "storage:\n  dlq_retention: 1m\n");
  Add("r", "ops");
  ASSERT_EQ(WaitDead(1).size(), 1u);
  clock_.Advance(seconds(30));
  Settle();
  auto kept = store_->ListDead(10);
  ASSERT_TRUE(kept.ok());
  EXPECT_EQ(kept->size(), 1u) << "within dlq_retention";
  clock_.Advance(seconds(31));  // past it, and past the purge's minute
  EXPECT_TRUE(Eventually([&] {
    auto l = store_->ListDead(10);
    return l.ok() && l->empty();
  }));
}

// After a stop longer than max_age, the stale deliveries are dead-lettered without using the
// sink's slots: the fresh one behind them starts in the same pass. Each pass used to take only
// `concurrency` of them, so a large stale backlog held a sink for many minutes.
TEST_F(DispatcherTest, AStaleBacklogDoesNotHoldBackAFreshDelivery) {
  Fake("ops").SetMode(FakeSink::Mode::kHold);
  for (int i = 0; i < 50; ++i) Add("r", "ops");
  clock_.Advance(hours(26));  // max_age is 24 h (+ the grace: at least the poll)
  DispatcherOptions options = Options();
  options.poll = hours(1);  // passes only when woken: the next Add's wake makes one
  Start(kSerialOps, options);
  Add("r", "ops");
  ASSERT_TRUE(WaitHeld("ops", 1));
  EXPECT_EQ(Fake("ops").calls(), 1u);
  auto dead = store_->ListDead(100);
  ASSERT_TRUE(dead.ok());
  EXPECT_EQ(dead->size(), 50u) << "all stale ones in the first pass";
}

// The store refusing queue writes (the disk at its floor) used to send the same deliveries
// again in a loop: the refused completion left them due, and the next pass read them again.
TEST_F(DispatcherTest, AQueueWriteTheStoreRefusesDoesNotSendTheDeliveryAgain) {
  Add("r", "ops");
  Add("r", "ops");
  ASSERT_NO_FATAL_FAILURE(ReopenRefusingWrites());

  Fake("ops").Script({Success(), Retry("HTTP 503")});
  Start(kOps);
  ASSERT_TRUE(WaitCalls("ops", 2));
  Settle();
  EXPECT_EQ(Fake("ops").calls(), 2u) << "each attempted once: outcomes wait to be written";
  clock_.Advance(minutes(1));  // past any backoff
  Settle();
  EXPECT_EQ(Fake("ops").calls(), 2u);
  dispatcher_->Stop(seconds(5));
  dispatcher_.reset();
  EXPECT_EQ(Pending("ops"), 2u) << "never recorded: both still pending (at least once)";
}

// While the store refused writes, a removed sink's backlog was counted dead (and logged) again
// every second, though no dead letter was written: the dead-letter alert saw false numbers.
TEST_F(DispatcherTest, ARemovedSinksBacklogTheStoreRefusesIsCountedDeadOnce) {
  for (int i = 0; i < 3; ++i) Add("r", "gone");
  ASSERT_NO_FATAL_FAILURE(ReopenRefusingWrites());
  Start(kOpsWithoutGone);
  RunSecondsOfHousekeeping(5);
  EXPECT_LE(testing::DeliveriesTotal(metrics_.Serialize(), "gone", "dead"), 3);
  StopDispatcher();
  EXPECT_EQ(Pending("gone"), 3u) << "never written: still pending";
}

// While the store refused writes, housekeeping still read a held sink's stale deliveries, 256
// a second, and kept each refused dead letter in memory: a long outage at the disk's floor
// grew without bound. It now stops at the first refused write.
TEST_F(DispatcherTest, AHeldSinksStaleBacklogIsNotLoadedIntoMemoryWhileTheStoreRefusesWrites) {
  for (int i = 0; i < 20; ++i) Add("r", "ops");
  ASSERT_NO_FATAL_FAILURE(ReopenRefusingWrites());
  Fake("ops").SetActive(false);  // held: housekeeping dead-letters what passes max_age
  Start(std::string(kOps) + "retry: {max_age: 1m}\n");
  clock_.Advance(minutes(2));
  RunSecondsOfHousekeeping(5);
  EXPECT_LE(testing::DeliveriesTotal(metrics_.Serialize(), "ops", "dead"), 1);
  StopDispatcher();
  EXPECT_EQ(Pending("ops"), 20u) << "never written: still pending";
}

TEST_F(DispatcherTest, AFailedProbeReopensTheCircuitForTwiceTheCooldown) {
  Fake("ops").SetMode(FakeSink::Mode::kHold);
  Start(kSerialOps);
  for (int i = 0; i < 8; ++i) Add("r", "ops");
  FAIL_SERIALLY(5);
  clock_.Advance(seconds(10));
  ReleaseHeld(Retry("still down"));  // the probe fails
  clock_.Advance(seconds(10));
  Settle();
  EXPECT_EQ(Fake("ops").calls(), 6u) << "cool-down doubled to 20 s";
  clock_.Advance(seconds(10));
  ASSERT_TRUE(WaitHeld("ops", 1));
  EXPECT_EQ(Fake("ops").calls(), 7u);
}

TEST_F(DispatcherTest, AProbeEndingInAPermanentFailureLetsTheNextProbeGo) {
  Fake("ops").SetMode(FakeSink::Mode::kHold);
  Start(kSerialOps);
  for (int i = 0; i < 8; ++i) Add("r", "ops");
  FAIL_SERIALLY(5);
  clock_.Advance(seconds(10));
  ReleaseHeld(Permanent("HTTP 400"));
  // The permanent failure says nothing about the outage: another probe may go at once.
  ASSERT_TRUE(WaitHeld("ops", 1));
  EXPECT_EQ(Fake("ops").calls(), 7u);
  Fake("ops").SetMode(FakeSink::Mode::kImmediate);
  ASSERT_TRUE(Fake("ops").ReleaseOne(Success()));
  EXPECT_TRUE(Eventually([&] { return Pending("ops") == 0; }));
  EXPECT_EQ(WaitDead(1).size(), 1u);
}

TEST_F(DispatcherTest, AttemptsInFlightWhenTheCircuitOpensDoNotExtendTheCooldown) {
  Fake("ops").SetMode(FakeSink::Mode::kHold);
  Start(R"yaml(sinks:
  ops: {type: http, url: "http://127.0.0.1:1/", concurrency: 8}
routes:
  - name: r
    to: [ops]
)yaml");
  for (int i = 0; i < 8; ++i) Add("r", "ops");
  ASSERT_TRUE(WaitHeld("ops", 8));
  // Opens at the 5th failure; 3 more were already running. All 8 are rescheduled 1 s ahead.
  Fake("ops").ReleaseAll(Retry("HTTP 503"));
  ASSERT_TRUE(Eventually([&] { return Attempted("ops") == 8; }));
  Settle();
  EXPECT_EQ(Fake("ops").calls(), 8u);
  clock_.Advance(seconds(10));  // the configured cool-down, not 80 s
  ASSERT_TRUE(WaitHeld("ops", 1));
  Settle();
  EXPECT_EQ(Fake("ops").calls(), 9u) << "one probe";
}

TEST_F(DispatcherTest, PermanentFailuresDoNotOpenTheCircuit) {
  Fake("ops").SetDefault(Permanent("HTTP 422"));
  Start(kOps);
  for (int i = 0; i < 8; ++i) Add("r", "ops");
  EXPECT_EQ(WaitDead(8).size(), 8u);
  EXPECT_EQ(Fake("ops").calls(), 8u);
}

TEST_F(DispatcherTest, ADeliveryForASinkRemovedByAReloadBecomesADeadLetterNamingIt) {
  Fake("gone").SetActive(false);  // its deliveries wait while it is configured
  Start(kOpsAndGone);
  Add("r", "gone");
  Add("r", "gone");
  Add("r", "ops");
  ASSERT_TRUE(WaitCalls("ops", 1));
  Settle();
  EXPECT_EQ(Pending("gone"), 2u);
  EXPECT_EQ(Fake("gone").calls(), 0u);

  testing::CapturedStderr log;
  Reload(kOpsWithoutGone);
  auto dead = WaitDeadAdvancing(2);
  ASSERT_EQ(dead.size(), 2u);
  for (const auto& d : dead) {
    EXPECT_EQ(d.sink, "gone");
    EXPECT_THAT(d.last_error, HasSubstr("\"gone\""));
    EXPECT_THAT(d.last_error, HasSubstr("not configured"));
  }
  // One line for the backlog, not one per delivery (a backlog of 100k was 100k lines).
  EXPECT_THAT(log.Read(),
              HasSubstr("deliveries of a removed sink dead-lettered\" sink=gone count=2"));
  EXPECT_THAT(log.Read(), Not(HasSubstr("msg=\"delivery dead-lettered\"")));
  EXPECT_EQ(Pending("gone"), 0u);
  EXPECT_EQ(Fake("gone").calls(), 0u);
  // The remaining sink keeps working after the reload.
  Add("r", "ops");
  ASSERT_TRUE(WaitCalls("ops", 2));
}

TEST_F(DispatcherTest, ASinkRemovedWhileAnAttemptIsInFlightDeadLettersTheRestAfterwards) {
  Fake("gone").SetMode(FakeSink::Mode::kHold);
  Start(R"yaml(sinks:
  ops: {type: http, url: "http://127.0.0.1:1/"}
  gone: {type: http, url: "http://127.0.0.1:1/", concurrency: 1}
routes:
  - name: r
    to: [ops, gone]
)yaml");
  Add("r", "gone");
  Add("r", "gone");
  ASSERT_TRUE(WaitHeld("gone", 1));
  Reload(kOps);
  clock_.Advance(seconds(2));
  Settle();
  EXPECT_EQ(Pending("gone"), 2u) << "kept while an attempt is in flight";
  // The in-flight attempt finishes on the old sink and is recorded.
  ASSERT_TRUE(Fake("gone").ReleaseOne(Success()));
  // Recorded; the other may already be dead-lettered too (the next housekeeping pass), so 1 is
  // a state a slow poll can miss.
  ASSERT_TRUE(Eventually([&] { return Pending("gone") <= 1; }));
  auto dead = WaitDeadAdvancing(1);
  ASSERT_EQ(dead.size(), 1u);
  EXPECT_THAT(dead[0].last_error, HasSubstr("\"gone\""));
  EXPECT_TRUE(Eventually([&] { return Pending("gone") == 0; }));
  EXPECT_EQ(Fake("gone").calls(), 1u) << "nothing new starts on a removed sink";
}

TEST_F(DispatcherTest, AReloadThatKeepsASinkKeepsDelivering) {
  Start(kOps);
  Add("r", "ops");
  ASSERT_TRUE(WaitCalls("ops", 1));
  Reload(R"yaml(sinks:
  ops: {type: http, url: "http://127.0.0.1:2/", concurrency: 2}
routes:
  - name: r
    to: [ops]
)yaml");
  Add("r", "ops");
  ASSERT_TRUE(WaitCalls("ops", 2));
  EXPECT_TRUE(Eventually([&] { return Pending("ops") == 0; }));
}

constexpr char kEnrichRoute[] = R"yaml(sinks:
  ops: {type: http, url: "http://127.0.0.1:1/"}
routes:
  - name: enriched
    source: sentry
    enrich: [issue]
    match: ['$issue.project.slug = "pump-station"']
    to:
      - sink: ops
        body: '{{ $issue.title }}'
)yaml";

TEST_F(DispatcherTest, ADeferredDeliveryWithoutAnEnricherIsADeadLetterSayingWhy) {
  Start(kEnrichRoute);
  Add("enriched", "ops", /*deferred=*/true);
  auto dead = WaitDead(1);
  ASSERT_EQ(dead.size(), 1u);
  EXPECT_EQ(dead[0].attempts, 1u);
  EXPECT_THAT(dead[0].last_error, HasSubstr("enrich"));
  EXPECT_EQ(Fake("ops").calls(), 0u);
  EXPECT_EQ(Pending("ops"), 0u);
}

TEST_F(DispatcherTest, ADeferredDeliveryIsDeliveredWhenTheFetchedIssueMatches) {
  enricher_ = std::make_unique<FakeEnricher>(ReadPayload("api.issue-details.GET.example.json"));
  Start(kEnrichRoute);
  Add("enriched", "ops", /*deferred=*/true);
  ASSERT_TRUE(WaitCalls("ops", 1));
  EXPECT_EQ(Fake("ops").last().fields["body"], "This is an example Python exception");
  EXPECT_EQ(enricher_->calls(), 1);
  EXPECT_EQ(enricher_->last_route(), "enriched");
  EXPECT_TRUE(Eventually([&] { return Pending("ops") == 0; }));
}

TEST_F(DispatcherTest, ADeferredDeliveryIsDroppedWhenTheFetchedIssueDoesNotMatch) {
  enricher_ = std::make_unique<FakeEnricher>(std::string(R"({"project":{"slug":"backend"}})"));
  Start(kEnrichRoute);
  Add("enriched", "ops", /*deferred=*/true);
  EXPECT_TRUE(Eventually([&] { return Pending("ops") == 0; }));
  Settle();
  EXPECT_EQ(Fake("ops").calls(), 0u);
  auto dead = store_->ListDead(10);
  ASSERT_TRUE(dead.ok());
  EXPECT_TRUE(dead->empty()) << "filtered, not failed";
  EXPECT_THAT(metrics_.Serialize(), HasSubstr("outcome=\"filtered\""));
}

TEST_F(DispatcherTest, ARetryableEnrichmentFailureIsRetried) {
  enricher_ = std::make_unique<FakeEnricher>(Unavailable("sentry api: HTTP 502"));
  Start(kEnrichRoute);
  Add("enriched", "ops", /*deferred=*/true);
  EXPECT_TRUE(Eventually([&] { return enricher_->calls() >= 1; }));
  storage::DeliveryRecord r;
  EXPECT_TRUE(Eventually([&] {
    auto due = store_->Due("ops", INT64_MAX - 1, 10, {});
    if (!due.ok() || due->empty()) return false;
    r = (*due)[0];
    return r.attempts == 1;
  }));
  EXPECT_EQ(r.due_ms, now() + 1000);
  EXPECT_THAT(r.last_error, HasSubstr("enrichment failed"));
  EXPECT_THAT(r.last_error, HasSubstr("HTTP 502"));
  EXPECT_EQ(Fake("ops").calls(), 0u);
}

// A failed issue fetch never reached the sink: Sentry's API being down says nothing about the
// sink, and must not open its circuit and hold back the routes that do not enrich.
TEST_F(DispatcherTest, EnrichmentFailuresDoNotOpenTheSinksCircuit) {
  enricher_ = std::make_unique<FakeEnricher>(Unavailable("sentry api: HTTP 502"));
  Start(R"yaml(sinks:
  ops: {type: http, url: "http://127.0.0.1:1/"}
routes:
  - name: enriched
    source: sentry
    enrich: [issue]
    match: ['$issue.project.slug = "pump-station"']
    to: [ops]
  - name: plain
    to: [ops]
)yaml");
  for (int i = 0; i < 8; ++i) Add("enriched", "ops", /*deferred=*/true);
  EXPECT_TRUE(Eventually([&] {
    auto due = store_->Due("ops", INT64_MAX - 1, 10, {});
    return due.ok() && due->size() == 8u &&
           std::all_of(due->begin(), due->end(), [](const auto& d) { return d.attempts == 1; });
  }));
  Settle();
  EXPECT_THAT(metrics_.Serialize(), Not(HasSubstr("switchyard_sink_circuit_open{sink=\"ops\"} 1")));
  Add("plain", "ops");
  EXPECT_TRUE(WaitCalls("ops", 1)) << "the sink itself is healthy and its circuit closed";
}

// An enriched delivery's sink request goes out after the issue fetch, and one fetch answers
// every delivery about that issue at once: the sink's token is taken at the send, or four
// deliveries of a `rate: 1/s` sink went out in the same millisecond.
TEST_F(DispatcherTest, EnrichedDeliveriesKeepTheSinksRateWhenTheirFetchesEndTogether) {
  enricher_ = std::make_unique<FakeEnricher>(ReadPayload("api.issue-details.GET.example.json"));
  enricher_->Hold();
  Start(R"yaml(sinks:
  ops: {type: http, url: "http://127.0.0.1:1/", concurrency: 4, rate: 1/s}
routes:
  - name: enriched
    source: sentry
    enrich: [issue]
    match: ['$issue.project.slug = "pump-station"']
    to: [ops]
)yaml");
  for (int i = 0; i < 4; ++i) Add("enriched", "ops", /*deferred=*/true);
  for (int i = 0; i < 4 && enricher_->calls() < 4; ++i) {
    clock_.Advance(seconds(1));
    Settle();
  }
  ASSERT_EQ(enricher_->calls(), 4);
  enricher_->Release();
  ASSERT_TRUE(WaitCalls("ops", 1));
  Settle();
  EXPECT_EQ(Fake("ops").calls(), 1u) << "one token: the others wait for theirs";
  clock_.Advance(seconds(1));
  ASSERT_TRUE(WaitCalls("ops", 2));
  Settle();
  EXPECT_EQ(Fake("ops").calls(), 2u);
  clock_.Advance(seconds(2));
  EXPECT_TRUE(WaitCalls("ops", 3));
  clock_.Advance(seconds(2));
  EXPECT_TRUE(Eventually([&] { return Pending("ops") == 0; }));
  EXPECT_EQ(Fake("ops").calls(), 4u);
}

TEST_F(DispatcherTest, FileSinksAreCalledOffTheDispatcherThread) {
  Start(R"yaml(sinks:
  archive: {type: file, path: ./x.jsonl}
routes:
  - name: r
    to: [archive]
)yaml");
  Add("r", "archive");
  Add("r", "archive");
  ASSERT_TRUE(WaitCalls("archive", 2));
  EXPECT_TRUE(Eventually([&] { return Pending("archive") == 0; }));
}

// A reload releases every old sink and SIGHUP reopens files. A file sink's close waits for its
// pending fdatasync and its reopen for a write in progress; both ran on the dispatcher's thread,
// so no delivery to any sink started meanwhile.
TEST_F(DispatcherTest, AFileSinkSlowToCloseOrReopenHoldsUpNoOtherSink) {
  constexpr char kFileAndHttp[] = R"yaml(sinks:
  archive: {type: file, path: ./x.jsonl}
  ops: {type: http, url: "http://127.0.0.1:1/"}
routes:
  - name: to-archive
    to: [archive]
  - name: to-ops
    to: [ops]
)yaml";
  Start(kFileAndHttp);
  Fake("archive").HoldTeardown(true);
  Reload(kFileAndHttp);  // every sink is rebuilt: the old archive sink closes
  ASSERT_TRUE(Eventually([&] { return Fake("archive").teardowns() >= 1; }));
  Add("to-ops", "ops");
  EXPECT_TRUE(WaitCalls("ops", 1)) << "the dispatcher waited for the file sink to close";
  dispatcher_->ReopenFiles();
  Add("to-ops", "ops");
  EXPECT_TRUE(WaitCalls("ops", 2)) << "the dispatcher waited for the file sink to reopen";
  Fake("archive").HoldTeardown(false);
}

TEST_F(DispatcherTest, StopLeavesAttemptsStillRunningPendingInTheQueue) {
  Fake("ops").SetMode(FakeSink::Mode::kHold);
  Start(kOps);
  Add("r", "ops");
  ASSERT_TRUE(WaitHeld("ops", 1));
  const std::string id = Fake("ops").last().id;
  auto t = std::chrono::steady_clock::now();
  dispatcher_->Stop(milliseconds(50));
  EXPECT_LT(std::chrono::steady_clock::now() - t, seconds(5));
  auto r = Record(id);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->attempts, 0u);
  EXPECT_FALSE(r->dead);
  // A late completion (the dispatcher object still exists) is harmless.
  Fake("ops").ReleaseAll(Success());
  dispatcher_.reset();
  r = Record(id);
  ASSERT_TRUE(r) << "not recorded after Stop: retried after a restart";
}

// An issue fetched while the dispatcher stops is not delivered then, and the attempt stays
// pending: Stop() returns without waiting out its budget (it used to wait for an attempt the
// stopping loop never handled), and the delivery is neither sent, dead nor lost.
TEST_F(DispatcherTest, StopLeavesAnEnrichedAttemptWhoseIssueArrivesDuringItPending) {
  enricher_ = std::make_unique<FakeEnricher>(ReadPayload("api.issue-details.GET.example.json"));
  enricher_->Hold();
  std::promise<void> stopping;
  DispatcherOptions options = Options();
  options.on_stop_acknowledged = [&stopping] { stopping.set_value(); };
  Start(kEnrichRoute, std::move(options));
  const std::string id = Add("enriched", "ops", /*deferred=*/true);  // the event's id
  ASSERT_TRUE(Eventually([&] { return enricher_->calls() == 1; }));
  const auto t0 = std::chrono::steady_clock::now();
  std::thread stopper([&] { dispatcher_->Stop(seconds(60)); });
  stopping.get_future().wait();  // the loop has seen the stop
  enricher_->Release();          // and now the issue arrives
  stopper.join();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, seconds(30)) << "Stop() waited out its budget";
  EXPECT_EQ(Fake("ops").calls(), 0u);
  EXPECT_EQ(Pending("ops"), 1u) << "left pending, retried after a restart";
  auto due = store_->Due("ops", INT64_MAX - 1, 10, {});
  ASSERT_TRUE(due.ok());
  ASSERT_EQ(due->size(), 1u);
  EXPECT_EQ((*due)[0].event_id, id);
  EXPECT_EQ((*due)[0].attempts, 0u);
}

// A reload removed the sink while its enriched attempt was fetching the issue: the delivery is a
// dead letter, like the sink's other deliveries, and is not sent to the removed sink.
TEST_F(DispatcherTest, AnEnrichedAttemptWhoseSinkAReloadRemovedIsADeadLetterNotSentThere) {
  enricher_ = std::make_unique<FakeEnricher>(ReadPayload("api.issue-details.GET.example.json"));
  enricher_->Hold();
  Start(kEnrichRoute);
  Add("enriched", "ops", /*deferred=*/true);
  ASSERT_TRUE(Eventually([&] { return enricher_->calls() == 1; }));
  Reload(R"yaml(sinks:
  other: {type: http, url: "http://127.0.0.1:1/"}
routes:
  - name: enriched
    source: sentry
    enrich: [issue]
    match: ['$issue.project.slug = "pump-station"']
    to: [other]
)yaml");
  Add("enriched", "other");  // delivered once the sinks are rebuilt
  ASSERT_TRUE(WaitCalls("other", 1));
  enricher_->Release();
  auto dead = WaitDead(1);
  ASSERT_EQ(dead.size(), 1u);
  EXPECT_EQ(dead[0].sink, "ops");
  EXPECT_THAT(dead[0].last_error, HasSubstr("no longer configured"));
  EXPECT_EQ(Fake("ops").calls(), 0u);
}

TEST_F(DispatcherTest, StopWaitsForInFlightAttemptsToBeRecorded) {
  Fake("ops").SetMode(FakeSink::Mode::kAsync);
  Start(kOps);
  for (int i = 0; i < 4; ++i) Add("r", "ops");
  ASSERT_TRUE(WaitCalls("ops", 1));
  dispatcher_->Stop(seconds(5));
  Fake("ops").JoinThreads();
  uint64_t pending = Pending("ops");
  EXPECT_EQ(pending + Fake("ops").calls(), 4u)
      << "every started attempt was recorded; the rest stay pending";
}

// --- BackoffDelay ----------------------------------------------------------------------------

config::RetryConfig Retry1s() {
  config::RetryConfig r;
  r.initial = seconds(1);
  r.multiplier = 2;
  r.max_delay = minutes(10);
  r.jitter = 0.2;
  return r;
}

TEST(BackoffDelayTest, GrowsByTheMultiplierFromTheInitialDelay) {
  config::RetryConfig r = Retry1s();
  EXPECT_EQ(BackoffDelay(r, 1, 0.5), milliseconds(1000));
  EXPECT_EQ(BackoffDelay(r, 2, 0.5), milliseconds(2000));
  EXPECT_EQ(BackoffDelay(r, 3, 0.5), milliseconds(4000));
  EXPECT_EQ(BackoffDelay(r, 10, 0.5), milliseconds(512000));
  r.initial = milliseconds(100);
  r.multiplier = 1.5;
  EXPECT_EQ(BackoffDelay(r, 3, 0.5), milliseconds(225));
  r.multiplier = 1;
  EXPECT_EQ(BackoffDelay(r, 7, 0.5), milliseconds(100));
}

TEST(BackoffDelayTest, IsCappedAtMaxDelay) {
  config::RetryConfig r = Retry1s();
  EXPECT_EQ(BackoffDelay(r, 11, 0.5), minutes(10));  // 1024 s > 600 s
  EXPECT_EQ(BackoffDelay(r, 100, 0.5), minutes(10));
  EXPECT_EQ(BackoffDelay(r, 5000, 0.5), minutes(10));  // pow overflows to inf
  r.max_delay = milliseconds(1500);
  EXPECT_EQ(BackoffDelay(r, 2, 0.5), milliseconds(1500));
}

TEST(BackoffDelayTest, JitterStaysWithinItsBounds) {
  config::RetryConfig r = Retry1s();
  EXPECT_EQ(BackoffDelay(r, 1, 0.0), milliseconds(800));
  EXPECT_EQ(BackoffDelay(r, 1, 1.0), milliseconds(1200));
  EXPECT_EQ(BackoffDelay(r, 3, 0.0), milliseconds(3200));
  EXPECT_EQ(BackoffDelay(r, 3, 1.0), milliseconds(4800));
  for (double u = 0; u < 1; u += 0.01) {
    auto d = BackoffDelay(r, 2, u);
    EXPECT_GE(d, milliseconds(1600)) << u;
    EXPECT_LE(d, milliseconds(2400)) << u;
  }
  // At the cap, jitter may shorten the delay but never exceeds max_delay.
  EXPECT_EQ(BackoffDelay(r, 20, 0.0), milliseconds(480000));
  EXPECT_EQ(BackoffDelay(r, 20, 1.0), minutes(10));
  r.jitter = 0;
  EXPECT_EQ(BackoffDelay(r, 2, 0.0), milliseconds(2000));
  EXPECT_EQ(BackoffDelay(r, 2, 1.0), milliseconds(2000));
}

TEST(BackoffDelayTest, ZeroAttemptsIsTreatedAsTheFirst) {
  EXPECT_EQ(BackoffDelay(Retry1s(), 0, 0.5), milliseconds(1000));
}

TEST_F(DispatcherTest, LivenessFailsWhileTheLoopIsWedgedAndReturnsOnceItGoesRound) {
  Start("sinks:\n  ops: {type: http, url: 'http://x/'}\nroutes:\n  - {name: r, to: [ops]}\n");
  EXPECT_TRUE(dispatcher_->Alive(seconds(60)));
  clock_.Advance(seconds(120));  // idle: the loop still goes round every poll
  ASSERT_TRUE(Eventually([&] { return dispatcher_->Alive(seconds(60)); }));
  Fake("ops").Block(true);
  Add("r", "ops");
  ASSERT_TRUE(Eventually([&] { return Fake("ops").blocked_calls() == 1; }));
  EXPECT_TRUE(dispatcher_->Alive(seconds(60)));  // wedged, but not for long yet
  clock_.Advance(seconds(61));
  EXPECT_FALSE(dispatcher_->Alive(seconds(60)));
  EXPECT_FALSE(dispatcher_->Alive(seconds(60)));  // and stays so while wedged
  Fake("ops").Block(false);
  EXPECT_TRUE(Eventually([&] { return dispatcher_->Alive(seconds(60)); }));
  dispatcher_->Stop(seconds(5));
  clock_.Advance(seconds(600));
  EXPECT_TRUE(dispatcher_->Alive(seconds(60)));  // a stopped loop is not a wedged one
}

}  // namespace
}  // namespace switchyard::delivery
