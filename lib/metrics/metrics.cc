#include "metrics/metrics.h"

#include <prometheus/collectable.h>
#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include <array>
#include <initializer_list>
#include <map>
#include <mutex>
#include <shared_mutex>

#include "metrics/process_collector.h"

namespace switchyard::metrics {
namespace {

constexpr std::array<std::string_view, 9> kKnownResources = {
    "installation",     "issue",        "error", "comment", "event_alert", "metric_alert", "seer",
    "preprod_artifact", "size_analysis"};

// Caches Family::Add results: Add takes a lock and hashes every label, so look up once per label
// set and keep the pointer (prometheus-cpp never moves metrics while the family lives). A hit
// allocates nothing: the key is built in a per-thread buffer and found by string_view. Every
// caller of one cache passes the labels in the same order (the key is the values in that order).
template <typename T>
class SeriesCache {
 public:
  using Labels = std::initializer_list<std::pair<std::string_view, std::string_view>>;

  explicit SeriesCache(prometheus::Family<T>& family) : family_(family) {}
  T& Get(Labels labels) {
    thread_local std::string key;
    key.clear();
    for (const auto& [name, value] : labels) (key += value) += '\x1f';
    {
      std::shared_lock lock(mu_);
      if (auto it = cache_.find(std::string_view(key)); it != cache_.end()) return *it->second;
    }
    std::map<std::string, std::string> label_map;
    for (const auto& [name, value] : labels) label_map.emplace(name, value);
    std::unique_lock lock(mu_);
    T& metric = family_.Add(label_map);
    cache_.emplace(key, &metric);
    return metric;
  }
  // Drops the series (no longer exported). The caller must hold no reference to it.
  void Remove(Labels labels) {
    std::string key;
    for (const auto& [name, value] : labels) (key += value) += '\x1f';
    std::unique_lock lock(mu_);
    auto it = cache_.find(std::string_view(key));
    if (it == cache_.end()) return;
    family_.Remove(it->second);
    cache_.erase(it);
  }

 private:
  prometheus::Family<T>& family_;
  std::shared_mutex mu_;
  std::map<std::string, T*, std::less<>> cache_;
};

prometheus::Histogram::BucketBoundaries LatencyBuckets() {
  return {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
}

}  // namespace

struct Metrics::Impl {
  std::shared_ptr<prometheus::Registry> registry = std::make_shared<prometheus::Registry>();
  std::shared_ptr<ProcessCollector> process = std::make_shared<ProcessCollector>();

  prometheus::Family<prometheus::Counter>& received =
      prometheus::BuildCounter()
          .Name("switchyard_webhooks_received_total")
          .Help(
              "Webhooks received, by source, resource and outcome (accepted, duplicate, rejected).")
          .Register(*registry);
  prometheus::Family<prometheus::Counter>& rejected =
      prometheus::BuildCounter()
          .Name("switchyard_webhooks_rejected_total")
          .Help("Webhooks rejected, by source and reason.")
          .Register(*registry);
  prometheus::Family<prometheus::Histogram>& ingest_family =
      prometheus::BuildHistogram()
          .Name("switchyard_ingest_duration_seconds")
          .Help(
              "Time from a complete webhook request to its response being ready (includes the "
              "durable write).")
          .Register(*registry);
  prometheus::Histogram& ingest = ingest_family.Add({}, LatencyBuckets());
  prometheus::Family<prometheus::Counter>& commits_family =
      prometheus::BuildCounter()
          .Name("switchyard_storage_group_commits_total")
          .Help("Storage write batches committed (one fsync each when storage.sync is on).")
          .Register(*registry);
  prometheus::Counter& commits = commits_family.Add({});
  prometheus::Family<prometheus::Counter>& committed_events_family =
      prometheus::BuildCounter()
          .Name("switchyard_storage_events_written_total")
          .Help("Events written to storage.")
          .Register(*registry);
  prometheus::Counter& committed_events = committed_events_family.Add({});
  prometheus::Family<prometheus::Gauge>& build_info_family =
      prometheus::BuildGauge()
          .Name("switchyard_build_info")
          .Help("Build information; the value is always 1.")
          .Register(*registry);

