// Dispatcher: takes due deliveries from the DeliveryQueue and hands them to sinks, per sink at most
// `concurrency` at once and at most `rate` per second, and records each outcome: delivered →
// removed; transient failure → rescheduled with exponential backoff (initial × multiplier^n, capped
// at max_delay, ± jitter, never sooner than Retry-After); permanent failure, max_attempts or
// max_age → dead letter. No retry is scheduled past max_age: a backoff that would end past it is
// cut to one last attempt at max_age (none if less than `initial` is left, or the sink asks to
// wait past it). A sink that keeps failing trips its circuit breaker: it is paused for a
// cool-down (doubling, capped) instead of burning attempts, then tried with one delivery.
//
// Threads: one dispatcher thread owns the schedule and all queue writes; sinks complete on their
// own threads and hand outcomes back through a queue. Blocking sinks (file) run on a BlockingPool.
// Time and randomness are injected (Clock, jitter source) so backoff is tested without sleeping.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "common/clock.h"
#include "common/status.h"
#include "config/config_holder.h"
#include "metrics/metrics.h"
#include "sinks/sink.h"
#include "storage/event_store.h"

namespace switchyard::delivery {

// Fetches the Sentry issue for an event (enrich: [issue]); the JSON text of the issue, or an
// error (retryable errors are retried like failed deliveries, not sooner than `retry_after` when
// the API said so). `done` runs exactly once, on any thread, and must not block.
class Enricher {
 public:
  using IssueCallback = std::function<void(
      Result<std::string> issue, std::optional<std::chrono::milliseconds> retry_after)>;
  virtual ~Enricher() = default;
  virtual void FetchIssue(const storage::StoredEvent& event, const std::string& route,
                          IssueCallback done) = 0;
};

struct DispatcherOptions {
  size_t max_scan = 256;                            // deliveries read per sink per round
  std::chrono::milliseconds poll{100};              // re-check for due retries at least this often
  uint32_t breaker_failures = 5;                    // consecutive transient failures to open
  std::chrono::milliseconds breaker_cooldown{10000};
  std::chrono::milliseconds breaker_max_cooldown{300000};
  std::function<double()> jitter_source;            // uniform [0,1); default: seeded mt19937
  // Tests: called once on the dispatcher thread when its loop has seen Stop(); from then on no
  // attempt starts.
  std::function<void()> on_stop_acknowledged;
};

class Dispatcher {
 public:
  using SinkFactory =
      std::function<Result<std::unique_ptr<sinks::Sink>>(const config::SinkConfig&)>;

  // All references must outlive the dispatcher. `enricher` may be null (then routes with
  // `enrich` dead-letter with a clear error).
  Dispatcher(const config::ConfigHolder& config, storage::Store& store, SinkFactory factory,
             Enricher* enricher, metrics::Metrics& metrics, Clock& clock,
             DispatcherOptions options = {});
  ~Dispatcher();

  // Builds the sinks of the current config and starts the dispatcher thread.
  Status Start();
  // New deliveries were stored: look now rather than at the next poll. Cheap; any thread.
  void Wake();
  // The config was swapped: rebuild sinks (in-flight attempts finish on the old ones). Any thread.
  void ConfigChanged();
  // Reopen file sinks (SIGHUP). Any thread.
  void ReopenFiles();
  // Liveness, for the service watchdog: false only while the delivery loop is running and has
  // not gone round for `limit` (it goes round at least every `poll`, so only a wedged thread —
  // a sink or a store call that blocks — misses that). True before Start and once the loop
  // ended. Any thread; reads one atomic.
  bool Alive(std::chrono::milliseconds limit) const;
  // Stops starting attempts, waits up to `timeout` for in-flight ones to be recorded, joins.
  // Attempts still running then stay pending in the queue and are retried after a restart.
  void Stop(std::chrono::milliseconds timeout);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// The backoff before attempt `attempts + 1`, given `attempts` failed ones (>= 1), with jitter
// drawn from `u` in [0,1): initial × multiplier^(attempts-1), capped at max_delay, ± jitter.
std::chrono::milliseconds BackoffDelay(const config::RetryConfig& retry, uint32_t attempts,
                                       double u);

}  // namespace switchyard::delivery
