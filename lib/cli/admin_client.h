// A small blocking HTTP client for the CLI's calls to the daemon's admin listener.
#pragma once

#include <chrono>
#include <string>
#include <utility>
#include <vector>

#include "common/status.h"

namespace switchyard::cli {

struct AdminReply {
  int status = 0;
  std::string body;
};

// Sends one request to `address` ("HOST:PORT"), with "Authorization: Bearer <token>" when
// `token` is set. kUnavailable if no answer has arrived within `timeout` (connect, send and
// read together).
Result<AdminReply> CallAdmin(const std::string& address, const std::string& token,
                             const std::string& method, const std::string& target,
                             const std::string& body,
                             std::chrono::milliseconds timeout = std::chrono::seconds(10));

// The same for any plain-HTTP endpoint, with extra request headers.
Result<AdminReply> CallHttp(const std::string& address, const std::string& method,
                            const std::string& target,
                            const std::vector<std::pair<std::string, std::string>>& headers,
                            const std::string& body,
                            std::chrono::milliseconds timeout = std::chrono::seconds(10));

}  // namespace switchyard::cli