  prometheus::Family<prometheus::Counter>& route_matches =
      prometheus::BuildCounter()
          .Name("switchyard_route_matches_total")
          .Help("Events a route matched (deferred routes count once decided).")
          .Register(*registry);
  prometheus::Family<prometheus::Counter>& deliveries =
      prometheus::BuildCounter()
          .Name("switchyard_deliveries_total")
          .Help("Delivery attempts by sink and outcome (success, retry, dead, filtered).")
          .Register(*registry);
  prometheus::Family<prometheus::Histogram>& delivery_duration =
      prometheus::BuildHistogram()
          .Name("switchyard_delivery_duration_seconds")
          .Help("Duration of one delivery attempt, by sink.")
          .Register(*registry);
  prometheus::Family<prometheus::Gauge>& queue_pending =
      prometheus::BuildGauge()
          .Name("switchyard_queue_pending")
          .Help("Deliveries waiting (due now or scheduled for a retry), by sink.")
          .Register(*registry);
  prometheus::Family<prometheus::Gauge>& dlq_entries = prometheus::BuildGauge()
                                                           .Name("switchyard_dlq_entries")
                                                           .Help("Dead letters kept, by sink.")
                                                           .Register(*registry);
  prometheus::Family<prometheus::Gauge>& circuit_open =
      prometheus::BuildGauge()
          .Name("switchyard_sink_circuit_open")
          .Help("1 while a sink's circuit breaker is open (deliveries paused), else 0.")
          .Register(*registry);
  prometheus::Family<prometheus::Gauge>& pushover_remaining =
      prometheus::BuildGauge()
          .Name("switchyard_pushover_quota_remaining")
          .Help("Pushover messages left this month (X-Limit-App-Remaining), by sink.")
          .Register(*registry);
  prometheus::Family<prometheus::Gauge>& pushover_limit =
      prometheus::BuildGauge()
          .Name("switchyard_pushover_quota_limit")
          .Help("Pushover monthly message limit (X-Limit-App-Limit), by sink.")
          .Register(*registry);
  prometheus::Family<prometheus::Gauge>& pushover_reset =
      prometheus::BuildGauge()
          .Name("switchyard_pushover_quota_reset_timestamp_seconds")
          .Help("When the Pushover quota resets (X-Limit-App-Reset), by sink.")
          .Register(*registry);
  prometheus::Family<prometheus::Counter>& reloads =
      prometheus::BuildCounter()
          .Name("switchyard_config_reloads_total")
          .Help("Config reloads by outcome (success, failure).")
          .Register(*registry);

