// The admin listener's handler: /healthz, /readyz, /metrics, and /admin/* (guarded by
// server.admin_token when set): queue and dead-letter views, replay, drop, reload.
// Runs on I/O threads and never blocks: RocksDB scans and reloads run on `pool`.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "common/blocking_pool.h"
#include "config/config_holder.h"
#include "http/message.h"
#include "metrics/metrics.h"
#include "storage/event_store.h"

namespace switchyard::admin {

// One row of GET /admin/installations (never a token).
struct InstallationRow {
  std::string source;
  std::string uuid;
  std::string org;
  std::string status;
  int64_t expires_at_ms = 0;  // 0 = none (internal integration) or unknown
};

struct AdminHooks {
  // Reloads the config (and reopens files, as SIGHUP does); returns the config's errors (empty
  // on success), or an error status when no reload could be tried (stopping). On the pool.
  std::function<Result<std::vector<std::string>>()> reload;
  // Dead letters were replayed: deliver them now.
  std::function<void()> replayed;
  // The installations held (may be empty: then the list is empty). Must not block.
  std::function<std::vector<InstallationRow>()> installations;
};

class AdminHandler : public http::Handler {
 public:
  // `ready` is true once config, storage and listeners are up, false again while stopping.
  // All references must outlive the handler.
  AdminHandler(const config::ConfigHolder& config, metrics::Metrics& metrics,
               const std::atomic<bool>& ready, storage::Store& store, BlockingPool& pool,
               AdminHooks hooks);

  void Handle(http::Request request, http::Respond respond) override;

 private:
  void HandleAdmin(const std::string& path, http::Request request, http::Respond respond);

  const config::ConfigHolder& config_;
  metrics::Metrics& metrics_;
  const std::atomic<bool>& ready_;
  storage::Store& store_;
  BlockingPool& pool_;
  AdminHooks hooks_;
};

}  // namespace switchyard::admin
