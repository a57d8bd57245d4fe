#include "sentry/installations.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <climits>
#include <condition_variable>
#include <map>
#include <mutex>
#include <set>
#include <thread>
#include <utility>

#include "common/blocking_pool.h"
#include "common/log.h"
#include "common/thread_name.h"
#include "common/time_format.h"
#include "common/token_bucket.h"
#include "json/json_doc.h"
#include "sentry/sentry_api.h"

namespace switchyard::sentry {
namespace {

constexpr int64_t kGrantLifetimeMs = 10 * 60 * 1000;  // sentry-protocol.md §3

std::string Key(std::string_view source, std::string_view uuid) {
  std::string k(source);
  k.push_back('\0');
  k.append(uuid);
  return k;
}

uint64_t Fnv1a(std::string_view s) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

// A refusal that retrying the same request cannot fix (Sentry answered 4xx).
bool Definitive(const Status& s) {
  return s.code() == StatusCode::kPermissionDenied || s.code() == StatusCode::kInvalidArgument ||
         s.code() == StatusCode::kNotFound || s.code() == StatusCode::kFailedPrecondition;
}

// A refresh refused because the pair itself is dead (SentryApi::Refresh maps that to kNotFound):
// only a re-installation brings new tokens. Sentry's other refusals of a refresh concern the
// app's credentials (client_id/client_secret) or the request: the pair is kept and the refresh
// retried with backoff, so fixing the config (a reload) recovers every installation.
bool PairRefused(const Status& s) { return s.code() == StatusCode::kNotFound; }

// How soon after a manual refresh issued a pair a refused refresh is not met with another.
constexpr std::chrono::milliseconds kManualRefreshInterval = std::chrono::hours(1);

std::string ReplaceOrg(std::string path, const std::string& org) {
  const std::string token = "{org}";
  for (size_t pos = path.find(token); pos != std::string::npos; pos = path.find(token)) {
    path.replace(pos, token.size(), org);
  }
  return path;
}

}  // namespace

struct InstallationManager::Impl : std::enable_shared_from_this<Impl> {
  Impl(const config::ConfigHolder& c, TokenStore& t, httpclient::HttpClient& client,
       metrics::Metrics& m, Clock& cl, ManagerOptions o)
      : config(c), tokens(t), metrics(m), clock(cl), options(o), api(client, m, o.api_timeout) {}

  struct Entry {
    Installation rec;
    bool busy = false;  // a refresh or verify is in flight
    std::vector<std::function<void(Status)>> refresh_waiters;
    uint32_t failures = 0;  // consecutive failed refreshes/verifies (backoff)
    int64_t due_ms = -1;    // scheduled refresher action; -1 = none
    // The last refresh was refused for the app's credentials or the request (not the pair): a
    // config reload retries it at once instead of after the backoff.
    bool credentials_refused = false;
    // When a manual refresh last issued this installation a pair (none in this process yet).
    // Another refusal soon after means someone else takes the pairs: not fought over.
    std::optional<std::chrono::steady_clock::time_point> manual_refresh_at;
  };

  const config::ConfigHolder& config;
  TokenStore& tokens;
  metrics::Metrics& metrics;
  Clock& clock;
  const ManagerOptions options;
  SentryApi api;

  mutable std::mutex mu;
  std::condition_variable cv;
  std::map<std::string, Entry> entries;                                       // GUARDED_BY(mu)
  std::map<std::string, std::vector<std::function<void(Status)>>> exchanges;  // GUARDED_BY(mu)
  std::set<std::string> forgotten;  // deleted while an exchange was in flight; GUARDED_BY(mu)
  std::set<std::pair<int64_t, std::string>> schedule;  // (due, key); GUARDED_BY(mu)
  size_t in_flight = 0;                                // scheduled actions running; GUARDED_BY(mu)
  // Exchanges and refreshes sent to Sentry whose answer is not yet handled (stored); Stop waits
  // for them. GUARDED_BY(mu)
  size_t token_requests = 0;
  // Exchanges /setup (unauthenticated) has running: capped, so that anyone who can reach the
  // listener cannot make the daemon call Sentry's token endpoint in a loop.
  std::atomic<int> setup_in_flight{0};
  // ...and started at most kMaxSetupExchanges at a time plus one every kSetupRefill: a loop of
  // bogus links otherwise ran 8 exchanges back to back (40-80 a second, each logged three
  // times). A token bucket on the monotonic clock. GUARDED_BY(setup_mu)
  std::mutex setup_mu;
  TokenBucket setup_bucket;  // GUARDED_BY(setup_mu)
  // Entries whose record the store refused (e.g. the disk at its free-space floor): written
  // again every refresher round, as the record may hold the only valid pair. GUARDED_BY(mu)
  std::set<std::string> unsaved;
  bool unsaved_retry_queued = false;  // GUARDED_BY(mu)
  struct GrantRetry {
    ingest::InstallationEvent event;
    int64_t first_ms = 0;
    uint32_t attempts = 0;
  };
  std::multimap<int64_t, GrantRetry> grant_retries;  // due -> retry; GUARDED_BY(mu)
  bool stopping = false;                               // GUARDED_BY(mu)
  std::shared_ptr<const config::Config> seen_config;   // the refresher's last; GUARDED_BY(mu)
  bool gauges_dirty = true;                            // GUARDED_BY(mu)
  std::unique_ptr<BlockingPool> pool = std::make_unique<BlockingPool>(1);
  std::thread refresher;

  // Runs `task` on the pool unless stopping (then false and the task is dropped).
  bool Post(std::function<void()> task) {
    std::lock_guard lock(mu);
    if (stopping || !pool) return false;
    pool->Post(std::move(task));
    return true;
  }

  // Runs the completion of a request to Sentry on the pool. Unlike Post, also while stopping:
  // Sentry may have committed the answer (a rotated pair, a used grant code), so it is handled
  // and stored; once Stop has drained the pool, `task` runs on the caller's (client) thread.
  void Complete(std::function<void()> task) {
    {
      std::lock_guard lock(mu);
      if (pool) {
        pool->Post(std::move(task));
        return;
      }
    }
    task();
  }

  // A token request's answer has been handled (its pair stored, or the failure recorded).
  void TokenRequestDone() {
    std::lock_guard lock(mu);
    if (token_requests > 0) --token_requests;
    cv.notify_all();
  }