  SeriesCache<prometheus::Counter> received_cache{received};
  SeriesCache<prometheus::Counter> rejected_cache{rejected};
  SeriesCache<prometheus::Counter> route_cache{route_matches};
  SeriesCache<prometheus::Counter> delivery_cache{deliveries};
  SeriesCache<prometheus::Gauge> pending_cache{queue_pending};
  SeriesCache<prometheus::Gauge> dlq_cache{dlq_entries};
  SeriesCache<prometheus::Gauge> circuit_cache{circuit_open};
  SeriesCache<prometheus::Gauge> remaining_cache{pushover_remaining};
  SeriesCache<prometheus::Gauge> limit_cache{pushover_limit};
  SeriesCache<prometheus::Gauge> reset_cache{pushover_reset};
  SeriesCache<prometheus::Counter> reload_cache{reloads};
  prometheus::Family<prometheus::Counter>& refreshes =
      prometheus::BuildCounter()
          .Name("switchyard_token_refreshes_total")
          .Help("OAuth token refreshes by source and outcome (success, failure).")
          .Register(*registry);
  prometheus::Family<prometheus::Gauge>& installations =
      prometheus::BuildGauge()
          .Name("switchyard_installations")
          .Help("Sentry app installations held, by source and status.")
          .Register(*registry);
  prometheus::Family<prometheus::Counter>& api_calls =
      prometheus::BuildCounter()
          .Name("switchyard_sentry_api_requests_total")
          .Help("Requests to the Sentry API by source, kind and status class.")
          .Register(*registry);
  prometheus::Family<prometheus::Counter>& enrich_cache =
      prometheus::BuildCounter()
          .Name("switchyard_enrich_cache_lookups_total")
          .Help("Issue lookups for enrichment by result (hit, miss).")
          .Register(*registry);
  SeriesCache<prometheus::Counter> refresh_cache{refreshes};
  SeriesCache<prometheus::Gauge> installations_cache{installations};
  SeriesCache<prometheus::Counter> api_cache{api_calls};
  SeriesCache<prometheus::Counter> enrich_cache_series{enrich_cache};
  std::mutex histo_mu;
  std::map<std::string, prometheus::Histogram*, std::less<>> delivery_histograms;  // GUARDED_BY
};

Metrics::Metrics() : impl_(std::make_unique<Impl>()) {
#ifdef SWITCHYARD_VERSION
  impl_->build_info_family.Add({{"version", SWITCHYARD_VERSION}}).Set(1);
#endif
}

Metrics::~Metrics() = default;

void Metrics::DeclareSources(const std::vector<std::string>& sources) {
  for (const auto& s : sources) {
    for (auto outcome : {"success", "failure"}) {
      impl_->refresh_cache.Get({{"source", s}, {"outcome", outcome}});
    }
    for (auto status : {"installed", "pending", "needs_reinstall"}) {
      impl_->installations_cache.Get({{"source", s}, {"status", status}});
    }
    for (auto outcome : {"accepted", "duplicate", "rejected"}) {
      impl_->received_cache.Get({{"source", s}, {"resource", "issue"}, {"outcome", outcome}});
    }
    for (auto reason :
         {"signature", "timestamp", "malformed", "missing_resource", "too_large", "unavailable"}) {
      impl_->rejected_cache.Get({{"source", s}, {"reason", reason}});
    }
  }
}

void Metrics::DeclareSinks(const std::vector<std::string>& sinks) {
  for (const auto& s : sinks) {
    for (auto outcome : {"success", "retry", "dead", "filtered"}) {
      impl_->delivery_cache.Get({{"sink", s}, {"outcome", outcome}});
    }
    impl_->pending_cache.Get({{"sink", s}});
    impl_->dlq_cache.Get({{"sink", s}});
    impl_->circuit_cache.Get({{"sink", s}});
    ObserveDeliverySeconds(s, -1);  // creates the series; negative observations are not recorded
  }
  for (auto outcome : {"success", "failure"}) impl_->reload_cache.Get({{"outcome", outcome}});
}

void Metrics::DeclareRoutes(const std::vector<std::string>& routes) {
  for (const auto& r : routes) impl_->route_cache.Get({{"route", r}});
}

void Metrics::RouteMatched(std::string_view route) {
  impl_->route_cache.Get({{"route", route}}).Increment();
}

void Metrics::Delivery(std::string_view sink, std::string_view outcome) {
  impl_->delivery_cache.Get({{"sink", sink}, {"outcome", outcome}}).Increment();
}

void Metrics::ObserveDeliverySeconds(std::string_view sink, double seconds) {
  prometheus::Histogram* h;
  {
    std::lock_guard lock(impl_->histo_mu);
    auto it = impl_->delivery_histograms.find(sink);
    if (it == impl_->delivery_histograms.end()) {
      h = &impl_->delivery_duration.Add(
          {{"sink", std::string(sink)}},
          prometheus::Histogram::BucketBoundaries{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5,
                                                  5, 10, 30});
      impl_->delivery_histograms.emplace(std::string(sink), h);
    } else {
      h = it->second;
    }
  }
  if (seconds >= 0) h->Observe(seconds);
}

void Metrics::SetQueueDepth(std::string_view sink, double pending, double dead) {
  impl_->pending_cache.Get({{"sink", sink}}).Set(pending);
  impl_->dlq_cache.Get({{"sink", sink}}).Set(dead);
}

void Metrics::SetCircuitOpen(std::string_view sink, bool open) {
  impl_->circuit_cache.Get({{"sink", sink}}).Set(open ? 1 : 0);
}

void Metrics::SetPushoverQuota(std::string_view sink, double remaining, double limit,
                               double reset) {
  // A negative value is a header Pushover did not send (or not as an integer): left unset.
  if (remaining >= 0) impl_->remaining_cache.Get({{"sink", sink}}).Set(remaining);
  if (limit >= 0) impl_->limit_cache.Get({{"sink", sink}}).Set(limit);
  if (reset >= 0) impl_->reset_cache.Get({{"sink", sink}}).Set(reset);
}

void Metrics::ForgetPushoverQuota(std::string_view sink) {
  impl_->remaining_cache.Remove({{"sink", sink}});
  impl_->limit_cache.Remove({{"sink", sink}});
  impl_->reset_cache.Remove({{"sink", sink}});
}

void Metrics::ConfigReload(std::string_view outcome) {
  impl_->reload_cache.Get({{"outcome", outcome}}).Increment();
}

void Metrics::TokenRefresh(std::string_view source, std::string_view outcome) {
  impl_->refresh_cache.Get({{"source", source}, {"outcome", outcome}}).Increment();
}

void Metrics::SetInstallations(std::string_view source, std::string_view status, double count) {
  impl_->installations_cache.Get({{"source", source}, {"status", status}}).Set(count);
}

void Metrics::SentryApiCall(std::string_view source, std::string_view what, std::string_view code) {
  impl_->api_cache.Get({{"source", source}, {"what", what}, {"code", code}}).Increment();
}

void Metrics::EnrichCache(std::string_view result) {
  impl_->enrich_cache_series.Get({{"result", result}}).Increment();
}

std::string_view Metrics::ResourceLabel(std::string_view resource) {
  for (auto r : kKnownResources) {
    if (r == resource) return r;
  }
  return resource.empty() ? std::string_view("none") : std::string_view("other");
}

void Metrics::WebhookReceived(std::string_view source, std::string_view resource,
                              std::string_view outcome) {
  impl_->received_cache
      .Get({{"source", source}, {"resource", ResourceLabel(resource)}, {"outcome", outcome}})
      .Increment();
}

void Metrics::WebhookRejected(std::string_view source, std::string_view reason) {
  impl_->rejected_cache.Get({{"source", source}, {"reason", reason}}).Increment();
}

void Metrics::ObserveIngestSeconds(double seconds) { impl_->ingest.Observe(seconds); }

void Metrics::StorageGroupCommit(size_t events) {
  impl_->commits.Increment();
  impl_->committed_events.Increment(static_cast<double>(events));
}

std::string Metrics::Serialize() const {
  auto families = impl_->registry->Collect();
  auto process = impl_->process->Collect();
  families.insert(families.end(), process.begin(), process.end());
  return prometheus::TextSerializer().Serialize(families);
}

}  // namespace switchyard::metrics
