#include "fakes/recording_receiver.h"

namespace switchyard::testing {

RecordingReceiver::RecordingReceiver() {
  default_reply_ = ServerReply{200, {{"Content-Type", "text/plain"}}, "ok"};
  server_ = std::make_unique<TestHttpServer>(
      [this](const ReceivedRequest& request) { return Handle(request); });
}

RecordingReceiver::~RecordingReceiver() { server_.reset(); }

uint16_t RecordingReceiver::port() const { return server_->port(); }

std::string RecordingReceiver::url(const std::string& path) const {
  return "http://127.0.0.1:" + std::to_string(port()) + path;
}

void RecordingReceiver::Enqueue(ServerReply reply) {
  std::lock_guard<std::mutex> lock(mu_);
  script_.push_back(std::move(reply));
}

void RecordingReceiver::EnqueueStatus(int status, int n, const std::string& retry_after) {
  ServerReply reply{status, {}, "status " + std::to_string(status)};
  if (!retry_after.empty()) reply.headers.emplace_back("Retry-After", retry_after);
  std::lock_guard<std::mutex> lock(mu_);
  for (int i = 0; i < n; ++i) script_.push_back(reply);
}

void RecordingReceiver::SetDefault(ServerReply reply) {
  std::lock_guard<std::mutex> lock(mu_);
  default_reply_ = std::move(reply);
}

bool RecordingReceiver::SetDown(bool down) {
  std::lock_guard<std::mutex> lock(down_mu_);
  if (down) {
    server_->Stop();
    return true;
  }
  return server_->Start();
}

std::vector<ReceivedRequest> RecordingReceiver::requests() const {
  std::lock_guard<std::mutex> lock(mu_);
  return requests_;
}

size_t RecordingReceiver::count() const {
  std::lock_guard<std::mutex> lock(mu_);
  return requests_.size();
}

bool RecordingReceiver::WaitFor(size_t count, std::chrono::milliseconds timeout) const {
  std::unique_lock<std::mutex> lock(mu_);
  return cv_.wait_for(lock, timeout, [&] { return requests_.size() >= count; });
}

ServerReply RecordingReceiver::Handle(const ReceivedRequest& request) {
  std::lock_guard<std::mutex> lock(mu_);
  requests_.push_back(request);
  cv_.notify_all();
  if (script_.empty()) return default_reply_;
  ServerReply reply = std::move(script_.front());
  script_.pop_front();
  return reply;
}

}  // namespace switchyard::testing
