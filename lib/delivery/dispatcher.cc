#include "delivery/dispatcher.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <span>
#include <thread>
#include <variant>

#include "common/allocator.h"
#include "common/blocking_pool.h"
#include "common/log.h"
#include "common/step_aside.h"
#include "common/thread_name.h"
#include "common/token_bucket.h"
#include "common/utf8.h"
#include "json/json_doc.h"
#include "routing/router.h"
#include "rules/event_view.h"
#include "sinks/pushover_sink.h"

namespace switchyard::delivery {

std::chrono::milliseconds BackoffDelay(const config::RetryConfig& retry, uint32_t attempts,
                                       double u) {
  double base = static_cast<double>(retry.initial.count()) *
                std::pow(retry.multiplier, static_cast<double>(attempts > 0 ? attempts - 1 : 0));
  base = std::min(base, static_cast<double>(retry.max_delay.count()));
  double factor = 1.0 + retry.jitter * (2.0 * u - 1.0);
  double ms = std::clamp(base * factor, 0.0, static_cast<double>(retry.max_delay.count()));
  return std::chrono::milliseconds(static_cast<int64_t>(ms));
}

namespace {

// Titles Sentry puts in its payloads, in order of preference (pushover's default message).
const std::vector<std::vector<std::string>> kTitlePaths = {
    {"data", "issue", "title"},        {"data", "event", "title"},    {"data", "error", "title"},
    {"data", "metric_alert", "title"}, {"data", "description_title"}, {"data", "comment"}};

struct SinkState {
  std::string name;
  std::shared_ptr<sinks::Sink> sink;  // shared: in-flight attempts keep a replaced sink alive
  config::SinkConfig config;
  config::RetryConfig retry;
  bool blocking = false;  // file sink: Deliver on the blocking pool
  bool pushover = false;  // its quota is exported after each attempt
  size_t in_flight = 0;
  // Skipped by Due(): attempts in flight, and attempts whose outcome waits to be written.
  storage::DeliveryIdSet in_flight_ids;
  TokenBucket bucket;
  // Circuit breaker.
  uint32_t consecutive_failures = 0;
  bool open = false;
  bool half_open_probe = false;  // one attempt allowed while half-open
  std::string probe_id;          // the delivery of that attempt
  // Monotonic: the breaker's state is never stored, and a wall-clock step must not stretch or
  // cut a cool-down.
  std::chrono::steady_clock::time_point reopen_at{};
  std::chrono::milliseconds cooldown{0};
  bool logged_inactive = false;
  bool removed = false;  // no longer configured; kept only until its in-flight attempts finish
};

sinks::Outcome PermanentOutcome(std::string error) {
  sinks::Outcome o;
  o.kind = sinks::Outcome::Kind::kPermanent;
  o.error = std::move(error);
  return o;
}

// Borrows `e`'s headers: `e` must outlive the result.
rules::EventMeta MetaOf(const storage::StoredEvent& e) {
  rules::EventMeta meta;
  meta.source = e.source;
  meta.resource = e.resource;
  meta.action = e.action;
  meta.installation_org = e.installation_org;
  meta.headers = e.headers;
  return meta;
}

struct Completion {
  storage::DeliveryRecord record;
  sinks::Outcome outcome;
  bool filtered = false;
  std::chrono::steady_clock::time_point started;
  // The attempt failed before the sink was called (the issue fetch of `enrich`): it counts as an
  // attempt, but says nothing about the sink's health (its circuit breaker).
  bool enrichment_failed = false;
};

// An outcome the store refused to record (the disk at its floor, a failed write). Kept and
// written again later; meanwhile its delivery is skipped by Due(), so a refused write never
// turns into the same delivery sent again in a loop. A crash forgets it: the delivery is still
// pending in the store and is attempted again (at least once).
struct Unrecorded {
  enum class Kind { kComplete, kReschedule, kDeadLetter };
  Kind kind;
  storage::DeliveryRecord record;
  int64_t due_ms = 0;  // kReschedule
};

}  // namespace

struct Dispatcher::Impl {
  const config::ConfigHolder& config;
  storage::Store& store;
  SinkFactory factory;
  Enricher* enricher;
  metrics::Metrics& metrics;
  Clock& clock;
  DispatcherOptions options;

  std::thread thread;
  // When the loop last went round (clock.SteadyNow(), ns since its epoch); kNotRunning before
  // the loop starts and once it has ended. Written by the dispatcher thread, read by Alive().
  static constexpr int64_t kNotRunning = INT64_MIN;
  std::atomic<int64_t> last_pass_ns{kNotRunning};
  std::mutex mu;
  std::condition_variable cv;
  std::deque<Completion> completions;              // GUARDED_BY(mu)
  std::vector<storage::DeliveryRecord> completed;  // done, not yet removed; dispatcher thread
  bool wake = false;                               // GUARDED_BY(mu)
  bool config_changed = false;                     // GUARDED_BY(mu)
  bool reopen = false;                             // GUARDED_BY(mu)
  bool stopping = false;                           // GUARDED_BY(mu)

  // Dispatcher thread only.
  std::map<std::string, SinkState> sinks;
  std::shared_ptr<const config::Config> cfg;
  std::shared_ptr<const config::Config> unbuilt_cfg;  // the last config BuildSinks failed for
  std::atomic<size_t> in_flight_total{0};  // written by the dispatcher thread, read by Stop()
  bool stop_acknowledged = false;
  std::vector<Unrecorded> unrecorded;
  // Periodic work runs on the monotonic clock: a wall-clock step back must not stop it.
  std::chrono::steady_clock::time_point next_record_retry{};
  std::chrono::steady_clock::time_point next_housekeeping{};
  std::chrono::steady_clock::time_point next_purge{};  // dead letters and events, each minute
  std::chrono::steady_clock::time_point next_trim{};
  std::mt19937_64 rng{std::random_device{}()};
  json::JsonDoc doc{json::JsonDoc::kMaxDepth};  // events accepted at ingest parse again
  json::JsonDoc issue_doc{json::JsonDoc::kMaxDepth};