  std::chrono::milliseconds Backoff(uint32_t failures) const {
    auto d = options.retry_initial;
    for (uint32_t i = 1; i < failures && d < options.retry_max; ++i) d *= 2;
    return std::min(d, options.retry_max);
  }

  // The wait before retrying a failed refresh or verify: the backoff, or longer if Sentry's
  // Retry-After asks for it, but never past retry_max (as the dispatcher caps a sink's at
  // max_delay): a Retry-After of years would otherwise stop the installation's refreshes.
  std::chrono::milliseconds RetryWait(uint32_t failures,
                                      std::optional<std::chrono::milliseconds> retry_after) const {
    return std::max(Backoff(failures),
                    std::min(retry_after.value_or(std::chrono::milliseconds(0)), options.retry_max));
  }

  // When the refresher should renew `rec`: refresh_before its expiry, minus a spread of up to
  // refresh_before/2 derived from the uuid (so a herd of installations spreads out; only ever
  // earlier than refresh_before asks). Never before half the pair's life since it was stored
  // has passed: a refresh_before as long as the token's lifetime would otherwise refresh the
  // new pair at once, in a loop. A pair stored already expired (an expiresAt Sentry should never
  // send) is refreshed retry_max after it was stored, not in a loop either; never a negative
  // time (an expiresAt before 1970), which would mean "not scheduled".
  int64_t RefreshAtMs(const Installation& rec, const config::SourceConfig* src) const {
    const int64_t before =
        src ? static_cast<int64_t>(src->refresh_before.count()) : int64_t{3600000};
    const int64_t window = std::max<int64_t>(1, before / 2);
    const int64_t spread = static_cast<int64_t>(Fnv1a(rec.uuid) % static_cast<uint64_t>(window));
    int64_t due = rec.expires_at_ms - before - spread;
    if (rec.updated_at_ms > 0 && rec.expires_at_ms > rec.updated_at_ms) {
      due = std::max(due, rec.updated_at_ms + (rec.expires_at_ms - rec.updated_at_ms) / 2);
    } else if (rec.updated_at_ms > 0) {
      due = std::max(due, rec.updated_at_ms + options.retry_max.count());
    }
    return std::max<int64_t>(due, 0);
  }

  void ScheduleLocked(const std::string& key, Entry& e, int64_t due) {
    if (e.due_ms >= 0) schedule.erase({e.due_ms, key});
    e.due_ms = due;
    if (due >= 0) schedule.insert({due, key});
    cv.notify_all();
  }

  // The next action for an entry that is idle: refresh when due, verify while pending.
  void RescheduleLocked(const std::string& key, Entry& e, std::optional<int64_t> retry_at) {
    if (e.rec.status == InstallStatus::kNeedsReinstall) return ScheduleLocked(key, e, -1);
    auto cfg = config.Get();
    const config::SourceConfig* src = cfg->FindSource(e.rec.source);
    int64_t due = RefreshAtMs(e.rec, src);
    if (retry_at) due = std::min(due, *retry_at);
    if (e.rec.status == InstallStatus::kPending && !retry_at) due = clock.NowMillis();
    ScheduleLocked(key, e, due);
  }

  // Stores `rec` (pool thread). One the store refuses stays in memory (in use) and is marked
  // unsaved: RetryUnsaved writes it again every refresher round until the store takes it.
  void Persist(const Installation& rec) {
    Status s = tokens.Put(rec);
    MarkStored(Key(rec.source, rec.uuid), s);
    if (!s.ok()) {
      log::Error("installation not stored; retrying every refresher round",
                 {{"source", rec.source}, {"installation", rec.uuid}, {"error", s.message()}});
    }
  }

  void MarkStored(const std::string& key, const Status& stored) {
    std::lock_guard lock(mu);
    if (stored.ok()) {
      unsaved.erase(key);
    } else if (entries.count(key)) {
      unsaved.insert(key);
    }
  }

  // Pool thread: writes again the records the store refused.
  void RetryUnsaved() {
    std::vector<Installation> recs;
    {
      std::lock_guard lock(mu);
      unsaved_retry_queued = false;
      for (auto it = unsaved.begin(); it != unsaved.end();) {
        auto e = entries.find(*it);
        if (e == entries.end()) {
          it = unsaved.erase(it);
          continue;
        }
        recs.push_back(e->second.rec);
        ++it;
      }
    }
    for (const Installation& rec : recs) {
      Status s = tokens.Put(rec);
      if (!s.ok()) continue;  // logged when first refused; tried again next round
      MarkStored(Key(rec.source, rec.uuid), s);
      log::Info("installation stored after an earlier failure",
                {{"source", rec.source}, {"installation", rec.uuid}});
    }
  }

  // ---- install ----

  void Install(const std::string& source, const std::string& uuid, const std::string& code,
               const std::string& org, std::function<void(Status)> done) {
    auto cfg = config.Get();
    const config::SourceConfig* src = cfg->FindSource(source);
    if (!src || src->type != "sentry") return done(NotFound("unknown source"));
    if (!src->token.empty()) {
      return done(FailedPrecondition(
          "source \"" + source + "\" is an internal integration (static token): nothing to install"));
    }
    if (!ValidUuid(uuid)) return done(InvalidArgument("missing or invalid installationId"));
    if (!org.empty() && !ValidOrgSlug(org)) return done(InvalidArgument("invalid orgSlug"));
    const std::string key = Key(source, uuid);
    {
      std::unique_lock lock(mu);
      if (stopping) {
        lock.unlock();
        return done(Unavailable("switchyard is stopping"));
      }
      auto it = entries.find(key);
      if (it != entries.end() && it->second.rec.status != InstallStatus::kNeedsReinstall &&
          !it->second.rec.access_token.empty()) {
        lock.unlock();
        return done(Status::Ok());  // already installed: the code was (or will be) used once
      }
      auto ex = exchanges.find(key);
      if (ex != exchanges.end()) {
        ex->second.push_back(std::move(done));
        return;
      }
      // Checked only now: Sentry leaves the code out of an installation.created webhook built
      // after /setup had exchanged it, which the checks above answer.
      if (code.empty() || code.size() > 256) {
        lock.unlock();
        return done(InvalidArgument("missing or invalid code"));
      }
      exchanges[key].push_back(std::move(done));
      forgotten.erase(key);
      ++token_requests;
    }
    log::Info("exchanging grant code", {{"source", source}, {"installation", uuid}});
    auto self = shared_from_this();
    api.ExchangeGrant(*src, uuid, code,
                      [self, key, source, uuid, org](Result<TokenGrant> grant,
                                                     std::optional<std::chrono::milliseconds>) {
                        auto grant_ptr = std::make_shared<Result<TokenGrant>>(std::move(grant));
                        self->Complete([self, key, source, uuid, org, grant_ptr] {
                          self->FinishExchange(key, source, uuid, org, std::move(*grant_ptr));
                          self->TokenRequestDone();
                        });
                      });
  }

