// The HTTP sink: one request per delivery to a configured URL (CONTRACT.md §3 "Sinks").
//
// Request: `method` (default POST) to `url` with the configured headers and `timeout`. A `url` or
// header value with placeholders is sent as the dispatcher rendered it for the event
// (Delivery::url, Delivery::headers; control characters in a rendered header value become
// spaces). A rendered URL the client would refuse, or a template left unrendered (the event
// body is not JSON), fails the delivery permanently with a message that says so.
// Body: fields["body"] when the route or the sink sets one (the dispatcher renders the route
// target's `body`, else the sink's own; sent with Content-Type: application/json unless a
// configured header sets Content-Type), else the original webhook body byte for byte with
// Content-Type: application/json (this one always wins over a configured Content-Type, since the
// bytes are the validated JSON payload).
// Every request carries Idempotency-Key: <delivery id> (the same across retries) and
// X-Switchyard-Source / -Resource / -Action / -Route. These are ours: a configured header with one
// of these names (any case) is dropped. Configured Content-Length and Transfer-Encoding are
// dropped too (framing belongs to the client).
// Outcome: ClassifyHttpStatus / ClassifyTransportError. Response bodies are not read beyond
// 64 KiB: a larger one is dropped unread and the status decides (a 2xx with a huge body is a
// delivery).
#pragma once

#include <memory>

#include "config/config.h"
#include "sinks/sink.h"

namespace switchyard::sinks {

inline constexpr size_t kHttpSinkMaxResponseBytes = 64 * 1024;

// `client` must outlive the sink. The sink itself may be destroyed while requests are in flight.
std::unique_ptr<Sink> NewHttpSink(const config::HttpSinkConfig& config,
                                  httpclient::HttpClient& client);

}  // namespace switchyard::sinks