  Impl(const config::ConfigHolder& c, storage::Store& s, SinkFactory f, Enricher* e,
       metrics::Metrics& m, Clock& cl, DispatcherOptions o)
      : config(c),
        store(s),
        factory(std::move(f)),
        enricher(e),
        metrics(m),
        clock(cl),
        options(std::move(o)) {}

  // The route of the current config named `name`, or null.
  const config::RouteConfig* FindRoute(const std::string& name) const {
    for (const auto& r : cfg->routes) {
      if (r.name == name) return &r;
    }
    return nullptr;
  }

  double Jitter() {
    if (options.jitter_source) return options.jitter_source();
    return std::uniform_real_distribution<double>(0.0, 1.0)(rng);
  }

  // Builds the sinks of the current config. On failure nothing changes (old config and sinks
  // keep running together), and that config is remembered as unbuilt (unbuilt_cfg).
  Status BuildSinks() {
    std::shared_ptr<const config::Config> next_cfg = config.Get();
    // Every sink is built before any state moves: a failure leaves the running ones untouched.
    std::vector<std::unique_ptr<sinks::Sink>> built;
    for (const config::SinkConfig& sc : next_cfg->sinks) {
      Result<std::unique_ptr<sinks::Sink>> sink = Internal("not built");
      try {
        sink = factory(sc);  // may start a thread (a synced file sink)
      } catch (const std::exception& e) {
        sink = Internal(std::string("building sink \"") + sc.name + "\" failed: " + e.what());
      }
      if (!sink.ok()) {
        // This config, not config.Get() after the return: a reload may have swapped in a
        // newer one meanwhile, which must still be built.
        unbuilt_cfg = next_cfg;  // not tried again until the next reload
        return sink.status();
      }
      built.push_back(std::move(sink).value());
    }
    std::map<std::string, SinkState> next;
    for (size_t i = 0; i < next_cfg->sinks.size(); ++i) {
      const config::SinkConfig& sc = next_cfg->sinks[i];
      SinkState st;
      st.name = sc.name;
      st.sink = std::shared_ptr<sinks::Sink>(std::move(built[i]));
      st.config = sc;
      st.retry = sc.retry.ApplyTo(next_cfg->retry);
      st.blocking = sc.type == "file";
      st.pushover = sc.type == "pushover";
      if (auto old = sinks.find(sc.name); old != sinks.end()) {
        // Keep live counters and breaker state across a reload.
        st.in_flight = old->second.in_flight;
        st.in_flight_ids = std::move(old->second.in_flight_ids);
        // A reload (every SIGHUP) must not grant a fresh burst.
        st.bucket = old->second.bucket;
        st.bucket.tokens = std::min(st.bucket.tokens, sc.rate.burst);
        st.consecutive_failures = old->second.consecutive_failures;
        st.open = old->second.open;
        st.reopen_at = old->second.reopen_at;
        st.cooldown = old->second.cooldown;
        st.half_open_probe = old->second.half_open_probe;
        st.probe_id = old->second.probe_id;
      }
      next.emplace(sc.name, std::move(st));
    }
    // Sinks that disappeared keep their in-flight bookkeeping until those attempts finish.
    for (auto& [name, st] : sinks) {
      if (next.count(name)) continue;
      if (st.in_flight > 0) {
        st.config.concurrency = 0;  // start nothing new
        st.removed = true;
        next.emplace(name, std::move(st));
      } else {
        Forget(st);
      }
    }
    // Outcomes waiting to be written stay held back from the scans of their sink, also when a
    // reload dropped the sink and a later one brings it back.
    for (const Unrecorded& u : unrecorded) {
      if (auto it = next.find(u.record.sink); it != next.end()) {
        it->second.in_flight_ids.insert(u.record.id);
      }
    }
    std::vector<std::string> names;
    for (const auto& s : next_cfg->sinks) names.push_back(s.name);
    // The replaced sinks close on the blocking pool: a file sink's close waits for its pending
    // fdatasync, and no delivery may wait for that. (Attempts still running hold their own
    // reference; the last one closes it wherever it ends.)
    std::vector<std::shared_ptr<sinks::Sink>> replaced;
    for (auto& [name, st] : sinks) {
      if (!st.sink) continue;  // a removed sink still in flight, moved into `next` above
      replaced.push_back(std::move(st.sink));
      // A Pushover sink rebuilt as another type no longer exports a quota (a removed one was
      // forgotten above).
      auto it = next.find(name);
      if (st.pushover && it != next.end() && !it->second.pushover) {
        metrics.ForgetPushoverQuota(name);
      }
    }
    if (!replaced.empty())
      blocking.Post([replaced = std::move(replaced)]() mutable { replaced.clear(); });
    cfg = std::move(next_cfg);
    sinks = std::move(next);
    metrics.DeclareSinks(names);
    return Status::Ok();
  }

  // The config the dispatcher runs is the current one, or one it could not build sinks for
  // (the old ones keep running). Otherwise a reload swapped it and the next pass rebuilds.
  bool ConfigSettled() const {
    std::shared_ptr<const config::Config> current = config.Get();
    return current == cfg || current == unbuilt_cfg;
  }