  // An installation.created webhook's exchange; transient failures are retried with backoff for
  // as long as the grant code lives.
  void InstallFromWebhook(ingest::InstallationEvent ev, int64_t first_ms, uint32_t attempts) {
    auto self = shared_from_this();
    const std::string source = ev.source, uuid = ev.uuid, code = ev.code, org = ev.org;
    Install(source, uuid, code, org, [self, ev = std::move(ev), first_ms, attempts](Status s) {
      // Whoever exchanged the code (this webhook or the redirect), the signed webhook's org is
      // the installation's org.
      self->LearnOrg(ev.source, ev.uuid, ev.org);
      if (s.ok()) return;
      if (s.retryable()) {
        const int64_t next = self->clock.NowMillis() + self->Backoff(attempts + 1).count();
        if (next - first_ms < kGrantLifetimeMs) {
          log::Warn("grant exchange will be retried",
                    {{"source", ev.source}, {"installation", ev.uuid}, {"error", s.message()}});
          std::lock_guard lock(self->mu);
          if (self->stopping) return;
          self->grant_retries.emplace(next, GrantRetry{ev, first_ms, attempts + 1});
          self->cv.notify_all();
          return;
        }
      }
      log::Warn("installation from webhook failed",
                {{"source", ev.source}, {"installation", ev.uuid}, {"error", s.message()}});
    });
  }

  // The organization from a signed installation.created webhook is authoritative: it replaces
  // whatever the installation was stored with. /setup's orgSlug is an unauthenticated parameter,
  // kept only provisionally (until the webhook, which Sentry sends for every installation).
  void LearnOrg(const std::string& source, const std::string& uuid, const std::string& org) {
    if (org.empty() || !ValidOrgSlug(org)) return;
    const std::string key = Key(source, uuid);
    std::string previous;
    {
      std::lock_guard lock(mu);
      auto it = entries.find(key);
      if (it == entries.end() || it->second.rec.org == org) return;
      previous = std::move(it->second.rec.org);
      it->second.rec.org = org;
    }
    if (previous.empty()) {
      log::Info("installation organization learnt",
                {{"source", source}, {"installation", uuid}, {"org", org}});
    } else {
      log::Warn(
          "installation organization corrected by the signed installation webhook "
          "(the redirect named another)",
          {{"source", source}, {"installation", uuid}, {"org", org}, {"was", previous}});
    }
    auto self = shared_from_this();
    // Persisted as it is when the pool gets to it, so a newer pair is never overwritten.
    Post([self, key] {
      std::optional<Installation> rec;
      {
        std::lock_guard lock(self->mu);
        auto it = self->entries.find(key);
        if (it != self->entries.end()) rec = it->second.rec;
      }
      if (rec) self->Persist(*rec);
    });
  }

  void FailExchange(const std::string& key, Status status) {
    std::vector<std::function<void(Status)>> waiters;
    {
      std::lock_guard lock(mu);
      auto ex = exchanges.find(key);
      if (ex != exchanges.end()) {
        waiters = std::move(ex->second);
        exchanges.erase(ex);
      }
    }
    for (auto& w : waiters) w(status);
  }

  // Pool thread.
  void FinishExchange(const std::string& key, const std::string& source, const std::string& uuid,
                      const std::string& org, Result<TokenGrant> grant) {
    if (!grant.ok()) {
      bool have_tokens;
      {
        std::lock_guard lock(mu);
        auto it = entries.find(key);
        have_tokens = it != entries.end() && !it->second.rec.access_token.empty() &&
                      it->second.rec.status != InstallStatus::kNeedsReinstall;
      }
      log::Warn("grant exchange failed", {{"source", source},
                                          {"installation", uuid},
                                          {"error", grant.status().message()}});
      return FailExchange(key, have_tokens ? Status::Ok() : grant.status());
    }
    auto cfg = config.Get();
    const config::SourceConfig* src = cfg->FindSource(source);
    const bool verify = src && src->verify_install;
    Installation rec;
    rec.source = source;
    rec.uuid = uuid;
    rec.org = org;
    rec.access_token = std::move(grant.value().access_token);
    rec.refresh_token = std::move(grant.value().refresh_token);
    rec.expires_at_ms = grant.value().expires_at_ms;
    rec.status = verify ? InstallStatus::kPending : InstallStatus::kInstalled;
    rec.updated_at_ms = clock.NowMillis();
    bool deleted;
    {
      std::lock_guard lock(mu);
      deleted = forgotten.erase(key) > 0;
    }
    if (deleted) {
      // installation.deleted arrived while the exchange was under way: do not resurrect it.
      log::Info("installation deleted during its grant exchange; tokens discarded",
                {{"source", source}, {"installation", uuid}});
      return FailExchange(key, FailedPrecondition("the installation was removed meanwhile"));
    }
    Status stored = tokens.Put(rec);  // persisted before anything uses the pair
    if (!stored.ok()) {
      log::Error("installation tokens not stored", {{"source", source},
                                                    {"installation", uuid},
                                                    {"error", stored.message()}});
    }
    bool stopping_now;
    {
      std::lock_guard lock(mu);
      stopping_now = stopping;
      Entry& e = entries[key];
      e.rec = rec;
      e.failures = 0;
      if (!stored.ok()) unsaved.insert(key);  // the code is used: this pair is the only one
      e.busy = verify && !stopping;  // no new request while stopping: verified after a restart
      if (!e.busy) RescheduleLocked(key, e, std::nullopt);
      gauges_dirty = true;
    }
    log::Info("installation tokens stored",
              {{"source", source},
               {"installation", uuid},
               {"org", org},
               {"status", InstallStatusName(rec.status)},
               {"expires_at", FormatRfc3339Millis(rec.expires_at_ms)}});
    if (!stored.ok()) {
      return FailExchange(key, Unavailable("the tokens could not be stored: " + stored.message()));
    }
    if (!verify) return FailExchange(key, Status::Ok());
    if (stopping_now) {
      // Stored as pending: the verify is sent at the next start.
      log::Info("installation verify deferred to the next start (stopping)",
                {{"source", source}, {"installation", uuid}});
      return FailExchange(key, Status::Ok());
    }
    StartVerify(key, *src, rec, /*finish_exchange=*/true);
  }

