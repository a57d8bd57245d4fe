// InstallationManager: owns each Sentry app installation's OAuth lifecycle.
//
// - Install: the grant code arrives by GET /setup/<source> and by the installation.created
//   webhook; exchanges are single-flight per installation, so whichever arrives first exchanges
//   the (single-use) code and the other joins it or finds the tokens already stored. With
//   `verify_install`, the PUT {"status":"installed"} follows; until Sentry acknowledges it the
//   installation is "pending" and the verify is retried in the background. The org slug
//   /setup's (unauthenticated) orgSlug names is provisional: the signed webhook's replaces it.
// - Refresh: a refresher thread renews each token `refresh_before` its expiry, minus a spread
//   derived from the installation uuid (up to refresh_before/2, only ever earlier), with at most
//   `max_concurrent_refreshes` in flight and one per installation. A refresh Sentry refuses
//   because of the pair itself (unknown or used refresh token, a token of another app, the
//   installation gone) marks the installation needs_reinstall; a refusal of the app's
//   credentials or of the request (a wrong client_secret), network errors and 5xx keep the pair
//   and retry with backoff. The new pair is persisted (fsync) before anything uses it; one the
//   store refuses (the disk at its floor) stays in use and is written again every refresher
//   round, and no refresh is sent while the store has no room for its answer.
// - API calls: bearer token; a 401 refreshes once (joining a refresh under way) and retries once.
// - Uninstall: installation.deleted forgets the installation. A source with a static `token`
//   (internal integration) never touches any of this: its token is used as is.
// - Recovery: on start, installation webhooks stored in the last 10 minutes (a grant's lifetime)
//   whose installation holds no tokens are exchanged again, so a crash between the 202 and the
//   exchange loses nothing.
//
// Threads: public methods are thread-safe and never block on the network or the disk. HTTP
// completions arrive on client threads; store writes run on an internal BlockingPool thread;
// the refresher runs on its own thread. Time comes from the injected Clock.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/clock.h"
#include "common/status.h"
#include "config/config_holder.h"
#include "httpclient/http_client.h"
#include "ingest/installer.h"
#include "metrics/metrics.h"
#include "sentry/token_store.h"
#include "storage/event_store.h"

namespace switchyard::sentry {

struct InstallationView {  // what /admin/installations shows: never a token
  std::string source;
  std::string uuid;
  std::string org;
  std::string status;
  int64_t expires_at_ms = 0;
};

struct ManagerOptions {
  size_t max_concurrent_refreshes = 16;
  std::chrono::milliseconds api_timeout{10000};
  std::chrono::milliseconds retry_initial{2000};   // refresh/verify retry backoff
  std::chrono::milliseconds retry_max{300000};
  // Refresher wake-up when nothing is due sooner (it also wakes on every change).
  std::chrono::milliseconds max_sleep{1000};
};

// The JSON of a successful API GET, or an error; on failure, how long Sentry asked us to wait.
using ApiResultCallback =
    std::function<void(Result<std::string>, std::optional<std::chrono::milliseconds>)>;

class InstallationManager : public ingest::Installer {
 public:
  // All references must outlive the manager.
  InstallationManager(const config::ConfigHolder& config, TokenStore& tokens,
                      httpclient::HttpClient& client, metrics::Metrics& metrics, Clock& clock,
                      ManagerOptions options = {});
  ~InstallationManager() override;

  // Loads the stored installations and starts the refresher. With `events`, re-exchanges grant
  // codes of recent installation webhooks that hold no tokens (in the background).
  Status Start(storage::Store* events);
  // Stops the refresher, starts no new request, and waits up to `drain` for the token requests
  // in flight (refreshes, grant exchanges) to complete and their new pair to be stored (fsync):
  // Sentry invalidates the old pair (or the single-use code) the moment it answers, so an answer
  // dropped at shutdown would leave only dead tokens on disk. A successful answer that arrives
  // after `drain` (before the HttpClient shuts down) is still stored, on the client's thread;
  // its waiters are told the manager is stopping. Then waits for pending store writes.
  // Idempotent.
  void Stop(std::chrono::milliseconds drain = std::chrono::milliseconds(0));

  // ingest::Installer. Setup (unauthenticated) runs at most kMaxSetupExchanges at once, and
  // starts at most that many in a burst plus one every kSetupRefill (10 a minute); past either
  // it answers kResourceExhausted at once.
  static constexpr int kMaxSetupExchanges = 8;
  static constexpr std::chrono::seconds kSetupRefill{6};
  void Setup(const std::string& source, const std::string& uuid, const std::string& code,
             const std::string& org, std::function<void(Status)> done) override;
  void OnInstallationEvent(ingest::InstallationEvent event) override;
  std::string OrgOf(const std::string& source, const std::string& uuid) const override;

  // GET `path` on the source's api_url with the installation's token ("{org}" in `path` becomes
  // the installation's org slug). 401 → one refresh, one retry. `what` labels metrics.
  void ApiGet(const std::string& source, const std::string& uuid, const std::string& path,
              std::string what, ApiResultCallback done);

  std::vector<InstallationView> List() const;
  // Installations with a refresh or verify under way.
  size_t Busy() const;

  // One refresher round at the clock's current time (tests drive a FakeClock with it).
  void RefreshDue();

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

}  // namespace switchyard::sentry
