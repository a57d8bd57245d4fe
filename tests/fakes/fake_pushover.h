// FakePushover: a real HTTP server on 127.0.0.1 implementing the documented contract of Pushover's
// Message API (ecosystem-notes.md §1), for unit and end-to-end tests.
//
// POST /1/messages.json, application/x-www-form-urlencoded (percent-decoding, '+' as space).
// Checks, in order: token (400 {"token":"invalid","errors":["application token is invalid"]}),
// user (400 {"user":"invalid","errors":["user identifier is invalid"]}), message present and
// non-empty, limits in code points (message 1024, title 250, url 512, url_title 100: "<field>
// cannot be longer than <N> characters"), priority in -2..2, and priority 2 with retry >= 30 and
// expire <= 10800. Every error is 4xx with "status":0, an "errors" array and a "request" uuid.
// Success: 200 {"status":1,"request":"<uuid>"}, and the message is recorded. Every messages.json
// answer carries X-Limit-App-Limit / -Remaining / -Reset; once remaining reaches 0 the answer is
// 429. Other paths are 404, other methods 405.
//
// Scriptable faults, each consumed by one request in FIFO order before any checks:
// FailNext (answer a status, e.g. 500 or 429), HangNext (answer normally but only after a delay;
// the message is accepted at once, as a slow real service would), CloseNext (read the request,
// record it, close the connection without answering). Thread-safe.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "fakes/test_http_server.h"

namespace switchyard::testing {

struct FakePushoverOptions {
  std::string token = "azGDORePK8gMaC0QOYAMyEEuzJnyUi";  // the valid application token
  std::string user = "uQiRzpo4DXghDmr9QzzfQu27cmVRsG";   // the valid user key
  int64_t quota_limit = 10000;                           // X-Limit-App-Limit
  int64_t quota_reset = 1893456000;                      // X-Limit-App-Reset (Unix seconds)
};

// One accepted message: the decoded form fields.
using PushoverMessage = std::map<std::string, std::string>;

// One request as seen by the fake, with the status it answered (0 = closed, no answer).
struct PushoverRequest {
  ReceivedRequest request;
  int status = 0;
};

class FakePushover {
 public:
  explicit FakePushover(FakePushoverOptions options = {});
  ~FakePushover();
  FakePushover(const FakePushover&) = delete;
  FakePushover& operator=(const FakePushover&) = delete;

  uint16_t port() const;
  // http://127.0.0.1:<port>/1/messages.json (the api_url to configure).
  std::string url() const;
  const FakePushoverOptions& options() const { return options_; }

  // The next `n` requests are answered with `status` (e.g. 500, 503 or 429) and a JSON error
  // body, plus `retry_after` as a Retry-After header when non-empty.
  void FailNext(int n, int status, std::string retry_after = "");
  // The next `n` requests are answered only after `delay`.
  void HangNext(int n, std::chrono::milliseconds delay);
  // The next `n` requests get their connection closed without an answer.
  void CloseNext(int n);
  // Sets X-Limit-App-Remaining (0 = over quota: 429 for every message).
  void SetQuotaRemaining(int64_t remaining);

  std::vector<PushoverMessage> messages() const;  // accepted, in order
  std::vector<PushoverRequest> requests() const;  // every request to any path, in order
  size_t message_count() const;
  size_t request_count() const;
  // Waits until at least `count` messages were accepted; false on timeout.
  bool WaitFor(size_t count, std::chrono::milliseconds timeout) const;
  // Waits until at least `count` requests arrived (whatever the answer); false on timeout.
  bool WaitForRequests(size_t count, std::chrono::milliseconds timeout) const;

 private:
  struct Fault {
    enum Kind { kStatus, kHang, kClose } kind;
    int status = 0;
    std::string retry_after;
    std::chrono::milliseconds delay{0};
  };

  ServerReply Handle(const ReceivedRequest& request);
  ServerReply Validate(const std::map<std::string, std::string>& form);
  ServerReply JsonReply(int status, const std::string& body) const;  // with quota headers

  const FakePushoverOptions options_;
  mutable std::mutex mu_;
  mutable std::condition_variable cv_;
  std::deque<Fault> faults_;                // guarded by mu_
  std::vector<PushoverMessage> messages_;   // guarded by mu_
  std::vector<PushoverRequest> requests_;   // guarded by mu_
  int64_t remaining_;                       // guarded by mu_
  std::unique_ptr<TestHttpServer> server_;  // last: stopped before the state above goes away
};

// Decodes an application/x-www-form-urlencoded body ('+' is space, %XX decoded; a malformed
// escape is kept literally). A repeated name keeps its first value.
std::map<std::string, std::string> ParseForm(const std::string& body);

// Number of code points in `s`, counting each invalid byte as one.
size_t CountUtf8CodePoints(const std::string& s);

}  // namespace switchyard::testing