  // `retried`: this verify follows a refresh because the previous one was answered 401.
  void StartVerify(const std::string& key, const config::SourceConfig& src,
                   const Installation& rec, bool finish_exchange, bool retried = false) {
    auto self = shared_from_this();
    api.VerifyInstall(src, rec.uuid, rec.access_token,
                      [self, key, finish_exchange, retried](
                          Result<bool> r, std::optional<std::chrono::milliseconds> ra) {
                        auto status = std::make_shared<Status>(r.ok() ? Status::Ok() : r.status());
                        self->Complete([self, key, finish_exchange, status, ra, retried] {
                          self->FinishVerify(key, *status, ra, finish_exchange, retried);
                        });
                      });
  }

  // A verify answered 401: refresh the pair (as any API call does), then verify once more with
  // the new token. The entry stays busy for the verify's whole course except while refreshing.
  void RetryVerifyAfterRefresh(const std::string& key, bool finish_exchange) {
    auto self = shared_from_this();
    std::unique_lock lock(mu);
    auto it = entries.find(key);
    if (it == entries.end()) {
      lock.unlock();
      // Through FinishVerify, which ends the exchange or frees the refresher's slot.
      return FinishVerify(key, NotFound("installation was uninstalled"), std::nullopt,
                          finish_exchange, /*retried=*/true);
    }
    it->second.busy = false;
    RefreshLocked(key, it->second, [self, key, finish_exchange](Status s) {
      if (!s.ok()) {
        return self->FinishVerify(key, Status(s.code(), "refreshing after a 401 failed: " +
                                                            s.message()),
                                  std::nullopt, finish_exchange, /*retried=*/true);
      }
      std::optional<Installation> rec;
      std::optional<config::SourceConfig> src;
      {
        std::lock_guard lock(self->mu);
        auto it = self->entries.find(key);
        auto cfg = self->config.Get();
        const config::SourceConfig* found = it != self->entries.end()
                                                ? cfg->FindSource(it->second.rec.source)
                                                : nullptr;
        // The refresher may have started a verify of its own meanwhile (the pair is pending):
        // a second PUT is harmless (Sentry's verify is idempotent), and this one's caller
        // needs its own answer.
        if (found) {
          it->second.busy = true;
          rec = it->second.rec;
          src = *found;
        }
      }
      if (!rec) {
        return self->FinishVerify(key, NotFound("installation was uninstalled"), std::nullopt,
                                  finish_exchange, /*retried=*/true);
      }
      self->StartVerify(key, *src, *rec, finish_exchange, /*retried=*/true);
    }, /*scheduled=*/false);
  }

  // Pool thread.
  void FinishVerify(const std::string& key, Status status,
                    std::optional<std::chrono::milliseconds> retry_after, bool finish_exchange,
                    bool retried) {
    if (status.code() == StatusCode::kPermissionDenied && !retried) {
      return RetryVerifyAfterRefresh(key, finish_exchange);
    }
    std::optional<Installation> to_store;
    std::string source, uuid;
    {
      std::lock_guard lock(mu);
      if (!finish_exchange && in_flight > 0) --in_flight;
      auto it = entries.find(key);
      if (it != entries.end()) {
        Entry& e = it->second;
        e.busy = false;
        source = e.rec.source;
        uuid = e.rec.uuid;
        if (status.ok()) {
          e.rec.status = InstallStatus::kInstalled;
          e.rec.updated_at_ms = clock.NowMillis();
          e.failures = 0;
          to_store = e.rec;
          RescheduleLocked(key, e, std::nullopt);
        } else {
          ++e.failures;
          RescheduleLocked(key, e, clock.NowMillis() + RetryWait(e.failures, retry_after).count());
        }
        // API calls that got a 401 while the verify ran joined a refresh that had to wait for
        // it: start it now (it fails them at once while stopping).
        if (!e.refresh_waiters.empty()) RefreshLocked(key, e, nullptr, /*scheduled=*/false);
        gauges_dirty = true;
      }
      cv.notify_all();
    }
    if (to_store) {
      Persist(*to_store);
      log::Info("installation verified", {{"source", source}, {"installation", uuid}});
    } else if (!status.ok()) {
      log::Warn("installation verify failed; retrying in the background",
                {{"source", source}, {"installation", uuid}, {"error", status.message()}});
    }
    if (finish_exchange) {
      // The tokens are stored either way. A verify that failed for now (5xx, timeout) is retried
      // in the background above, so the install goes on; only a refusal fails it.
      FailExchange(key, status.ok() || status.retryable()
                            ? Status::Ok()
                            : Status(status.code(),
                                     "the installation could not be verified with Sentry: " +
                                         status.message()));
    }
  }

  void Forget(const std::string& source, const std::string& uuid) {
    const std::string key = Key(source, uuid);
    bool known;
    {
      std::lock_guard lock(mu);
      auto it = entries.find(key);
      known = it != entries.end();
      if (known) {
        ScheduleLocked(key, it->second, -1);
        // Waiters of a refresh in flight learn the installation is gone.
        for (auto& w : it->second.refresh_waiters) {
          if (pool) pool->Post([w = std::move(w)] { w(NotFound("installation was uninstalled")); });
        }
        entries.erase(it);
      }
      unsaved.erase(key);
      if (exchanges.count(key)) forgotten.insert(key);
      gauges_dirty = true;
    }
    Post([this, source, uuid] {
      if (Status s = tokens.Delete(source, uuid); !s.ok()) {
        log::Error("installation not deleted from storage",
                   {{"source", source}, {"installation", uuid}, {"error", s.message()}});
      }
    });
    log::Info("installation deleted", {{"source", source},
                                       {"installation", uuid},
                                       {"known", known ? "true" : "false"}});
  }

