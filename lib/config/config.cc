#include "config/config.h"

#include <cstdint>
#include <limits>

namespace switchyard::config {

std::string ConfigError::ToString() const {
  return file + ":" + std::to_string(line) + ":" + std::to_string(column) + ": " + message;
}

const SourceConfig* Config::FindSource(std::string_view name) const {
  for (const SourceConfig& source : sources) {
    if (source.name == name) return &source;
  }
  return nullptr;
}

const SinkConfig* Config::FindSink(std::string_view name) const {
  for (const SinkConfig& sink : sinks) {
    if (sink.name == name) return &sink;
  }
  return nullptr;
}

RetryConfig RetryOverride::ApplyTo(const RetryConfig& base) const {
  RetryConfig out = base;
  if (initial) out.initial = *initial;
  if (multiplier) out.multiplier = *multiplier;
  if (max_delay) out.max_delay = *max_delay;
  if (jitter) out.jitter = *jitter;
  if (max_attempts) out.max_attempts = *max_attempts;
  if (max_age) out.max_age = *max_age;
  return out;
}

// Grammar: "0", or one or more NUMBER UNIT groups with units in strictly decreasing order
// (d, h, m, s, ms), e.g. "1h30m". No signs, fractions or spaces.
std::optional<Duration> ParseDuration(std::string_view text) {
  if (text == "0") return Duration(0);
  if (text.empty()) return std::nullopt;
  struct Unit {
    std::string_view name;
    int64_t millis;
  };
  static constexpr Unit kUnits[] = {
      {"d", 86400000}, {"h", 3600000}, {"ms", 1}, {"m", 60000}, {"s", 1000}};
  constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
  int64_t total = 0;
  int64_t last_unit = kMax;  // units must get strictly smaller
  size_t i = 0;
  while (i < text.size()) {
    size_t start = i;
    int64_t n = 0;
    while (i < text.size() && text[i] >= '0' && text[i] <= '9') {
      if (n > (kMax - 9) / 10) return std::nullopt;
      n = n * 10 + (text[i] - '0');
      ++i;
    }
    if (i == start) return std::nullopt;
    const Unit* unit = nullptr;
    for (const Unit& u : kUnits) {
      if (text.substr(i).starts_with(u.name)) {
        unit = &u;
        break;
      }
    }
    if (unit == nullptr || unit->millis >= last_unit) return std::nullopt;
    last_unit = unit->millis;
    i += unit->name.size();
    if (n > (kMax - total) / unit->millis) return std::nullopt;
    total += n * unit->millis;
  }
  return Duration(total);
}

}  // namespace switchyard::config
