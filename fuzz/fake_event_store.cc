#include "fake_event_store.h"

#include <cstdio>

namespace switchyard::fuzz {

void FakeEventStore::Append(storage::StoredEvent event,
                            std::vector<storage::NewDelivery> deliveries,
                            std::function<void(Result<storage::AppendResult>)> done) {
  if (outcome_ == Outcome::kUnavailable) {
    last_event_ = std::move(event);
    last_deliveries_ = std::move(deliveries);
    ++stats_.write_failures;
    done(Unavailable("fake store: unavailable"));
    return;
  }
  // A ULID-shaped id (26 Crockford base32 characters) that is unique within the process.
  char id[27];
  std::snprintf(id, sizeof(id), "01FUZZ%020llu", static_cast<unsigned long long>(next_id_++));
  storage::AppendResult result;
  result.id = id;
  result.duplicate = outcome_ == Outcome::kDuplicate;
  result.deliveries = result.duplicate ? 0 : deliveries.size();
  event.id = id;
  last_event_ = std::move(event);
  last_deliveries_ = std::move(deliveries);
  ++stats_.group_commits;
  if (!result.duplicate) ++stats_.events_written;
  done(std::move(result));
}

Result<std::shared_ptr<const storage::StoredEvent>> FakeEventStore::Get(const std::string& id) {
  if (last_event_ && last_event_->id == id) {
    return std::make_shared<const storage::StoredEvent>(*last_event_);
  }
  return std::shared_ptr<const storage::StoredEvent>();
}

}  // namespace switchyard::fuzz
