// Fuzz target: the time values switchyard takes from other servers. The first 8 bytes pick the
// "now" (any instant from 1970 to 2200) and an HTTP status; the rest is a Retry-After header value
// (sinks, Pushover, the Sentry API) and, separately, an RFC 3339 timestamp (Sentry's expiresAt).
//
// Invariants checked (any violation aborts, which libFuzzer reports as a crash; UBSan reports
// any overflow on the way):
//   - a Retry-After is a wait in [0, 36500 days], present only for statuses that retry;
//   - delta-seconds read exactly (saturated at 36500 days);
//   - an RFC 3339 timestamp that parses to an instant in years 0000-9999 UTC formats back to one
//     that parses to the same instant (an offset can carry it a day past either end).
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <string>
#include <string_view>

#include "common/time_format.h"
#include "sinks/sink.h"

namespace {

namespace sinks = switchyard::sinks;
using std::chrono::milliseconds;

constexpr int64_t kMaxWaitMs = int64_t{36500} * 86400 * 1000;

[[noreturn]] void Violated(const char* what, std::string_view input) {
  std::fprintf(stderr, "invariant violated: %s (input \"%.*s\")\n", what,
               static_cast<int>(input.size()), input.data());
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 8) return 0;
  uint64_t pick = 0;
  std::memcpy(&pick, data, sizeof pick);
  const std::string_view text(reinterpret_cast<const char*>(data + 8), size - 8);

  // "now": 1970..2200, in milliseconds.
  const int64_t now_ms = static_cast<int64_t>(pick % (int64_t{7258118400} * 1000));
  const std::chrono::system_clock::time_point now{milliseconds(now_ms)};
  static constexpr int kStatuses[] = {200, 400, 408, 425, 429, 500, 503};
  const int status = kStatuses[(pick >> 56) % std::size(kStatuses)];

  const sinks::Outcome out = sinks::ClassifyHttpStatus(status, text, now);
  if (out.retry_after) {
    if (out.kind != sinks::Outcome::Kind::kRetry) Violated("Retry-After on a non-retry", text);
    const int64_t wait = out.retry_after->count();
    if (wait < 0 || wait > kMaxWaitMs) Violated("Retry-After outside [0, 36500 days]", text);
    // Delta-seconds (no OWS) are read exactly, up to the saturation.
    if (!text.empty() && text.size() <= 12 &&
        text.find_first_not_of("0123456789") == std::string_view::npos) {
      int64_t secs = 0;
      for (char c : text) secs = secs * 10 + (c - '0');
      if (wait != std::min(secs * 1000, kMaxWaitMs)) Violated("delta-seconds misread", text);
    }
  }

  constexpr int64_t kYear0Ms = -62167219200000;     // 0000-01-01T00:00:00Z
  constexpr int64_t kYear10000Ms = 253402300800000;  // 10000-01-01T00:00:00Z
  if (auto ms = switchyard::ParseRfc3339Millis(text); ms && *ms >= kYear0Ms && *ms < kYear10000Ms) {
    const std::string again = switchyard::FormatRfc3339Millis(*ms);
    const auto reparsed = switchyard::ParseRfc3339Millis(again);
    if (!reparsed || *reparsed != *ms) Violated("RFC 3339 round trip", text);
  }
  return 0;
}
