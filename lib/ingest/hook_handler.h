// The public listener's handler: POST /hooks/<source> (Sentry webhooks) and GET /setup/<source>
// (the OAuth Redirect URL). A webhook is verified (HMAC-SHA256 of the raw body with the source's
// client secret, constant time), parsed once, stored durably, and only then answered 202.
//
// Threads: Handle() runs on I/O threads and never blocks; the durable write happens on the
// store's writer thread and the response is sent when it completes.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "common/clock.h"
#include "config/config_holder.h"
#include "http/message.h"
#include "ingest/installer.h"
#include "metrics/metrics.h"
#include "storage/event_store.h"

namespace switchyard::ingest {

class HookHandler : public http::Handler {
 public:
  // All references must outlive the handler. `stopping` turns new webhooks into 503.
  // `on_deliveries` runs (on the store's writer thread) after an event with deliveries is stored.
  // `installer` (may be null: then /setup answers 503) handles /setup and is told about stored
  // installation webhooks after their 202.
  HookHandler(const config::ConfigHolder& config, storage::EventStore& store,
              metrics::Metrics& metrics, Clock& clock, const std::atomic<bool>& stopping,
              std::function<void()> on_deliveries = {}, Installer* installer = nullptr);

  void Handle(http::Request request, http::Respond respond) override;
  // A webhook the HTTP layer refused (413: body over max_body_bytes; 400/501: framing) counts
  // as rejected for its source, like the refusals made here.
  void OnRefused(const http::Request& head, int status) override;

 private:
  // Metrics and the log line of a webhook refused with `status` (nothing is answered here).
  void CountRejected(const std::string& source, const http::Request& request, int status,
                     std::string_view reason);
  // `config` and `source` stay valid for the call (Handle holds the config snapshot); what
  // outlives it (the store's completion) copies what it needs.
  void HandleHook(const config::Config& config, const config::SourceConfig& source,
                  http::Request request, http::Respond respond);
  void HandleSetup(const config::SourceConfig& source, http::Request request,
                   http::Respond respond);

  // Rejections are unauthenticated: a client sending thousands a second must not fill the
  // disk with log lines (the counter still counts each). Per source and reason, at most
  // kRejectedLinesPerMinute lines a minute; the first rejection after that minute says how
  // many were not logged.
  static constexpr int kRejectedLinesPerMinute = 10;
  struct RejectedLog {
    std::chrono::steady_clock::time_point window_start;
    int logged = 0;
    uint64_t unlogged = 0;
  };
  std::mutex rejected_mu_;
  std::map<std::string, RejectedLog, std::less<>> rejected_log_;  // GUARDED_BY(rejected_mu_)

  const config::ConfigHolder& config_;
  storage::EventStore& store_;
  metrics::Metrics& metrics_;
  Clock& clock_;
  const std::atomic<bool>& stopping_;
  std::function<void()> on_deliveries_;
  Installer* installer_;
};

}  // namespace switchyard::ingest