  // ---- refresh ----

  // Starts a refresh of `key` unless one is under way (then `waiter` joins it). `scheduled`
  // refreshes count against max_concurrent_refreshes. Call with mu held.
  void RefreshLocked(const std::string& key, Entry& e, std::function<void(Status)> waiter,
                     bool scheduled) {
    if (waiter) e.refresh_waiters.push_back(std::move(waiter));
    if (e.busy) return;
    auto cfg = config.Get();
    const config::SourceConfig* src = cfg->FindSource(e.rec.source);
    if (stopping || !src || e.rec.refresh_token.empty()) {
      const Status why = stopping ? Unavailable("switchyard is stopping")
                                  : FailedPrecondition("no refresh token or source");
      auto waiters = std::move(e.refresh_waiters);
      e.refresh_waiters.clear();
      for (auto& w : waiters) {
        if (pool) pool->Post([w = std::move(w), why] { w(why); });
      }
      return;
    }
    e.busy = true;
    if (scheduled) ++in_flight;
    ScheduleLocked(key, e, -1);
    auto self = shared_from_this();
    const std::string uuid = e.rec.uuid;
    const std::string refresh = e.rec.refresh_token;
    config::SourceConfig source = *src;
    // The request is sent outside the lock (HttpClient::Send never calls back inline, but a
    // thread hop keeps that an implementation detail).
    if (!pool) return;  // stopping
    pool->Post([self, key, source = std::move(source), uuid, refresh, scheduled] {
      // A pair Sentry issues replaces the old one at once: not asked for while the store could
      // not keep it.
      const Status room = self->tokens.Room();
      bool stopping_now;
      {
        std::lock_guard lock(self->mu);
        stopping_now = self->stopping;
        if (!stopping_now && room.ok()) ++self->token_requests;
      }
      // Stopping before it was sent: the stored pair is still the valid one.
      if (stopping_now) return self->AbandonRefresh(key, scheduled);
      if (!room.ok()) {
        // Postponed like a failed refresh (backoff); the stored pair stays the valid one.
        return self->FinishRefresh(key, Unavailable("refresh postponed: " + room.message()),
                                   std::nullopt, scheduled);
      }
      auto finish = [self, key, scheduled](Result<TokenGrant> grant,
                                           std::optional<std::chrono::milliseconds> ra) {
        auto g = std::make_shared<Result<TokenGrant>>(std::move(grant));
        self->Complete([self, key, g, ra, scheduled] {
          self->FinishRefresh(key, std::move(*g), ra, scheduled);
          self->TokenRequestDone();
        });
      };
      self->api.Refresh(source, uuid, refresh,
                        [self, key, source, uuid, finish](
                            Result<TokenGrant> grant, std::optional<std::chrono::milliseconds> ra) {
                          if (grant.ok() || !PairRefused(grant.status()))
                            return finish(std::move(grant), ra);
                          self->RecoverRefusedPair(key, source, uuid, grant.status(), finish);
                        });
    });
  }

  // Sentry refused the stored refresh token: most likely its answer to our last refresh was
  // lost in transit after Sentry had rotated the pair. A manual refresh (a JWT signed with the
  // client secret) gets a new pair without a re-installation where the organization allows it.
  // `finish` gets the new pair; else the refusal (needs_reinstall) when Sentry refused the
  // manual refresh too, or a transient error (the pair is kept and the refresh retried, which
  // comes back here) when it could not be asked. At most one manual refresh an hour succeeds
  // per installation: a pair taken again that soon is taken by another switchyard serving the
  // same installation, and taking it back would start a tug of war over every pair (and spend
  // the app's refresh rate limit at Sentry). Client thread.
  void RecoverRefusedPair(
      const std::string& key, const config::SourceConfig& source, const std::string& uuid,
      const Status& refused,
      std::function<void(Result<TokenGrant>, std::optional<std::chrono::milliseconds>)> finish) {
    bool stopping_now, too_soon = false;
    {
      std::lock_guard lock(mu);
      stopping_now = stopping;
      auto it = entries.find(key);
      if (it != entries.end()) {
        const Entry& e = it->second;
        // This process's own (steady) time, or the stored wall time of one before a restart
        // (ignored if the wall clock now reads earlier than it: a step back proves nothing).
        const int64_t since_stored = clock.NowMillis() - e.rec.manual_refresh_at_ms;
        too_soon = (e.manual_refresh_at &&
                    clock.SteadyNow() - *e.manual_refresh_at < kManualRefreshInterval) ||
                   (e.rec.manual_refresh_at_ms != 0 && since_stored >= 0 &&
                    since_stored < kManualRefreshInterval.count());
      }
    }
    // `finish` takes mu: called with it released.
    if (stopping_now) return finish(Unavailable("switchyard is stopping"), std::nullopt);
    if (too_soon) {
      return finish(NotFound(refused.message() +
                             "; refused again within an hour of a manual refresh: is another "
                             "switchyard serving this installation?"),
                    std::nullopt);
    }
    auto self = shared_from_this();
    api.ManualRefresh(
        source, uuid,
        [self, key, source_name = source.name, uuid, refused, finish = std::move(finish)](
            Result<TokenGrant> manual, std::optional<std::chrono::milliseconds> ra) {
          if (manual.ok()) {
            {
              std::lock_guard lock(self->mu);
              if (auto it = self->entries.find(key); it != self->entries.end()) {
                it->second.manual_refresh_at = self->clock.SteadyNow();
                // Stored with the new pair by `finish`.
                it->second.rec.manual_refresh_at_ms = self->clock.NowMillis();
              }
            }
            log::Warn(
                "refresh token refused by Sentry; a manual refresh issued a new pair",
                {{"source", source_name}, {"installation", uuid}, {"refused", refused.message()}});
            return finish(std::move(manual), ra);
          }
          if (Definitive(manual.status())) {
            return finish(
                NotFound(refused.message() + "; manual refresh: " + manual.status().message()),
                std::nullopt);
          }
          finish(Unavailable(refused.message() +
                             "; manual refresh failed: " + manual.status().message()),
                 ra);
        });
  }

