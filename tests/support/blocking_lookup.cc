#include "support/blocking_lookup.h"

namespace switchyard::testing {

BlockingLookup::~BlockingLookup() {
  std::unique_lock lock(mu_);
  blocked_.clear();
  cv_.notify_all();
  cv_.wait(lock, [&] { return running_ == 0; });
}

void BlockingLookup::Block(const std::string& host) {
  std::lock_guard lock(mu_);
  blocked_.insert(host);
}

void BlockingLookup::Release(const std::string& host) {
  std::lock_guard lock(mu_);
  blocked_.erase(host);
  cv_.notify_all();
}

void BlockingLookup::Fail(const std::string& host) {
  std::lock_guard lock(mu_);
  failing_.insert(host);
}

std::function<Result<std::vector<std::string>>(const std::string&)> BlockingLookup::Fn() {
  return [this](const std::string& host) { return Lookup(host); };
}

int BlockingLookup::Count(const std::string& host) {
  std::lock_guard lock(mu_);
  return started_[host];
}

bool BlockingLookup::WaitStarted(const std::string& host, std::chrono::milliseconds limit) {
  std::unique_lock lock(mu_);
  return cv_.wait_for(lock, limit, [&] { return started_[host] > 0; });
}

bool BlockingLookup::WaitFinished(const std::string& host, std::chrono::milliseconds limit) {
  std::unique_lock lock(mu_);
  return cv_.wait_for(lock, limit, [&] { return finished_[host] > 0; });
}

Result<std::vector<std::string>> BlockingLookup::Lookup(const std::string& host) {
  std::unique_lock lock(mu_);
  ++running_;
  ++started_[host];
  cv_.notify_all();
  cv_.wait(lock, [&] { return blocked_.count(host) == 0; });
  const bool fail = failing_.count(host) > 0;
  ++finished_[host];
  --running_;
  cv_.notify_all();
  if (fail) return Unavailable("Name or service not known");
  return std::vector<std::string>{"127.0.0.1"};
}

}  // namespace switchyard::testing
