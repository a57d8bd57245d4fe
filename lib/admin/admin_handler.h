// The admin listener's handler: /healthz, /readyz, /metrics, and /admin/* (guarded by
// server.admin_token when set). Runs on I/O threads; never blocks.
#pragma once

#include <atomic>
#include <functional>

#include "config/config_holder.h"
#include "http/message.h"
#include "metrics/metrics.h"

namespace switchyard::admin {

class AdminHandler : public http::Handler {
 public:
  // `ready` is true once config, storage and listeners are up, false again while stopping.
  AdminHandler(const config::ConfigHolder& config, metrics::Metrics& metrics,
               const std::atomic<bool>& ready);

  void Handle(http::Request request, http::Respond respond) override;

 private:
  const config::ConfigHolder& config_;
  metrics::Metrics& metrics_;
  const std::atomic<bool>& ready_;
};

}  // namespace switchyard::admin