  // A refresh that was never sent (stopping): the entry is idle again, its waiters fail.
  void AbandonRefresh(const std::string& key, bool scheduled) {
    std::vector<std::function<void(Status)>> waiters;
    {
      std::lock_guard lock(mu);
      if (scheduled && in_flight > 0) --in_flight;
      auto it = entries.find(key);
      if (it == entries.end()) return;
      waiters = std::move(it->second.refresh_waiters);
      it->second.refresh_waiters.clear();
      it->second.busy = false;
    }
    for (auto& w : waiters) w(Unavailable("switchyard is stopping"));
  }

  // Pool thread.
  void FinishRefresh(const std::string& key, Result<TokenGrant> grant,
                     std::optional<std::chrono::milliseconds> retry_after, bool scheduled) {
    std::vector<std::function<void(Status)>> waiters;
    std::optional<Installation> to_store;
    std::string source, uuid;
    Status result = Status::Ok();
    {
      std::lock_guard lock(mu);
      if (scheduled && in_flight > 0) --in_flight;
      auto it = entries.find(key);
      if (it == entries.end()) return;  // uninstalled meanwhile; waiters were told
      Entry& e = it->second;
      source = e.rec.source;
      uuid = e.rec.uuid;
      if (grant.ok()) {
        // Persisted below, before any waiter (an API retry) or the next refresh uses it.
        e.rec.access_token = std::move(grant.value().access_token);
        e.rec.refresh_token = std::move(grant.value().refresh_token);
        e.rec.expires_at_ms = grant.value().expires_at_ms;
        e.rec.updated_at_ms = clock.NowMillis();
        e.failures = 0;
        to_store = e.rec;
      } else if (PairRefused(grant.status())) {
        e.rec.status = InstallStatus::kNeedsReinstall;
        e.rec.updated_at_ms = clock.NowMillis();
        to_store = e.rec;
        result = grant.status();
      } else {
        ++e.failures;
        result = grant.status();
      }
      e.credentials_refused = !result.ok() && !PairRefused(result) && Definitive(result);
      gauges_dirty = true;
    }
    if (to_store) Persist(*to_store);
    bool stopping_now;
    {
      std::lock_guard lock(mu);
      stopping_now = stopping;
      auto it = entries.find(key);
      if (it != entries.end()) {
        Entry& e = it->second;
        e.busy = false;
        waiters = std::move(e.refresh_waiters);
        e.refresh_waiters.clear();
        if (result.ok() || PairRefused(result)) {
          RescheduleLocked(key, e, std::nullopt);
        } else {
          // Not RescheduleLocked: it takes the earlier of the refresh time (passed: this refresh
          // was due) and the retry, which retried at once, in a loop.
          ScheduleLocked(key, e, clock.NowMillis() + RetryWait(e.failures, retry_after).count());
        }
      }
      cv.notify_all();
    }
    if (result.ok()) {
      metrics.TokenRefresh(source, "success");
      log::Info("token refreshed", {{"source", source},
                                    {"installation", uuid},
                                    {"expires_at", FormatRfc3339Millis(to_store->expires_at_ms)}});
    } else if (PairRefused(result)) {
      // The contract's outcomes are success and failure; which failure this was shows in
      // switchyard_installations{status="needs_reinstall"} and the log.
      metrics.TokenRefresh(source, "failure");
      log::Error("token refresh refused by Sentry; the installation must be re-installed",
                 {{"source", source}, {"installation", uuid}, {"error", result.message()}});
    } else if (Definitive(result)) {
      metrics.TokenRefresh(source, "failure");
      log::Error(
          "token refresh refused by Sentry for the app's credentials or the request, not "
          "the tokens (check the source's client_id and client_secret); the tokens are "
          "kept and the refresh retried with backoff",
          {{"source", source}, {"installation", uuid}, {"error", result.message()}});
    } else {
      metrics.TokenRefresh(source, "failure");
      log::Warn("token refresh failed; retrying with backoff",
                {{"source", source}, {"installation", uuid}, {"error", result.message()}});
    }
    // While stopping, no waiter may start a request with the new pair (it is stored).
    const Status told = stopping_now ? Unavailable("switchyard is stopping") : result;
    for (auto& w : waiters) w(told);
  }

  void RefreshDue() {
    std::vector<GrantRetry> grants;
    bool retry_unsaved = false;
    {
      std::lock_guard lock(mu);
      if (stopping) return;
      if (!unsaved.empty() && !unsaved_retry_queued) retry_unsaved = unsaved_retry_queued = true;
      const int64_t now = clock.NowMillis();
      while (!grant_retries.empty() && grant_retries.begin()->first <= now) {
        grants.push_back(std::move(grant_retries.begin()->second));
        grant_retries.erase(grant_retries.begin());
      }
      RefreshDueLocked(now);
    }
    if (retry_unsaved) {
      auto self = shared_from_this();
      if (!Post([self] { self->RetryUnsaved(); })) {
        std::lock_guard lock(mu);
        unsaved_retry_queued = false;
      }
    }
    for (GrantRetry& g : grants) InstallFromWebhook(std::move(g.event), g.first_ms, g.attempts);
  }

  void RefreshDueLocked(int64_t now) {
    auto cfg = config.Get();
    if (cfg != seen_config) {
      // A reload may have fixed the app's credentials: retry what they refused now.
      if (seen_config) {
        for (auto& [key, e] : entries) {
          if (e.credentials_refused && !e.busy) ScheduleLocked(key, e, now);
        }
      }
      seen_config = cfg;
    }
    while (!schedule.empty() && schedule.begin()->first <= now &&
           in_flight < options.max_concurrent_refreshes) {
      const std::string key = schedule.begin()->second;
      schedule.erase(schedule.begin());
      auto it = entries.find(key);
      if (it == entries.end()) continue;
      Entry& e = it->second;
      e.due_ms = -1;
      if (e.busy) continue;  // rescheduled when it finishes
      const config::SourceConfig* src = cfg->FindSource(e.rec.source);
      if (!src || !src->token.empty()) {
        ScheduleLocked(key, e, now + 3600000);  // source gone or now internal: look again later
        continue;
      }
      if (e.rec.status == InstallStatus::kPending && src->verify_install &&
          now < RefreshAtMs(e.rec, src)) {
        e.busy = true;
        ++in_flight;
        Installation rec = e.rec;
        config::SourceConfig source = *src;
        auto self = shared_from_this();
        pool->Post([self, key, source = std::move(source), rec = std::move(rec)] {
          self->StartVerify(key, source, rec, /*finish_exchange=*/false);
        });
        continue;
      }
      if (e.rec.status == InstallStatus::kPending && !src->verify_install) {
        e.rec.status = InstallStatus::kInstalled;
      }
      RefreshLocked(key, e, nullptr, /*scheduled=*/true);
    }
  }

