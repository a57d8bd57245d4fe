// IssueEnricher: `enrich: [issue]` — fetches the Sentry issue an event is about
// (GET /api/0/organizations/<org>/issues/<id>/, the id from data.issue.id, data.event.issue_id or
// data.error.issue_id) with the event's installation token, for routes decided after the fetch.
//
// A short-lived cache (`ttl`, at most `max_entries`) and single-flight per issue keep a burst of
// events about one issue to one API call. After a retryable API failure (5xx, 429, a timeout)
// an installation's fetches fail fast, without a call, for Sentry's Retry-After or a backoff of
// 1 s doubling to 60 s (with that wait as their retry_after): an outage of Sentry's API costs
// it a call per installation per backoff, not one per due delivery. An event that names no issue
// (data.issue.id, data.event.issue_id, data.error.issue_id) yields kNoIssue, an empty object: the
// route is decided with every $issue.* reading as "". Errors: a malformed issue id or an event
// without an installation is a permanent failure; API errors keep their class (retryable ones are
// retried by the dispatcher, not sooner than Sentry's Retry-After). Threads: FetchIssue may be
// called from any thread and never blocks.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <string_view>

#include "common/clock.h"
#include "delivery/dispatcher.h"
#include "metrics/metrics.h"
#include "sentry/installations.h"

namespace switchyard::sentry {

inline constexpr std::string_view kNoIssue = "{}";

struct EnricherOptions {
  std::chrono::milliseconds ttl{10000};
  size_t max_entries = 4096;
};

class IssueEnricher : public delivery::Enricher {
 public:
  // References must outlive the enricher.
  IssueEnricher(InstallationManager& installations, metrics::Metrics& metrics, Clock& clock,
                EnricherOptions options = {});
  ~IssueEnricher() override;

  void FetchIssue(const storage::StoredEvent& event, const std::string& route,
                  IssueCallback done) override;

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

}  // namespace switchyard::sentry
