// Clock: the single source of time for switchyard. Injected everywhere time matters (dedupe
// windows, backoff, token expiry) so tests can move time without sleeping. Implementations must
// be thread-safe.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>

namespace switchyard {

class Clock {
 public:
  virtual ~Clock() = default;
  // Wall-clock time (for stored timestamps and expiry across restarts).
  virtual std::chrono::system_clock::time_point Now() const = 0;
  // Monotonic time (for durations inside one process).
  virtual std::chrono::steady_clock::time_point SteadyNow() const = 0;

  int64_t NowMillis() const {
    return std::chrono::duration_cast<std::chrono::milliseconds>(Now().time_since_epoch()).count();
  }
  // Monotonic milliseconds (an arbitrary epoch): for durations and expiry inside one process.
  int64_t SteadyMillis() const {
    return std::chrono::duration_cast<std::chrono::milliseconds>(SteadyNow().time_since_epoch())
        .count();
  }
};

// The real clock. Process-wide singleton; never destroyed.
Clock& SystemClock();

// A clock that only moves when told to. Thread-safe.
class FakeClock : public Clock {
 public:
  explicit FakeClock(int64_t now_ms = 1700000000000) : now_ms_(now_ms) {}
  std::chrono::system_clock::time_point Now() const override {
    return std::chrono::system_clock::time_point(
        std::chrono::milliseconds(now_ms_.load() + wall_step_ms_.load()));
  }
  std::chrono::steady_clock::time_point SteadyNow() const override {
    return std::chrono::steady_clock::time_point(std::chrono::milliseconds(now_ms_.load()));
  }
  // Time passes: both clocks move.
  void Advance(std::chrono::milliseconds d) { now_ms_ += d.count(); }
  // The wall clock is set (an NTP step, a resumed VM): only Now() moves, by `d` (may be < 0).
  void StepWall(std::chrono::milliseconds d) { wall_step_ms_ += d.count(); }

 private:
  std::atomic<int64_t> now_ms_;
  std::atomic<int64_t> wall_step_ms_{0};
};

}  // namespace switchyard