  // A sink's state is dropped (removed by a reload): its breaker gauge must not stay at 1, nor
  // its last Pushover quota be exported as current.
  void Forget(const SinkState& st) {
    if (st.open) metrics.SetCircuitOpen(st.name, false);
    if (st.pushover) metrics.ForgetPushoverQuota(st.name);
  }

  bool StopRequested() {
    std::lock_guard lock(mu);
    return stopping;
  }

  void Beat() {
    last_pass_ns.store(clock.SteadyNow().time_since_epoch().count(), std::memory_order_relaxed);
  }

  void Loop() {
    struct Ended {
      std::atomic<int64_t>& last;
      ~Ended() { last.store(kNotRunning, std::memory_order_relaxed); }
    } ended{last_pass_ns};
    for (;;) {
      Beat();
      std::deque<Completion> done;
      bool rebuild = false, reopen_files = false, stop = false;
      {
        std::unique_lock lock(mu);
        auto ready = [this] {
          return wake || !completions.empty() || config_changed || reopen ||
                 (stopping && !stop_acknowledged);
        };
        if (!ready()) {
          cv.wait_for(lock, options.poll, ready);
          Beat();  // an idle wait is not a wedge
          // Most likely by the first completion of the HTTP client's round: let the round finish
          // so that one pass takes it (one schedule scan, one RocksDB write, one batch of new
          // requests).
          StepAsideAfterWakeup(lock);
        }
        done.swap(completions);
        // Also when a reload swapped the config without the notice having arrived yet: ingest
        // routes with the new config at once, and a sink or route it adds must not look removed.
        // The notice (config_changed) only wakes the loop: the pointer says whether to rebuild,
        // so a reload rebuilds once, and a config whose sinks failed to build is not retried.
        rebuild = !ConfigSettled();
        reopen_files = reopen;
        stop = stopping;
        wake = config_changed = reopen = false;
      }
      for (Completion& c : done) Record(std::move(c));
      FlushCompleted();
      if (rebuild) {
        if (Status s = BuildSinks(); !s.ok()) {
          log::Error("sinks not rebuilt after reload", {{"error", s.message()}});
        }
      }
      if (reopen_files) {
        // On the blocking pool, after the appends queued there: a reopen waits for a write
        // in progress.
        for (auto& [name, st] : sinks) {
          if (st.blocking) blocking.Post([sink = st.sink] { sink->Reopen(); });
        }
      }
      if (stop) {
        if (!stop_acknowledged && options.on_stop_acknowledged) options.on_stop_acknowledged();
        stop_acknowledged = true;
        FlushCompleted();
        RetryUnrecorded(/*now=*/true);
        LeaveIssuesPending();
        if (in_flight_total == 0) return;
        continue;  // only collect outcomes now
      }
      HandleIssues();  // first: an enriched delivery waiting for a rate token gets the next one
      StartDue();
      Housekeeping();
    }
  }

  void StartDue() {
    FlushCompleted();  // a delivery just recorded as done must not be read as due again
    RetryUnrecorded(/*now=*/false);
    // The store refuses writes and this many outcomes wait in memory: start no more attempts
    // (each would only add one, and slow every scan, which skips them) until it takes them.
    if (unrecorded.size() >= kMaxUnrecorded) return;
    const int64_t now_ms = clock.NowMillis();
    const auto steady_now = clock.SteadyNow();
    for (auto& [name, st] : sinks) {
      if (!st.sink->active()) {
        if (!st.logged_inactive) {
          log::Warn("sink inactive: Pushover token or user key is empty; routes skip it",
                    {{"sink", name}});
          st.logged_inactive = true;
        }
        continue;
      }
      size_t limit =
          st.config.concurrency > st.in_flight ? st.config.concurrency - st.in_flight : 0;
      if (st.open) {
        if (steady_now < st.reopen_at || st.half_open_probe) continue;
        limit = std::min<size_t>(limit, 1);  // half-open: one probe
      }
      if (limit == 0) continue;
      limit = std::min(limit, options.max_scan);
      // A delivery dead-lettered for its age uses no slot: reading goes on (up to max_scan) until
      // `limit` attempts have started, or a stale backlog (after a long stop) would hold back
      // the fresh deliveries behind it at `concurrency` a pass.
      size_t started = 0, read = 0;
      bool stale = true, rate_limited = false;
      while (stale && !rate_limited && started < limit && read < options.max_scan) {
        auto due = store.Due(name, now_ms, limit - started, st.in_flight_ids);
        if (!due.ok()) {
          log::Error("reading due deliveries failed",
                     {{"sink", name}, {"error", due.status().message()}});
          break;
        }
        if (due->empty()) break;
        stale = false;
        for (storage::DeliveryRecord& d : due.value()) {
          ++read;
          if (PastMaxAge(st, d, now_ms)) {
            DeadLetterStale(std::move(d));  // costs no token and is no probe
            stale = true;
            continue;
          }
          // An enriched delivery takes its token when it is sent, after the issue fetch
          // (HandleIssues): fetches that end together must not send together.
          if (!d.deferred) {
            if (!st.bucket.Available(st.config.rate.per_second, st.config.rate.burst, steady_now)) {
              rate_limited = true;
              break;
            }
            st.bucket.Take(st.config.rate.per_second);
          }
          if (st.open) {
            st.half_open_probe = true;
            st.probe_id = d.id;
          }
          StartAttempt(st, std::move(d));
          ++started;
        }
      }
    }
  }

