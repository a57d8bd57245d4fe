// Metrics: every Prometheus series switchyard exports (CONTRACT.md §7), behind narrow methods so
// prometheus-cpp stays out of other modules. Label values are bounded: sources and sinks come from
// the config, resources from Sentry's known list (anything else is "other"), reasons and outcomes
// from fixed sets. All methods are thread-safe and cheap enough for the request path.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace switchyard::metrics {

class Metrics {
 public:
  Metrics();
  ~Metrics();
  Metrics(const Metrics&) = delete;
  Metrics& operator=(const Metrics&) = delete;

  // Pre-creates zero-valued series for the configured names (call on start and on reload).
  void DeclareSources(const std::vector<std::string>& sources);
  void DeclareSinks(const std::vector<std::string>& sinks);
  void DeclareRoutes(const std::vector<std::string>& routes);

  // outcome: "accepted" | "duplicate" | "rejected".
  void WebhookReceived(std::string_view source, std::string_view resource,
                       std::string_view outcome);
  // reason: a short fixed token ("signature", "malformed", "missing_resource", "too_large", ...).
  void WebhookRejected(std::string_view source, std::string_view reason);
  void ObserveIngestSeconds(double seconds);
  void StorageGroupCommit(size_t events);

  void RouteMatched(std::string_view route);
  // outcome: "success" | "retry" | "dead" | "filtered".
  void Delivery(std::string_view sink, std::string_view outcome);
  void ObserveDeliverySeconds(std::string_view sink, double seconds);
  void SetQueueDepth(std::string_view sink, double pending, double dead);
  void SetCircuitOpen(std::string_view sink, bool open);
  // From the sink's latest X-Limit-App-* headers; a negative value (header absent) is skipped.
  void SetPushoverQuota(std::string_view sink, double remaining, double limit, double reset);
  // The sink is gone or no longer a Pushover sink: its quota series are no longer exported.
  void ForgetPushoverQuota(std::string_view sink);
  // outcome: "success" | "failure".
  void ConfigReload(std::string_view outcome);

  // outcome: "success" | "failure" (network, 5xx: retried) | "rejected" (401: re-install needed).
  void TokenRefresh(std::string_view source, std::string_view outcome);
  // Installations held, by source and status ("installed" | "pending" | "needs_reinstall").
  void SetInstallations(std::string_view source, std::string_view status, double count);
  // Sentry API calls by source, what (exchange, refresh, verify, issue) and HTTP status class
  // ("2xx", "4xx", "5xx", "error" for no response).
  void SentryApiCall(std::string_view source, std::string_view what, std::string_view code);
  // Issue lookups for enrichment: "hit" (cache or joined an in-flight fetch) | "miss".
  void EnrichCache(std::string_view result);

  // Renders every series in Prometheus text format 0.0.4.
  std::string Serialize() const;

  // Normalises a Sentry-Hook-Resource value to a bounded label value.
  static std::string_view ResourceLabel(std::string_view resource);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace switchyard::metrics
