#include "fakes/fake_http_client.h"

namespace switchyard::testing {

void FakeHttpClient::Send(httpclient::ClientRequest request, httpclient::ClientCallback done) {
  Result<httpclient::ClientResponse> answer = Unavailable("client shut down");
  {
    std::lock_guard<std::mutex> lock(mu_);
    requests_.push_back(std::move(request));
    if (!shut_down_) {
      if (script_.empty()) {
        answer = default_;
      } else {
        answer = std::move(script_.front());
        script_.pop_front();
      }
    }
  }
  done(std::move(answer));
}

void FakeHttpClient::Shutdown() {
  std::lock_guard<std::mutex> lock(mu_);
  shut_down_ = true;
}

void FakeHttpClient::Respond(int status, std::string body, Headers headers) {
  Respond(httpclient::ClientResponse{status, std::move(headers), std::move(body)});
}

void FakeHttpClient::Respond(httpclient::ClientResponse response) {
  std::lock_guard<std::mutex> lock(mu_);
  script_.emplace_back(std::move(response));
}

void FakeHttpClient::Fail(Status status) {
  std::lock_guard<std::mutex> lock(mu_);
  script_.emplace_back(std::move(status));
}

void FakeHttpClient::SetDefault(Result<httpclient::ClientResponse> answer) {
  std::lock_guard<std::mutex> lock(mu_);
  default_ = std::move(answer);
}

std::vector<httpclient::ClientRequest> FakeHttpClient::requests() const {
  std::lock_guard<std::mutex> lock(mu_);
  return requests_;
}

httpclient::ClientRequest FakeHttpClient::last_request() const {
  std::lock_guard<std::mutex> lock(mu_);
  return requests_.empty() ? httpclient::ClientRequest{} : requests_.back();
}

size_t FakeHttpClient::request_count() const {
  std::lock_guard<std::mutex> lock(mu_);
  return requests_.size();
}

}  // namespace switchyard::testing
