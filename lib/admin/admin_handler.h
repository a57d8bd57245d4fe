// The admin listener's handler: /healthz, /readyz, /metrics, and /admin/* (guarded by
// server.admin_token when set): queue and dead-letter views, replay, drop, reload.
// Runs on I/O threads and never blocks: RocksDB scans and reloads run on `pool`.
#pragma once

#include <atomic>
#include <functional>
#include <string>
#include <vector>

#include "common/blocking_pool.h"
#include "config/config_holder.h"
#include "http/message.h"
#include "metrics/metrics.h"
#include "storage/event_store.h"

namespace switchyard::admin {

struct AdminHooks {
  // Reloads the config; returns the errors (empty on success). Called on the pool.
  std::function<std::vector<std::string>()> reload;
  // Dead letters were replayed: deliver them now.
  std::function<void()> replayed;
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