  // True when `d` is older than its max_age by more than the dispatcher's lag allows for: the
  // last attempt Record() schedules is at max_age exactly, and a pass may see it a little late.
  bool PastMaxAge(const SinkState& st, const storage::DeliveryRecord& d, int64_t now_ms) const {
    const int64_t grace = std::max<int64_t>(
        options.poll.count(), std::min<int64_t>(st.retry.max_age.count() / 10, kMaxAgeGraceMs));
    return now_ms - d.created_ms > st.retry.max_age.count() + grace;
  }
  static constexpr int64_t kMaxAgeGraceMs = 60000;

  // A delivery held past its age (an open circuit, the rate, an inactive sink, a long stop) is
  // not sent stale: it becomes a dead letter saying so.
  void DeadLetterStale(storage::DeliveryRecord d) {
    d.last_error += d.last_error.empty() ? "" : " ";
    d.last_error += "(max_age reached before an attempt)";
    DeadLetter(std::move(d));
  }
  static constexpr size_t kMaxUnrecorded = 10000;

  // Renders the route's fields for this sink and calls the sink (or the enricher first).
  void StartAttempt(SinkState& st, storage::DeliveryRecord d) {
    auto started = clock.SteadyNow();
    ++st.in_flight;
    ++in_flight_total;
    st.in_flight_ids.insert(d.id);
    auto fail = [&](sinks::Outcome::Kind kind, std::string error) {
      Completion c{std::move(d), {}, false, started};
      c.outcome.kind = kind;
      c.outcome.error = std::move(error);
      Record(std::move(c));
    };

    auto event = store.Get(d.event_id);
    if (!event.ok()) return fail(sinks::Outcome::Kind::kRetry, event.status().message());
    if (!event.value()) {
      return fail(sinks::Outcome::Kind::kPermanent, "event " + d.event_id + " no longer stored");
    }
    std::shared_ptr<const storage::StoredEvent> shared_event = std::move(event).value();

    const config::RouteConfig* route = FindRoute(d.route);
    // A route a reload removed (or renamed): its templates are gone, and sending without them
    // would send what the route never meant to (the raw payload instead of a `body` template).
    // A dead letter, like a removed sink's deliveries: replayable once the route is back.
    if (!route) {
      // Unless a reload swapped the config during this pass: then it may be a new route, and
      // the delivery waits (still pending) for the next pass, which rebuilds first.
      if (!ConfigSettled()) {
        // Not attempted: if it was the half-open probe, the next one may go.
        if (st.open && st.half_open_probe && st.probe_id == d.id) st.half_open_probe = false;
        return EndInFlight(d);
      }
      return fail(sinks::Outcome::Kind::kPermanent, "route no longer configured");
    }
    if (d.deferred) {
      if (!enricher) {
        return fail(sinks::Outcome::Kind::kPermanent,
                    "route needs enrichment (enrich: [issue]), which is not available");
      }
      std::string route_name = d.route;
      enricher->FetchIssue(*shared_event, route_name,
                           [this, d, shared_event, started](
                               Result<std::string> issue,
                               std::optional<std::chrono::milliseconds> retry_after) mutable {
                             PostIssue(std::move(d), std::move(shared_event), std::move(issue),
                                       retry_after, started);
                           });
      return;
    }
    Deliver(st, std::move(d), std::move(shared_event), nullptr, /*doc_holds_event=*/false, started);
  }

  // An enrichment result arrives on another thread: continue on the dispatcher thread.
  struct IssueReady {
    storage::DeliveryRecord d;
    std::shared_ptr<const storage::StoredEvent> event;
    Result<std::string> issue;
    std::chrono::steady_clock::time_point started;
    bool decided = false;  // routed to its sink; waits only for the sink's rate token
  };
  std::deque<IssueReady> issues;  // GUARDED_BY(mu)

  // Declared last so it is destroyed first: its tasks call back into the members above.
  BlockingPool blocking{1};

  void PostIssue(storage::DeliveryRecord d, std::shared_ptr<const storage::StoredEvent> e,
                 Result<std::string> issue, std::optional<std::chrono::milliseconds> retry_after,
                 std::chrono::steady_clock::time_point started) {
    // Decide and deliver on the dispatcher thread (through `issues`); failures complete here.
    // A route without `enrich` waited only for an earlier `stop` route that reads the issue: if
    // there is no issue to fetch (a permanent failure), that route cannot match, and this one
    // is decided without it.
    if (!issue.ok() && (issue.status().retryable() || NeedsIssue(d.route))) {
      sinks::Outcome outcome;
      outcome.kind = issue.status().retryable() ? sinks::Outcome::Kind::kRetry
                                                : sinks::Outcome::Kind::kPermanent;
      outcome.error = "enrichment failed: " + issue.status().message();
      outcome.retry_after = retry_after;
      Complete({std::move(d), std::move(outcome), false, started, /*enrichment_failed=*/true});
      return;
    }
    std::lock_guard lock(mu);
    issues.push_back({std::move(d), std::move(e), std::move(issue), started});
    wake = true;
    cv.notify_one();
  }

  // True unless the route is configured without `enrich` (called on any thread).
  bool NeedsIssue(const std::string& route_name) {
    std::shared_ptr<const config::Config> current = config.Get();
    for (const auto& r : current->routes) {
      if (r.name == route_name) return routing::RouteNeedsIssue(r);
    }
    return true;
  }

