// Sink: one configured destination (pushover, http, file). The dispatcher hands it one delivery
// attempt at a time (up to the sink's `concurrency` at once) and records the outcome; sinks hold
// no queue and no retry state of their own. Thread-safe: Deliver() may be called concurrently from
// any thread; `done` is called exactly once, from any thread, and must not block.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "common/status.h"
#include "config/config.h"
#include "storage/event.h"

namespace switchyard::httpclient {
class HttpClient;
}

namespace switchyard::sinks {

struct Delivery {
  std::string id;     // delivery id: stable across retries (the HTTP sink's Idempotency-Key)
  std::string route;  // route name
  int attempt = 1;    // 1 for the first attempt
  std::shared_ptr<const storage::StoredEvent> event;  // raw body byte for byte, metadata
  // Rendered route fields (pushover: title, message, url, url_title, priority, sound, device,
  // html, ttl, retry, expire; http: body, or the sink's own `body` when the route sets none).
  // Absent when neither sets them.
  std::map<std::string, std::string> fields;
  // HTTP sinks whose `url` or header values are templates: those rendered for this event (header
  // values by configured name). Unset (url) or absent (a header) when the event body could not
  // be parsed; the sink then fails the delivery permanently rather than send the template text.
  std::optional<std::string> url;
  std::map<std::string, std::string> headers;
  // The issue/event title found in the payload (pushover's default message), may be empty.
  // Filled for pushover sinks and whenever the route renders fields for this sink; other sinks
  // get the stored bytes without the dispatcher parsing them.
  std::string default_title;
};

struct Outcome {
  enum class Kind {
    kSuccess,    // delivered (2xx, or written for the file sink)
    kRetry,      // transient: retry with backoff (408, 425, 429, 5xx, timeout, connection error)
    kPermanent,  // never retry: dead letter at once (other 4xx, Pushover status != 1, bad input)
  };
  Kind kind = Kind::kSuccess;
  std::string error;  // short, for logs and the DLQ; never contains secrets
  int http_status = 0;
  // The earliest the next attempt may start (from Retry-After, or Pushover's 5 s rule), at most
  // 36500 days. The dispatcher caps a Retry-After at the sink's retry.max_delay...
  std::optional<std::chrono::milliseconds> retry_after;
  // ...but not this: a floor the receiver's contract sets (Pushover: never sooner than 5 s).
  std::chrono::milliseconds min_retry{0};
};

using DeliverCallback = std::function<void(Outcome)>;

class Sink {
 public:
  virtual ~Sink() = default;
  virtual void Deliver(const Delivery& delivery, DeliverCallback done) = 0;
  // False when the sink cannot deliver at all (e.g. Pushover without token/user): the dispatcher
  // logs that once and leaves its deliveries pending (until max_age: then dead letters).
  virtual bool active() const { return true; }
  // Reopens files (SIGHUP, for logrotate). No-op for network sinks.
  virtual void Reopen() {}
};

// Creates the sink for `config`. `client` must outlive the sink. `sync_files`: file sinks
// report a line delivered only once it is synced (storage.sync; see file_sink.h).
Result<std::unique_ptr<Sink>> NewSink(const config::SinkConfig& config,
                                      httpclient::HttpClient& client, bool sync_files = false);

// Classifies an HTTP response per CONTRACT.md §3 (2xx success; 408, 425, 429, 5xx retry; other
// codes permanent) and parses Retry-After (delta seconds or HTTP date, relative to `now`).
Outcome ClassifyHttpStatus(int status, std::string_view retry_after_header,
                           std::chrono::system_clock::time_point now);
// Classifies a transport error from the HttpClient (timeouts and connection errors retry).
Outcome ClassifyTransportError(const Status& status);

}  // namespace switchyard::sinks
