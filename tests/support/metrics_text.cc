#include "support/metrics_text.h"

#include <cstdlib>

namespace switchyard::testing {

std::optional<double> MetricValue(const std::string& text, const std::string& series) {
  const std::string needle = series + " ";
  for (size_t pos = text.find(needle); pos != std::string::npos; pos = text.find(needle, pos + 1)) {
    if (pos != 0 && text[pos - 1] != '\n') continue;  // a longer name ending in `series`
    return std::strtod(text.c_str() + pos + needle.size(), nullptr);
  }
  return std::nullopt;
}

double DeliveriesTotal(const std::string& text, const std::string& sink,
                       const std::string& outcome) {
  return MetricValue(
             text, "switchyard_deliveries_total{outcome=\"" + outcome + "\",sink=\"" + sink + "\"}")
      .value_or(0);
}

}  // namespace switchyard::testing