  void UpdateGauges() {
    std::map<std::string, std::array<int, 3>> counts;
    {
      std::lock_guard lock(mu);
      if (!gauges_dirty) return;
      gauges_dirty = false;
      auto cfg = config.Get();
      for (const auto& s : cfg->sources) counts[s.name] = {0, 0, 0};
      for (const auto& [key, e] : entries) ++counts[e.rec.source][static_cast<int>(e.rec.status)];
    }
    for (const auto& [source, c] : counts) {
      for (int i = 0; i < 3; ++i) {
        metrics.SetInstallations(source, InstallStatusName(static_cast<InstallStatus>(i)), c[i]);
      }
    }
  }

  void RefresherLoop() {
    std::unique_lock lock(mu);
    while (!stopping) {
      lock.unlock();
      RefreshDue();
      UpdateGauges();
      lock.lock();
      if (stopping) break;
      auto sleep = options.max_sleep;
      int64_t next_due = INT64_MAX;
      if (!schedule.empty() && in_flight < options.max_concurrent_refreshes) {
        next_due = schedule.begin()->first;
      }
      if (!grant_retries.empty()) next_due = std::min(next_due, grant_retries.begin()->first);
      if (next_due != INT64_MAX) {
        sleep = std::clamp(std::chrono::milliseconds(next_due - clock.NowMillis()),
                           std::chrono::milliseconds(0), options.max_sleep);
      }
      if (sleep.count() > 0) cv.wait_for(lock, sleep);
    }
  }

  // ---- API ----

  void ApiGet(const std::string& source, const std::string& uuid, const std::string& path,
              std::string what, ApiResultCallback done, bool retried) {
    auto cfg = config.Get();
    const config::SourceConfig* src = cfg->FindSource(source);
    if (!src) return done(NotFound("source \"" + source + "\" is not configured"), std::nullopt);
    auto adapt = [done](Result<ApiReply> r, std::optional<std::chrono::milliseconds> ra) {
      if (!r.ok()) return done(r.status(), ra);
      done(std::move(r.value().body), std::nullopt);
    };
    if (!src->token.empty()) {  // internal integration: static token, no refresh
      return api.Get(*src, ReplaceOrg(path, src->org), src->token, what, adapt);
    }
    const std::string key = Key(source, uuid);
    std::string token, org;
    {
      std::unique_lock lock(mu);
      auto it = entries.find(key);
      if (it == entries.end()) {
        auto ex = exchanges.find(key);
        if (ex != exchanges.end() && !retried) {
          // Installed just now: wait for the exchange, then try once.
          auto self = shared_from_this();
          ex->second.push_back([self, source, uuid, path, what, done](Status) {
            self->ApiGet(source, uuid, path, what, done, /*retried=*/true);
          });
          return;
        }
        lock.unlock();
        return done(NotFound("installation " + uuid + " of source \"" + source +
                             "\" holds no tokens (not installed, or uninstalled)"),
                    std::nullopt);
      }
      if (it->second.rec.status == InstallStatus::kNeedsReinstall) {
        lock.unlock();
        return done(FailedPrecondition("installation " + uuid +
                                       " needs re-installation (Sentry refused its refresh token)"),
                    std::nullopt);
      }
      token = it->second.rec.access_token;
      org = it->second.rec.org;
    }
    auto self = shared_from_this();
    const config::SourceConfig source_cfg = *src;
    api.Get(source_cfg, ReplaceOrg(path, org), token, what,
            [self, key, source_cfg, path, org, token, what, done, adapt, retried](
                Result<ApiReply> r, std::optional<std::chrono::milliseconds> ra) {
              if (r.ok() || r.status().code() != StatusCode::kPermissionDenied || retried) {
                return adapt(std::move(r), ra);
              }
              // 401: refresh once (or use a pair refreshed meanwhile), then retry once.
              self->RefreshFor(key, token, [self, key, source_cfg, path, org, what, adapt](
                                               Status s) {
                if (!s.ok()) {
                  return adapt(Status(s.code(), "refreshing after a 401 failed: " + s.message()),
                               std::nullopt);
                }
                std::string fresh;
                {
                  std::lock_guard lock(self->mu);
                  auto it = self->entries.find(key);
                  if (it != self->entries.end()) fresh = it->second.rec.access_token;
                }
                if (fresh.empty()) return adapt(NotFound("installation was uninstalled"), std::nullopt);
                self->api.Get(source_cfg, ReplaceOrg(path, org), fresh, what, adapt);
              });
            });
  }

  // Refreshes `key` because `used_token` got a 401 — unless the stored pair changed since.
  void RefreshFor(const std::string& key, const std::string& used_token,
                  std::function<void(Status)> done) {
    std::unique_lock lock(mu);
    auto it = entries.find(key);
    if (it == entries.end() || stopping) {
      lock.unlock();
      return done(NotFound("installation was uninstalled"));
    }
    if (it->second.rec.access_token != used_token && !it->second.busy) {
      lock.unlock();
      return done(Status::Ok());
    }
    RefreshLocked(key, it->second, std::move(done), /*scheduled=*/false);
  }

  // ---- start-up ----

