// The Pushover sink: one POST per delivery to the Message API (ecosystem-notes.md §1), form
// encoded. Fields are repaired to valid UTF-8 and cut to Pushover's limits in code points.
// Outcomes: 2xx with {"status":1} = delivered; other 4xx (not 429), or a 2xx without status 1 =
// permanent, with the API's `errors` (never the token or user key); 429, 5xx, any other status,
// timeouts and connection errors = retry no sooner than 5 s later (a longer Retry-After wins).
//
// Quota: every response that carries X-Limit-App-Limit / -Remaining / -Reset updates the sink's
// latest PushoverQuota, readable at any time (e.g. by the metrics layer for a
// `switchyard_pushover_quota_remaining` gauge) through PushoverQuotaOf().
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "config/config.h"
#include "sinks/sink.h"

namespace switchyard::sinks {

// Pushover's limits, in Unicode code points.
inline constexpr size_t kPushoverMaxMessage = 1024;
inline constexpr size_t kPushoverMaxTitle = 250;
inline constexpr size_t kPushoverMaxUrl = 512;
inline constexpr size_t kPushoverMaxUrlTitle = 100;
// "No sooner than 5 seconds from your last request" after a failure.
inline constexpr std::chrono::milliseconds kPushoverMinRetry{5000};
inline constexpr std::chrono::milliseconds kPushoverTimeout{10000};

// The application's message quota as last reported by Pushover. Each value is -1 when its header
// was absent or not an integer.
struct PushoverQuota {
  int64_t limit = -1;      // X-Limit-App-Limit: messages allowed per period
  int64_t remaining = -1;  // X-Limit-App-Remaining
  int64_t reset = -1;      // X-Limit-App-Reset: Unix time (seconds) when the count resets
};

class PushoverSink : public Sink {
 public:
  // The quota from the latest response that carried any X-Limit-App-* header; nullopt before
  // that. Thread-safe.
  virtual std::optional<PushoverQuota> quota() const = 0;
};

// Creates a Pushover sink. `client` must outlive it. active() is false when the token or user key
// is empty (the dispatcher then leaves deliveries pending).
std::unique_ptr<PushoverSink> NewPushoverSink(const config::PushoverSinkConfig& config,
                                              httpclient::HttpClient& client);

// The latest quota of `sink` if it is a Pushover sink that has seen the headers; else nullopt.
// Thread-safe; `sink` may be null.
std::optional<PushoverQuota> PushoverQuotaOf(const Sink* sink);

// The form fields sent for `delivery` (exposed for tests), in this order: token, user, message,
// then title, url, url_title, priority, sound, device, html, ttl, retry, expire when present and
// non-empty in delivery.fields. message is fields["message"], else delivery.default_title, else
// "(no title)". Every value is repaired to valid UTF-8; message, title, url and url_title are cut
// to the limits above (TruncateCodePoints).
std::vector<std::pair<std::string, std::string>> PushoverFormFields(
    const config::PushoverSinkConfig& config, const Delivery& delivery);

// application/x-www-form-urlencoded: unreserved bytes (ALPHA DIGIT * - . _) as is, space as '+',
// everything else as %XX (upper-case hex), pairs joined with '&'.
std::string FormUrlEncode(const std::vector<std::pair<std::string, std::string>>& fields);

}  // namespace switchyard::sinks
