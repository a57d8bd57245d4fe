// HTTP request/response values passed between the server and handlers. Plain data: Beast and
// Asio stay inside lib/http. Header names in Request are lower-case.
#pragma once

#include <chrono>
#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace switchyard::http {

struct Request {
  std::string method;  // as sent, e.g. "POST"
  std::string target;  // path and query, as sent
  std::vector<std::pair<std::string, std::string>> headers;  // lower-case names, in order
  std::string body;                                          // complete, de-chunked
  std::string remote;                                        // "ip:port" of the peer
  std::chrono::steady_clock::time_point started;  // when the head was complete

  // First value of a header (name must be lower-case); empty if absent.
  std::string_view Header(std::string_view lower_name) const;
  bool HasHeader(std::string_view lower_name) const;
  std::string_view Path() const;   // target without the query
  std::string_view Query() const;  // after '?', or empty
  // Value of a query parameter, percent-decoded; empty if absent.
  std::string QueryParam(std::string_view name) const;
};

struct Response {
  int status = 200;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  std::string content_type = "application/json";

  // {"error":"<message>"}; the message is JSON-escaped. Never put secrets in it.
  static Response Error(int status, std::string_view message);
  static Response Json(int status, std::string body);
  static Response Text(int status, std::string body, std::string content_type);
};

// Completes one request. Must be called exactly once, from any thread.
using Respond = std::function<void(Response)>;

// Serves requests of one listener. Handle() runs on an I/O thread and must not block; slow work
// finishes asynchronously and calls `respond` later from any thread.
class Handler {
 public:
  virtual ~Handler() = default;
  virtual void Handle(Request request, Respond respond) = 0;
  // The HTTP layer answered `status` itself (413 body too large, 400/501 bad framing) for a
  // request whose head it parsed (`head` has no body). On an I/O thread; must not block. For
  // metrics and logs: the answer is already decided.
  virtual void OnRefused(const Request& /*head*/, int /*status*/) {}
};

}  // namespace switchyard::http