  // Renders the route's fields for this sink and starts the attempt. `doc_holds_event` says
  // `doc` already holds this event's parse (enriched routes), so it is not parsed twice.
  void Deliver(SinkState& st, storage::DeliveryRecord d,
               std::shared_ptr<const storage::StoredEvent> event, const json::JsonDoc* issue,
               bool doc_holds_event, std::chrono::steady_clock::time_point started) {
    sinks::Delivery delivery;
    delivery.id = d.id;
    delivery.route = d.route;
    delivery.attempt = static_cast<int>(d.attempts) + 1;
    delivery.event = event;
    // The body is parsed only when something here reads it: the route's field templates for
    // this sink, the sink's own templates, or the default title (Pushover's message fallback).
    // A plain http or file sink forwards the stored bytes untouched.
    const config::RouteConfig* route_cfg = FindRoute(d.route);
    const auto* http = std::get_if<config::HttpSinkConfig>(&st.config.settings);
    bool needs_doc =
        st.config.type == "pushover" ||
        (http && (http->body || http->url_template || !http->header_templates.empty()));
    if (route_cfg && !needs_doc) {
      for (const auto& t : route_cfg->to) needs_doc |= t.sink == st.name && !t.fields.empty();
    }
    if (needs_doc && (doc_holds_event || doc.Parse(event->body).ok())) {
      for (const auto& path : kTitlePaths) {
        if (auto t = doc.GetString(std::span<const std::string>(path)); t && !t->empty()) {
          delivery.default_title = std::string(*t);
          break;
        }
      }
      const rules::EventMeta meta = MetaOf(*event);
      rules::PayloadEventView view(doc, meta, issue);
      if (route_cfg) {
        for (const auto& t : route_cfg->to) {
          if (t.sink != st.name) continue;
          for (const auto& [field, tmpl] : t.fields) delivery.fields[field] = tmpl.Render(view);
        }
      }
      if (http) {
        // The sink's own body is the default: a route target's `body` wins.
        if (http->body && !delivery.fields.contains("body")) {
          delivery.fields["body"] = http->body->Render(view);
        }
        if (http->url_template) delivery.url = http->url_template->Render(view);
        for (const auto& [name, tmpl] : http->header_templates) {
          delivery.headers[name] = tmpl.Render(view);
        }
      }
    }
    std::shared_ptr<sinks::Sink> sink = st.sink;
    auto finish = [this, d = std::move(d), started](sinks::Outcome outcome) mutable {
      Complete({std::move(d), std::move(outcome), false, started});
    };
    if (st.blocking) {
      blocking.Post([sink, delivery = std::move(delivery), finish = std::move(finish)]() mutable {
        sink->Deliver(delivery, std::move(finish));
      });
    } else {
      sink->Deliver(delivery, std::move(finish));
    }
  }

  // Called on sink threads. Like the store's Append: notifies only when the list was empty (the
  // loop takes the whole list at once) and after the unlock, so the woken loop does not block
  // on `mu` straight away.
  void Complete(Completion c) {
    bool was_empty;
    {
      std::lock_guard lock(mu);
      was_empty = completions.empty();
      completions.push_back(std::move(c));
    }
    if (was_empty) cv.notify_one();
  }

  // While stopping: enriched attempts whose issue has arrived are not sent now. They end as if
  // never started and stay pending, as attempts cut off by the stop do; without this, Stop()
  // waited for them until its whole budget was gone.
  void LeaveIssuesPending() {
    std::deque<IssueReady> ready;
    {
      std::lock_guard lock(mu);
      ready.swap(issues);
    }
    for (IssueReady& r : ready) EndInFlight(r.d);
  }

  void HandleIssues() {
    std::deque<IssueReady> ready;
    {
      std::lock_guard lock(mu);
      ready.swap(issues);
    }
    std::deque<IssueReady> waiting;  // decided to send, but the sink's rate has no token yet
    const auto steady_now = clock.SteadyNow();
    for (IssueReady& r : ready) {
      auto it = sinks.find(r.d.sink);
      const config::RouteConfig* route = FindRoute(r.d.route);
      // A sink a reload removed is kept only for its attempts in flight: its other deliveries
      // become dead letters, and so does this one rather than go to it after the issue fetch.
      if (it == sinks.end() || it->second.removed || !route) {
        Record({std::move(r.d), PermanentOutcome("route or sink no longer configured"), false,
                r.started});
        continue;
      }
      SinkState& st = it->second;
      auto has_token = [&] {
        return st.bucket.Available(st.config.rate.per_second, st.config.rate.burst, steady_now);
      };
      // Decided and still without a token: not parsed again until it has one.
      if (r.decided && !has_token()) {
        waiting.push_back(std::move(r));
        continue;
      }
      const bool fetched = r.issue.ok();
      if ((fetched && !issue_doc.Parse(r.issue.value()).ok()) || !doc.Parse(r.event->body).ok()) {
        Record({std::move(r.d), PermanentOutcome("issue or event is not valid JSON"), false,
                r.started});
        continue;
      }
      if (!r.decided) {
        const rules::EventMeta meta = MetaOf(*r.event);
        rules::PayloadEventView view(doc, meta, fetched ? &issue_doc : nullptr);
        if (!routing::RouteSelected(*cfg, {r.event->source, r.event->resource, r.event->action},
                                    view, route->name, fetched)) {
          Completion c{std::move(r.d), {}, true, r.started};
          Record(std::move(c));
          continue;
        }
        r.decided = true;
        if (!has_token()) {
          waiting.push_back(std::move(r));
          continue;
        }
      }
      st.bucket.Take(st.config.rate.per_second);
      if (r.d.counts_match) {
        // Once per event: cleared here, and a retry stores the record without it.
        metrics.RouteMatched(route->name);
        r.d.counts_match = false;
      }
      Deliver(st, std::move(r.d), std::move(r.event), fetched ? &issue_doc : nullptr,
              /*doc_holds_event=*/true, r.started);
    }
    if (!waiting.empty()) {
      std::lock_guard lock(mu);
      issues.insert(issues.begin(), std::make_move_iterator(waiting.begin()),
                    std::make_move_iterator(waiting.end()));
    }
  }

