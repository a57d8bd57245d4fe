// An in-memory storage::EventStore for the fuzz targets: no RocksDB, no writer thread. Append
// completes synchronously (its callback runs before Append returns, on the caller's thread) with
// the outcome the harness chose beforehand, and keeps the last appended event for invariant checks.
// Not thread-safe: libFuzzer runs the harness on one thread.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "storage/event_store.h"

namespace switchyard::fuzz {

class FakeEventStore : public storage::EventStore {
 public:
  enum class Outcome { kStored, kDuplicate, kUnavailable };

  // The outcome of the next Append calls.
  void set_outcome(Outcome outcome) { outcome_ = outcome; }
  // Forgets the last event (call before each request).
  void Reset() {
    last_event_.reset();
    last_deliveries_.clear();
  }
  // The event and deliveries of the last Append since Reset(), whatever its outcome.
  const std::optional<storage::StoredEvent>& last_event() const { return last_event_; }
  const std::vector<storage::NewDelivery>& last_deliveries() const { return last_deliveries_; }

  void Append(storage::StoredEvent event, std::vector<storage::NewDelivery> deliveries,
              std::function<void(Result<storage::AppendResult>)> done) override;
  Result<std::shared_ptr<const storage::StoredEvent>> Get(const std::string& id) override;
  Status Health() const override { return Status::Ok(); }
  Status Accepting() const override { return Status::Ok(); }
  storage::StoreStats Stats() const override { return stats_; }
  void Close() override {}

 private:
  Outcome outcome_ = Outcome::kStored;
  std::optional<storage::StoredEvent> last_event_;
  std::vector<storage::NewDelivery> last_deliveries_;
  storage::StoreStats stats_;
  uint64_t next_id_ = 1;
};

}  // namespace switchyard::fuzz
