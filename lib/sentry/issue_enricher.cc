#include "sentry/issue_enricher.h"

#include <algorithm>
#include <map>
#include <mutex>
#include <span>
#include <vector>

#include "json/json_doc.h"
#include "sentry/sentry_api.h"

namespace switchyard::sentry {

struct IssueEnricher::Impl : std::enable_shared_from_this<Impl> {
  Impl(InstallationManager& i, metrics::Metrics& m, Clock& c, EnricherOptions o)
      : installations(i), metrics(m), clock(c), options(o) {}

  struct CacheEntry {
    int64_t expires_ms = 0;
    std::string issue;
  };

  InstallationManager& installations;
  metrics::Metrics& metrics;
  Clock& clock;
  const EnricherOptions options;

  // After a retryable failure (Sentry's API down, 429, a timeout) the installation's fetches
  // fail fast, without a call, until `until_ms` (steady): the dispatcher retries each delivery
  // only after that. Sentry's Retry-After, else 1 s doubling per failure up to kMaxCooldown.
  struct Cooldown {
    int64_t until_ms = 0;
    int failures = 0;
  };
  static constexpr int64_t kMaxCooldownMs = 60'000;

  std::mutex mu;
  std::map<std::string, CacheEntry> cache;                       // GUARDED_BY(mu)
  std::map<std::string, std::vector<IssueCallback>> in_flight;  // GUARDED_BY(mu)
  std::map<std::string, Cooldown> cooldowns;  // GUARDED_BY(mu); by source '\0' installation

  void EvictLocked(int64_t now) {
    if (cache.size() < options.max_entries) return;
    for (auto it = cache.begin(); it != cache.end();) {
      it = it->second.expires_ms <= now ? cache.erase(it) : std::next(it);
    }
    while (cache.size() >= options.max_entries) cache.erase(cache.begin());
  }

  void Fetch(const storage::StoredEvent& event, IssueCallback done) {
    // Reused: a parser per call allocates its buffers.
    thread_local json::JsonDoc doc(json::JsonDoc::kMaxDepth);
    if (!doc.Parse(event.body).ok()) {
      return done(InvalidArgument("event body is not valid JSON"), std::nullopt);
    }
    std::optional<std::string> id;
    // Where each resource names its issue (sentry-protocol.md §2): issue, event_alert, error,
    // comment (data.issue_id) and seer (data.group_id).
    static const std::vector<std::string> kIssuePaths[] = {{"data", "issue", "id"},
                                                           {"data", "event", "issue_id"},
                                                           {"data", "error", "issue_id"},
                                                           {"data", "issue_id"},
                                                           {"data", "group_id"}};
    for (const auto& path : kIssuePaths) {
      id = doc.GetText(std::span<const std::string>(path));
      if (id && !id->empty()) break;
    }
    if (!id || id->empty()) {
      // Nothing to fetch (a metric alert, say): the route is decided with every $issue.* path
      // missing, and a missing field reads as "" (CONTRACT.md, matchers).
      return done(std::string(kNoIssue), std::nullopt);
    }
    if (!ValidIssueId(*id)) {
      return done(InvalidArgument("event's issue id \"" + id->substr(0, 64) +
                                  "\" is not a Sentry issue id"),
                  std::nullopt);
    }
    std::string uuid = event.installation_uuid;
    const std::string installation = event.source + '\0' + uuid;
    const std::string key = installation + '\0' + *id;
    // Steady: a wall clock stepped back (NTP, a resumed VM) cannot keep an issue past its ttl.
    const int64_t now = clock.SteadyMillis();
    {
      std::unique_lock lock(mu);
      auto hit = cache.find(key);
      if (hit != cache.end() && hit->second.expires_ms > now) {
        std::string issue = hit->second.issue;
        metrics.EnrichCache("hit");
        lock.unlock();  // `done` may take the dispatcher's lock
        return done(std::move(issue), std::nullopt);
      }
      auto flight = in_flight.find(key);
      if (flight != in_flight.end()) {
        metrics.EnrichCache("hit");
        flight->second.push_back(std::move(done));
        return;
      }
      if (auto c = cooldowns.find(installation); c != cooldowns.end() && c->second.until_ms > now) {
        const auto wait = std::chrono::milliseconds(c->second.until_ms - now);
        lock.unlock();  // `done` may take the dispatcher's lock
        return done(Unavailable("Sentry's API failed for this installation; not asked again "
                                "for " +
                                std::to_string(wait.count()) + " ms"),
                    wait);
      }
      metrics.EnrichCache("miss");
      in_flight[key].push_back(std::move(done));
    }
    auto self = shared_from_this();
    installations.ApiGet(
        event.source, uuid, "/api/0/organizations/{org}/issues/" + *id + "/", "issue",
        [self, key, installation](Result<std::string> issue,
                                  std::optional<std::chrono::milliseconds> ra) {
          std::vector<IssueCallback> waiters;
          {
            std::lock_guard lock(self->mu);
            auto flight = self->in_flight.find(key);
            if (flight != self->in_flight.end()) {
              waiters = std::move(flight->second);
              self->in_flight.erase(flight);
            }
            const int64_t now = self->clock.SteadyMillis();
            if (issue.ok()) {
              self->EvictLocked(now);
              self->cache[key] = {now + self->options.ttl.count(), issue.value()};
              self->cooldowns.erase(installation);
            } else if (issue.status().retryable()) {
              Cooldown& c = self->cooldowns[installation];
              c.failures = std::min(c.failures + 1, 30);
              const int64_t backoff =
                  std::min<int64_t>(kMaxCooldownMs, int64_t{1000} << (c.failures - 1));
              const int64_t asked = ra ? std::min<int64_t>(ra->count(), 3'600'000) : 0;
              c.until_ms = now + std::max(asked, backoff);  // Retry-After honoured up to 1 h
            }
          }
          for (auto& w : waiters) w(issue, ra);
        });
  }
};

IssueEnricher::IssueEnricher(InstallationManager& installations, metrics::Metrics& metrics,
                             Clock& clock, EnricherOptions options)
    : impl_(std::make_shared<Impl>(installations, metrics, clock, options)) {}

IssueEnricher::~IssueEnricher() = default;

void IssueEnricher::FetchIssue(const storage::StoredEvent& event, const std::string&,
                               IssueCallback done) {
  impl_->Fetch(event, std::move(done));
}

}  // namespace switchyard::sentry
