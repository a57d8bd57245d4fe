// Reading single values out of the daemon's Prometheus text exposition in tests.
#pragma once

#include <optional>
#include <string>

namespace switchyard::testing {

// The value of the sample whose series (name and labels, exactly as exposed, e.g.
// `switchyard_deliveries_total{outcome="retry",sink="ops"}`) is `series`; nullopt if absent.
std::optional<double> MetricValue(const std::string& text, const std::string& series);

// switchyard_deliveries_total{outcome=…,sink=…}; 0 when the series is absent.
double DeliveriesTotal(const std::string& text, const std::string& sink,
                       const std::string& outcome);

}  // namespace switchyard::testing
