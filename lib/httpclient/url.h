// URL parsing for the HTTP client: which origin a request goes to and its request target.
// Internal to lib/httpclient (and the config loader's check of sink URLs, through ValidateUrl in
// http_client.h). No coroutines here: the fuzz build compiles this file, and clang 14 cannot
// instrument coroutine code.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "common/status.h"

namespace switchyard::httpclient {

// Where a request goes. `origin` ("https://host:port") names the pool and is the only part of
// the URL that appears in logs and error messages.
struct Target {
  bool tls = false;
  std::string host;  // lower-case name or IP literal (IPv6 without brackets)
  uint16_t port = 0;
  std::string target;       // origin-form: path?query, at least "/"
  std::string host_header;  // host[:port], IPv6 in brackets, port omitted when default
  std::string origin;
};

// Parses an absolute http(s) URL. Errors are kInvalidArgument with a message that starts
// "invalid URL: " and does not repeat the URL.
Result<Target> ParseUrl(std::string_view url);

}  // namespace switchyard::httpclient