  // Ends an attempt's in-flight accounting: its sink's count and id, and the total Stop() waits
  // on. Dispatcher thread only.
  void EndInFlight(const storage::DeliveryRecord& d) {
    if (auto it = sinks.find(d.sink); it != sinks.end()) {
      SinkState& st = it->second;
      if (st.in_flight > 0) --st.in_flight;
      st.in_flight_ids.erase(d.id);
    }
    // Stop() may zero the counter concurrently: never decrement below zero.
    size_t n = in_flight_total.load();
    while (n > 0 && !in_flight_total.compare_exchange_weak(n, n - 1)) {
    }
    cv.notify_all();  // Stop() may be waiting for in-flight attempts to drain
  }

  // Applies one attempt's outcome to the queue. Dispatcher thread only.
  void Record(Completion c) {
    storage::DeliveryRecord& d = c.record;
    auto it = sinks.find(d.sink);
    EndInFlight(d);
    const int64_t now_ms = clock.NowMillis();
    const auto steady_now = clock.SteadyNow();
    double seconds = std::chrono::duration<double>(steady_now - c.started).count();

    SinkState* st = it != sinks.end() ? &it->second : nullptr;
    if (st && st->pushover && !c.filtered) {
      if (auto q = sinks::PushoverQuotaOf(st->sink.get())) {
        metrics.SetPushoverQuota(st->name, static_cast<double>(q->remaining),
                                 static_cast<double>(q->limit), static_cast<double>(q->reset));
      }
    }
    // The half-open probe: its outcome decides the breaker. One that says nothing about the
    // sink's health (filtered, permanent, a failed issue fetch) lets the next probe go.
    const bool probe = st && st->open && st->half_open_probe && st->probe_id == d.id;
    if (probe &&
        (c.filtered || c.enrichment_failed || c.outcome.kind == sinks::Outcome::Kind::kPermanent)) {
      st->half_open_probe = false;
    }

    if (c.filtered) {
      metrics.Delivery(d.sink, "filtered");
      completed.push_back(std::move(d));
      return;
    }
    metrics.ObserveDeliverySeconds(d.sink, seconds);
    ++d.attempts;
    if (d.first_attempt_ms == 0) d.first_attempt_ms = now_ms;
    d.last_attempt_ms = now_ms;
    const sinks::Outcome& o = c.outcome;

    if (o.kind == sinks::Outcome::Kind::kSuccess) {
      metrics.Delivery(d.sink, "success");
      if (st) BreakerSuccess(*st);
      completed.push_back(std::move(d));
      return;
    }
    // At most 512 bytes, cut on a UTF-8 character boundary.
    d.last_error = std::string(Utf8Prefix(o.error, 512));
    const config::RetryConfig retry = st ? st->retry : cfg->retry;
    // Time left before max_age (durations are at most 100 years: this cannot overflow).
    const std::chrono::milliseconds left =
        retry.max_age - std::chrono::milliseconds(std::max<int64_t>(0, now_ms - d.created_ms));
    bool dead = o.kind == sinks::Outcome::Kind::kPermanent;
    if (!dead) {
      if (st && !c.enrichment_failed) BreakerFailure(*st, steady_now, probe);
      dead = d.attempts >= retry.max_attempts || left.count() <= 0;
      if (dead && o.kind == sinks::Outcome::Kind::kRetry) {
        d.last_error +=
            d.attempts >= retry.max_attempts ? " (max_attempts reached)" : " (max_age reached)";
      }
    }
    if (dead) {
      DeadLetter(std::move(d));
      return;
    }
    // No retry is scheduled past max_age. What the sink asked for (Retry-After, capped at
    // max_delay; a sink's own minimum) binds, the backoff does not: a backoff that would end
    // past max_age is cut to one last attempt at max_age, unless less than `initial` is left or
    // the sink asks to wait past it; then the delivery is dead now.
    std::chrono::milliseconds asked = o.min_retry;
    if (o.retry_after) asked = std::max(asked, std::min(*o.retry_after, retry.max_delay));
    std::chrono::milliseconds delay = std::max(BackoffDelay(retry, d.attempts, Jitter()), asked);
    if (delay > left) {
      if (asked > left || left < retry.initial) {
        d.last_error += " (max_age reached before the next attempt)";
        DeadLetter(std::move(d));
        return;
      }
      delay = left;
    }
    metrics.Delivery(d.sink, "retry");
    const int64_t due_ms = now_ms + delay.count();
    if (Status s = store.Reschedule(d, due_ms); !s.ok()) {
      Unrecord({Unrecorded::Kind::kReschedule, std::move(d), due_ms}, s);
    }
  }

  // `log_each`: false where the caller logs one line for a batch (a removed sink's backlog).
  void DeadLetter(storage::DeliveryRecord d, bool log_each = true) {
    metrics.Delivery(d.sink, "dead");
    if (log_each) {
      log::Warn("delivery dead-lettered", {{"id", d.id},
                                           {"sink", d.sink},
                                           {"route", d.route},
                                           {"attempts", std::to_string(d.attempts)},
                                           {"error", d.last_error}});
    }
    if (Status s = store.DeadLetter(d); !s.ok()) {
      Unrecord({Unrecorded::Kind::kDeadLetter, std::move(d), 0}, s);
    }
  }