  void Recover(storage::Store* events) {
    struct Grant {
      std::string code, org;
    };
    std::map<std::pair<std::string, std::string>, Grant> grants;  // (source, uuid) -> grant
    json::JsonDoc doc(json::JsonDoc::kMaxDepth);
    Status s = events->ScanEventsSince(clock.NowMillis() - kGrantLifetimeMs,
                                       [&](const storage::StoredEvent& ev) {
      if (ev.resource != "installation") return true;
      if (!doc.Parse(ev.body).ok()) return true;
      auto uuid = doc.GetString({"data", "installation", "uuid"});
      if (!uuid) return true;
      if (ev.action == "deleted") {
        grants.erase({ev.source, std::string(*uuid)});
      } else if (ev.action == "created") {
        auto code = doc.GetString({"data", "installation", "code"});
        auto org = doc.GetString({"data", "installation", "organization", "slug"});
        if (code) {
          grants[{ev.source, std::string(*uuid)}] = {std::string(*code),
                                                     org ? std::string(*org) : std::string()};
        }
      }
      return true;
    });
    if (!s.ok()) {
      log::Warn("could not scan recent installation webhooks", {{"error", s.message()}});
      return;
    }
    for (auto& [id, grant] : grants) {
      {
        std::lock_guard lock(mu);
        if (entries.count(Key(id.first, id.second))) continue;
      }
      log::Info("resuming an interrupted installation",
                {{"source", id.first}, {"installation", id.second}});
      InstallFromWebhook({id.first, "created", id.second, grant.code, grant.org},
                         clock.NowMillis(), 0);
    }
  }
};

InstallationManager::InstallationManager(const config::ConfigHolder& config, TokenStore& tokens,
                                         httpclient::HttpClient& client,
                                         metrics::Metrics& metrics, Clock& clock,
                                         ManagerOptions options)
    : impl_(std::make_shared<Impl>(config, tokens, client, metrics, clock, options)) {}

InstallationManager::~InstallationManager() { Stop(); }

Status InstallationManager::Start(storage::Store* events) {
  auto loaded = impl_->tokens.LoadAll();
  if (!loaded.ok()) return loaded.status();
  {
    std::lock_guard lock(impl_->mu);
    for (Installation& rec : loaded.value()) {
      const std::string key = Key(rec.source, rec.uuid);
      Impl::Entry& e = impl_->entries[key];
      e.rec = std::move(rec);
      impl_->RescheduleLocked(key, e, std::nullopt);
    }
  }
  log::Info("installations loaded", {{"count", std::to_string(loaded.value().size())}});
  if (events) {
    impl_->Post([impl = impl_.get(), events] { impl->Recover(events); });
  }
  impl_->refresher = std::thread([impl = impl_.get()] {
    NameThisThread("sy-token-refresh");
    impl->RefresherLoop();
  });
  return Status::Ok();
}

void InstallationManager::Stop(std::chrono::milliseconds drain) {
  {
    std::lock_guard lock(impl_->mu);
    if (impl_->stopping) return;
    impl_->stopping = true;
    impl_->cv.notify_all();
  }
  if (impl_->refresher.joinable()) impl_->refresher.join();
  std::unique_ptr<BlockingPool> pool;
  size_t unanswered;
  {
    std::unique_lock lock(impl_->mu);
    impl_->cv.wait_for(lock, drain, [this] { return impl_->token_requests == 0; });
    unanswered = impl_->token_requests;
    pool = std::move(impl_->pool);  // later completions run on the client's thread
  }
  if (unanswered > 0) {
    log::Warn(
        "stopping with token requests unanswered; a pair Sentry issues is still stored "
        "if its answer arrives before the HTTP client stops",
        {{"requests", std::to_string(unanswered)}});
  }
  if (pool) {
    // A last try for records the store refused; those it still refuses are lost at exit.
    pool->Post([impl = impl_] {
      impl->RetryUnsaved();
      std::lock_guard lock(impl->mu);
      for (const std::string& key : impl->unsaved) {
        auto it = impl->entries.find(key);
        if (it == impl->entries.end()) continue;
        log::Error(
            "stopping with installation tokens the store refused; the installation may "
            "need re-installing",
            {{"source", it->second.rec.source}, {"installation", it->second.rec.uuid}});
      }
    });
  }
  pool.reset();  // runs queued completions and store writes, then joins
}

void InstallationManager::Setup(const std::string& source, const std::string& uuid,
                                const std::string& code, const std::string& org,
                                std::function<void(Status)> done) {
  {
    std::lock_guard lock(impl_->setup_mu);
    const double per_second = 1.0 / std::chrono::duration<double>(kSetupRefill).count();
    if (!impl_->setup_bucket.Available(per_second, kMaxSetupExchanges, impl_->clock.SteadyNow())) {
      return done(ResourceExhausted("too many installations started in the last minute"));
    }
    impl_->setup_bucket.Take(per_second);
  }
  if (impl_->setup_in_flight.fetch_add(1) >= kMaxSetupExchanges) {
    --impl_->setup_in_flight;
    return done(ResourceExhausted("too many installations in progress"));
  }
  impl_->Install(source, uuid, code, org, [impl = impl_, done = std::move(done)](Status s) {
    --impl->setup_in_flight;
    done(std::move(s));
  });
}

void InstallationManager::OnInstallationEvent(ingest::InstallationEvent event) {
  if (!ValidUuid(event.uuid)) return;
  if (event.action == "created") {
    auto cfg = impl_->config.Get();
    const config::SourceConfig* src = cfg->FindSource(event.source);
    if (!src || !src->token.empty()) return;  // internal integrations have no OAuth
    impl_->InstallFromWebhook(std::move(event), impl_->clock.NowMillis(), 0);
  } else if (event.action == "deleted") {
    impl_->Forget(event.source, event.uuid);
  }
}

void InstallationManager::ApiGet(const std::string& source, const std::string& uuid,
                                 const std::string& path, std::string what,
                                 ApiResultCallback done) {
  impl_->ApiGet(source, uuid, path, std::move(what), std::move(done), /*retried=*/false);
}

std::vector<InstallationView> InstallationManager::List() const {
  std::vector<InstallationView> out;
  std::lock_guard lock(impl_->mu);
  out.reserve(impl_->entries.size());
  for (const auto& [key, e] : impl_->entries) {
    out.push_back({e.rec.source, e.rec.uuid, e.rec.org,
                   std::string(InstallStatusName(e.rec.status)), e.rec.expires_at_ms});
  }
  return out;
}

std::string InstallationManager::OrgOf(const std::string& source, const std::string& uuid) const {
  std::lock_guard lock(impl_->mu);
  auto it = impl_->entries.find(Key(source, uuid));
  return it == impl_->entries.end() ? std::string() : it->second.rec.org;
}

void InstallationManager::RefreshDue() { impl_->RefreshDue(); }

size_t InstallationManager::Busy() const {
  std::lock_guard lock(impl_->mu);
  size_t n = 0;
  for (const auto& [key, e] : impl_->entries) n += e.busy ? 1 : 0;
  return n;
}

}  // namespace switchyard::sentry
