// FakeHttpClient: an in-memory httpclient::HttpClient for unit tests of sinks. Records every
// request and answers from a script (a FIFO of responses or error Statuses, one per request; then
// the default, 200 with an empty body). Answers synchronously: `done` runs inside Send(), on the
// caller's thread. After Shutdown(), requests fail with kUnavailable. Thread-safe.
#pragma once

#include <cstddef>
#include <deque>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "httpclient/http_client.h"

namespace switchyard::testing {

class FakeHttpClient : public httpclient::HttpClient {
 public:
  using Headers = std::vector<std::pair<std::string, std::string>>;

  void Send(httpclient::ClientRequest request, httpclient::ClientCallback done) override;
  void Shutdown() override;

  // Scripts the answer to one request.
  void Respond(int status, std::string body = "", Headers headers = {});
  void Respond(httpclient::ClientResponse response);
  void Fail(Status status);
  // The answer once the script is empty.
  void SetDefault(Result<httpclient::ClientResponse> answer);

  std::vector<httpclient::ClientRequest> requests() const;
  httpclient::ClientRequest last_request() const;  // default-constructed if none
  size_t request_count() const;

 private:
  mutable std::mutex mu_;
  std::deque<Result<httpclient::ClientResponse>> script_;  // guarded by mu_
  Result<httpclient::ClientResponse> default_ =
      httpclient::ClientResponse{200, {}, ""};       // guarded by mu_
  std::vector<httpclient::ClientRequest> requests_;  // guarded by mu_
  bool shut_down_ = false;                           // guarded by mu_
};

}  // namespace switchyard::testing