  // Keeps an outcome the store refused, and holds its delivery back from Due() until it is
  // written (it is neither in flight nor due again: its attempt is over).
  void Unrecord(Unrecorded u, const Status& why) {
    log::Error("recording delivery outcome failed; kept and written again later",
               {{"id", u.record.id}, {"error", why.message()}});
    if (auto it = sinks.find(u.record.sink); it != sinks.end()) {
      it->second.in_flight_ids.insert(u.record.id);
    }
    unrecorded.push_back(std::move(u));
  }

  // Writes the outcomes the store refused before, at most once a second (always when `now`).
  // The ones written are released; the rest stay held.
  void RetryUnrecorded(bool now) {
    if (unrecorded.empty()) return;
    const auto steady_now = clock.SteadyNow();
    if (!now && steady_now < next_record_retry) return;
    next_record_retry = steady_now + std::chrono::seconds(1);
    std::vector<storage::DeliveryRecord> completes;
    for (const Unrecorded& u : unrecorded) {
      if (u.kind == Unrecorded::Kind::kComplete) completes.push_back(u.record);
    }
    const bool completes_written = completes.empty() || store.CompleteAll(completes).ok();
    std::vector<Unrecorded> left;
    for (Unrecorded& u : unrecorded) {
      bool written = false;
      switch (u.kind) {
        case Unrecorded::Kind::kComplete:
          written = completes_written;
          break;
        case Unrecorded::Kind::kReschedule:
          written = store.Reschedule(u.record, u.due_ms).ok();
          break;
        case Unrecorded::Kind::kDeadLetter:
          written = store.DeadLetter(u.record).ok();
          break;
      }
      if (!written) {
        left.push_back(std::move(u));
      } else if (auto it = sinks.find(u.record.sink); it != sinks.end()) {
        it->second.in_flight_ids.erase(u.record.id);
      }
    }
    if (!left.empty()) {
      log::Error("delivery outcomes still not recorded; retrying every second",
                 {{"count", std::to_string(left.size())}});
    }
    unrecorded = std::move(left);
  }

  void BreakerSuccess(SinkState& st) {
    if (st.open) log::Info("sink recovered; circuit closed", {{"sink", st.name}});
    st.consecutive_failures = 0;
    st.open = false;
    st.half_open_probe = false;
    st.cooldown = std::chrono::milliseconds(0);
    metrics.SetCircuitOpen(st.name, false);
  }

  void BreakerFailure(SinkState& st, std::chrono::steady_clock::time_point now, bool probe) {
    ++st.consecutive_failures;
    // While open, only the probe's failure re-opens (doubling the cool-down); attempts that were
    // already running when it opened must not extend it.
    if (st.open && !probe) return;
    if (!st.open && st.consecutive_failures < options.breaker_failures) return;
    st.cooldown = st.cooldown.count() == 0
                      ? options.breaker_cooldown
                      : std::min(st.cooldown * 2, options.breaker_max_cooldown);
    st.open = true;
    st.half_open_probe = false;
    st.reopen_at = now + st.cooldown;
    metrics.SetCircuitOpen(st.name, true);
    log::Warn("sink keeps failing; circuit open, deliveries paused",
              {{"sink", st.name}, {"cooldown_ms", std::to_string(st.cooldown.count())}});
  }

  // Removes the deliveries recorded as delivered or filtered since the last flush, in one write.
  // Called before any read of due deliveries. What the store refuses is kept (Unrecord) and
  // written again later, and is not read as due meanwhile.
  void FlushCompleted() {
    if (completed.empty()) return;
    if (Status s = store.CompleteAll(completed); !s.ok()) {
      for (storage::DeliveryRecord& d : completed) {
        Unrecord({Unrecorded::Kind::kComplete, std::move(d), 0}, s);
      }
    }
    completed.clear();
  }

