// ConfigHolder: the current configuration, swapped whole on reload. Readers take a snapshot
// (shared_ptr) and use it for the whole request, so a reload never changes config mid-request.
// Thread-safe.
#pragma once

#include <memory>
#include <mutex>

#include "config/config.h"

namespace switchyard::config {

class ConfigHolder {
 public:
  explicit ConfigHolder(std::shared_ptr<const Config> initial) : current_(std::move(initial)) {}
  std::shared_ptr<const Config> Get() const {
    std::lock_guard lock(mu_);
    return current_;
  }
  void Set(std::shared_ptr<const Config> next) {
    std::lock_guard lock(mu_);
    current_.swap(next);
  }

 private:
  mutable std::mutex mu_;
  std::shared_ptr<const Config> current_;  // GUARDED_BY(mu_)
};

}  // namespace switchyard::config
