// The stored form of an accepted webhook and its binary encoding. The encoding is versioned
// (first byte) so later releases can read what earlier ones wrote.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/status.h"

namespace switchyard::storage {

struct StoredEvent {
  std::string id;  // ULID, assigned by the store at append time
  std::string source;
  std::string resource;
  std::string action;
  int64_t received_at_ms = 0;
  std::string installation_uuid;
  // The installation's organization slug as known at ingest ($installation.org); "" if unknown
  // or not needed by the routes then configured.
  std::string installation_org;
  // The request headers that matter later (Config::kept_headers: request-id, sentry-hook-*,
  // content-type, user-agent and those routes read), lower-case names. Never credentials.
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;  // the raw request body, byte for byte
};

std::string EncodeEvent(const StoredEvent& e);
Result<StoredEvent> DecodeEvent(std::string_view bytes);

}  // namespace switchyard::storage