  // Gauges, dead-letter retention, deliveries of sinks that are no longer configured. ~1/s.
  void Housekeeping() {
    FlushCompleted();
    const int64_t now_ms = clock.NowMillis();
    const auto steady_now = clock.SteadyNow();
    if (steady_now < next_housekeeping) return;
    next_housekeeping = steady_now + std::chrono::seconds(1);
    // Removed sinks whose last attempts have finished: forget them, so that their remaining
    // deliveries are dead-lettered below.
    std::erase_if(sinks, [this](const auto& entry) {
      if (!entry.second.removed || entry.second.in_flight != 0) return false;
      Forget(entry.second);
      return true;
    });
    // Sinks held back (open circuit, inactive): what passes max_age while they wait becomes a
    // dead letter now, not when they next send (StartDue checks the ones it reads). Not while
    // the store refuses writes: each refused dead letter is held in memory, and the next pass
    // would read the next max_scan.
    for (auto& [name, st] : sinks) {
      const bool held = st.open || !st.sink->active();
      if (!held || st.removed || !unrecorded.empty()) continue;
      auto due = store.Due(name, now_ms, options.max_scan, st.in_flight_ids);
      if (!due.ok()) continue;
      for (storage::DeliveryRecord& d : due.value()) {
        if (PastMaxAge(st, d, now_ms)) DeadLetterStale(std::move(d));
        if (!unrecorded.empty()) break;
      }
    }
    // A config the dispatcher has not rebuilt for yet may configure what looks removed here.
    const bool config_current = ConfigSettled();
    storage::QueueCounts counts = store.Counts();
    for (const auto& [name, c] : counts.sinks) {
      metrics.SetQueueDepth(name, static_cast<double>(c.pending), static_cast<double>(c.dead));
      // Not while outcomes wait to be written: the store refuses writes, and a held delivery
      // must not be dead-lettered behind its recorded success.
      if (c.pending > 0 && !sinks.count(name) && config_current && unrecorded.empty()) {
        // The sink was removed from the config: dead-letter its deliveries (replayable once the
        // sink is configured again) rather than keep them pending forever.
        auto due = store.Due(name, INT64_MAX, options.max_scan, {});
        if (due.ok()) {
          size_t dead = 0;
          for (storage::DeliveryRecord& d : due.value()) {
            d.last_error = "sink \"" + name + "\" is not configured";
            // Counted once: a refused write is kept and written again (RetryUnrecorded), and
            // this scan waits until it is. One line per scan, not per delivery: a backlog
            // of 100k would otherwise be 100k lines.
            DeadLetter(std::move(d), /*log_each=*/false);
            ++dead;
            if (!unrecorded.empty()) break;
          }
          if (dead > 0) {
            log::Warn("deliveries of a removed sink dead-lettered",
                      {{"sink", name}, {"count", std::to_string(dead)}});
          }
        }
      }
    }
    // The purges (dead letters past dlq_retention, then events) run once a minute: the first
    // reads every dead letter.
    const bool purge = steady_now >= next_purge;
    if (purge) {
      next_purge = steady_now + std::chrono::seconds(60);
      // In calls of at most kMaxPurgedPerCall, each a beat of the loop: a million expired dead
      // letters (a retention lowered by a reload) take many seconds, not a wedge.
      size_t removed = 0;
      for (;;) {
        auto purged = store.PurgeDead(now_ms - cfg->storage.dlq_retention.count());
        if (!purged.ok()) {
          log::Error("removing dead letters past dlq_retention failed",
                     {{"error", purged.status().message()}});
          break;
        }
        removed += purged.value();
        Beat();
        if (purged.value() < storage::DeliveryQueue::kMaxPurgedPerCall || StopRequested()) break;
      }
      if (removed > 0) {
        log::Info("dead letters past dlq_retention removed", {{"count", std::to_string(removed)}});
      }
    }
    // A burst (thousands of connections each sending a request) leaves freed heap pages that
    // the allocator keeps (jemalloc returns them over dirty_decay_ms, but only while it is
    // called); hand them back every 10 s so RSS follows the steady state, not the peak. Runs
    // here, off the I/O threads: it takes a few milliseconds on a large heap.
    if (steady_now >= next_trim) {
      next_trim = steady_now + std::chrono::seconds(10);
      ReleaseFreeMemory();
    }
    // Events: once no delivery should still need them. A delivery dies at the latest max_age
    // after its event arrived (or when attempted after that), and stays a dead letter
    // dlq_retention; a day's margin covers a paused (circuit-open) sink. The store itself keeps
    // any event a delivery still names (a replayed dead letter can outlive this bound).
    if (purge) {
      int64_t max_age = cfg->retry.max_age.count();
      for (const auto& [name, st] : sinks) max_age = std::max(max_age, st.retry.max_age.count());
      const int64_t keep = max_age + cfg->storage.dlq_retention.count() + 86400000;
      if (Status s = store.PurgeEventsBefore(now_ms - keep); !s.ok()) {
        log::Error("removing events past retention failed", {{"error", s.message()}});
      }
    }
  }
};

Dispatcher::Dispatcher(const config::ConfigHolder& config, storage::Store& store,
                       SinkFactory factory, Enricher* enricher, metrics::Metrics& metrics,
                       Clock& clock, DispatcherOptions options)
    : impl_(std::make_unique<Impl>(config, store, std::move(factory), enricher, metrics, clock,
                                   std::move(options))) {}

Dispatcher::~Dispatcher() { Stop(std::chrono::milliseconds(0)); }

Status Dispatcher::Start() {
  if (Status s = impl_->BuildSinks(); !s.ok()) return s;
  impl_->thread = std::thread([this] {
    NameThisThread("sy-dispatch");
    impl_->Loop();
  });
  return Status::Ok();
}

bool Dispatcher::Alive(std::chrono::milliseconds limit) const {
  const int64_t last = impl_->last_pass_ns.load(std::memory_order_relaxed);
  if (last == Impl::kNotRunning) return true;
  const int64_t now = impl_->clock.SteadyNow().time_since_epoch().count();
  return now - last <= std::chrono::duration_cast<std::chrono::nanoseconds>(limit).count();
}

void Dispatcher::Wake() {
  std::lock_guard lock(impl_->mu);
  impl_->wake = true;
  impl_->cv.notify_one();
}

void Dispatcher::ConfigChanged() {
  std::lock_guard lock(impl_->mu);
  impl_->config_changed = true;
  impl_->cv.notify_one();
}

void Dispatcher::ReopenFiles() {
  std::lock_guard lock(impl_->mu);
  impl_->reopen = true;
  impl_->cv.notify_one();
}

void Dispatcher::Stop(std::chrono::milliseconds timeout) {
  if (!impl_->thread.joinable()) return;
  {
    std::lock_guard lock(impl_->mu);
    impl_->stopping = true;
    impl_->cv.notify_one();
  }
  // The loop exits once nothing is in flight; give in-flight attempts `timeout` to finish.
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    {
      std::lock_guard lock(impl_->mu);
      if (impl_->in_flight_total == 0 && impl_->completions.empty()) break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  {
    std::lock_guard lock(impl_->mu);
    impl_->in_flight_total = 0;  // abandon the rest: they stay pending in the queue
    impl_->cv.notify_one();
  }
  impl_->thread.join();
}

}  // namespace switchyard::delivery
