// IssueEnricher: `enrich: [issue]` — fetches the Sentry issue an event is about
// (GET /api/0/organizations/<org>/issues/<id>/, the id from data.issue.id, data.event.issue_id or
// data.error.issue_id) with the event's installation token, for routes decided after the fetch.
//
// A short-lived cache (`ttl`, at most `max_entries`) and single-flight per issue keep a burst of
// events about one issue to one API call. An event that names no issue (data.issue.id,
// data.event.issue_id, data.error.issue_id) yields kNoIssue, an empty object: the route is
// decided with every $issue.* reading as "". Errors: a malformed issue id or an event without an
// installation is a permanent failure; API errors keep their class (retryable ones are retried by
// the dispatcher, not sooner than Sentry's Retry-After).
// Threads: FetchIssue may be called from any thread and never blocks.
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
