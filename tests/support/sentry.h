// Sentry-side helpers for tests: the real example payloads (tests/fixtures/sentry-payloads), compacted
// as Sentry sends them, and signed as Sentry signs them.
#pragma once

#include <string>
#include <utility>
#include <vector>

namespace switchyard::testing {

// Reads a payload file and re-serializes it compactly with non-ASCII escaped as \uXXXX
// (Sentry's json.dumps: separators (",",":"), ensure_ascii=True).
std::string CompactPayload(const std::string& file_name);
// Names of the valid JSON webhook payload files (resource.action.json), sorted.
std::vector<std::string> WebhookPayloadFiles();
// Lower-case hex HMAC-SHA256(secret, body).
std::string SentrySignature(const std::string& secret, const std::string& body);
// The headers Sentry sends with a webhook.
std::vector<std::pair<std::string, std::string>> SentryHeaders(const std::string& resource,
                                                               const std::string& signature);

}  // namespace switchyard::testing
