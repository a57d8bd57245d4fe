// TokenBucket: a rate limit of `per_second` with bursts of `burst`, on a monotonic clock the
// caller reads (so tests move it). Full at its first use. Not thread-safe: the owner locks.
#pragma once

#include <algorithm>
#include <chrono>

namespace switchyard {

struct TokenBucket {
  double tokens = 1;
  std::chrono::steady_clock::time_point last{};
  // Refills and reports whether one token is available (does not take it). per_second <= 0 is
  // unlimited.
  bool Available(double per_second, double burst, std::chrono::steady_clock::time_point now) {
    if (per_second <= 0) return true;
    if (last.time_since_epoch().count() == 0) {
      tokens = burst;
    } else {
      const double elapsed = std::chrono::duration<double>(now - last).count();
      tokens = std::min(burst, tokens + elapsed * per_second);
    }
    last = now;
    return tokens >= 1;
  }
  void Take(double per_second) {
    if (per_second > 0) tokens -= 1;
  }
};

}  // namespace switchyard
