// Internal to lib/metrics: the standard process_* metrics read from /proc/self at scrape time
// (prometheus-cpp 1.0.1 exports none). Thread-safe: Collect() keeps no state but the start time.
#pragma once

#include <prometheus/collectable.h>
#include <prometheus/metric_family.h>

#include <vector>

namespace switchyard::metrics {

class ProcessCollector : public prometheus::Collectable {
 public:
  ProcessCollector();
  std::vector<prometheus::MetricFamily> Collect() const override;

 private:
  double start_time_seconds_;
};

}  // namespace switchyard::metrics
