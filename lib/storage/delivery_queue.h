// DeliveryQueue: the durable retry queue. A delivery is one (event × route × sink). Deliveries are
// created in the same atomic WriteBatch as their event (EventStore::Append), so nothing falls
// between accept and route. The dispatcher reads due deliveries per sink in due-time order and
// records each attempt's outcome here.
//
// Threads: all methods are blocking RocksDB calls; call them off the I/O threads (the dispatcher
// thread, the admin worker). Thread-safe.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "common/status.h"

namespace switchyard::storage {

// Requested at ingest: deliver the event to `sink` for `route`.
struct NewDelivery {
  std::string route;
  std::string sink;
  bool deferred = false;  // the route's match depends on $issue.*: decide after enrichment
  // Set on one deferred delivery of each (event, route): the one that counts the route's match
  // (switchyard_route_matches_total) once it is decided, so the count is per event, not per
  // sink or attempt.
  bool counts_match = false;
};

struct DeliveryRecord {
  std::string id;  // ULID, stable across retries
  std::string event_id;
  std::string route;
  std::string sink;
  bool deferred = false;
  bool counts_match = false;  // see NewDelivery; cleared once counted
  bool dead = false;
  uint32_t attempts = 0;
  int64_t created_ms = 0;
  int64_t first_attempt_ms = 0;  // 0 = never attempted
  int64_t last_attempt_ms = 0;
  int64_t due_ms = 0;  // next attempt (pending), or when it died (dead)
  std::string last_error;
};

struct QueueCounts {
  struct PerSink {
    uint64_t pending = 0;
    uint64_t dead = 0;
  };
  uint64_t pending = 0;
  uint64_t dead = 0;
  std::map<std::string, PerSink> sinks;
};

// Ids of deliveries (in flight); found by string_view.
using DeliveryIdSet = std::set<std::string, std::less<>>;

class DeliveryQueue {
 public:
  virtual ~DeliveryQueue() = default;

  // Up to `limit` pending deliveries of `sink` with due_ms <= now_ms, in due order, skipping the
  // ids in `skip` (in flight). Reads only the live part of the sink's schedule.
  virtual Result<std::vector<DeliveryRecord>> Due(const std::string& sink, int64_t now_ms,
                                                  size_t limit, const DeliveryIdSet& skip) = 0;
  // Delivered (or filtered): removes the delivery.
  virtual Status Complete(const DeliveryRecord& d) = 0;
  // Complete() for many deliveries in one write (the dispatcher records a round's successes
  // together). All or none are removed.
  virtual Status CompleteAll(const std::vector<DeliveryRecord>& ds) = 0;
  // Failed, will retry: stores attempts/error and moves it to `next_due_ms` in the schedule.
  virtual Status Reschedule(const DeliveryRecord& d, int64_t next_due_ms) = 0;
  // Permanent failure or out of attempts/age: moves it to the dead letters.
  virtual Status DeadLetter(const DeliveryRecord& d) = 0;

  // Up to `limit` dead letters in id order (oldest first), starting after the id `after`
  // (empty: from the first), so a caller can page through any number of them.
  virtual Result<std::vector<DeliveryRecord>> ListDead(size_t limit, const std::string& after) = 0;
  Result<std::vector<DeliveryRecord>> ListDead(size_t limit) { return ListDead(limit, ""); }
  // Moves dead letters back to pending, due now, attempts reset. Returns how many were replayed;
  // the given ids that are not dead letters (unknown, pending, already replayed or dropped) are
  // appended to *skipped when it is not null.
  virtual Result<size_t> Replay(const std::vector<std::string>& ids, bool all, int64_t now_ms,
                                std::vector<std::string>* skipped) = 0;
  Result<size_t> Replay(const std::vector<std::string>& ids, bool all, int64_t now_ms) {
    return Replay(ids, all, now_ms, nullptr);
  }
  // Deletes dead letters. Returns how many were dropped; *skipped as for Replay.
  virtual Result<size_t> Drop(const std::vector<std::string>& ids,
                              std::vector<std::string>* skipped) = 0;
  Result<size_t> Drop(const std::vector<std::string>& ids) { return Drop(ids, nullptr); }
  // Removes dead letters that died before `cutoff_ms`, at most kMaxPurgedPerCall of them (the
  // oldest ids first). Returns how many; a caller that gets kMaxPurgedPerCall calls again.
  static constexpr size_t kMaxPurgedPerCall = 10000;
  virtual Result<size_t> PurgeDead(int64_t cutoff_ms) = 0;

  // Deletes stored events received before `cutoff_ms` (one range tombstone: event ids are
  // time-ordered ULIDs), except those a stored delivery, pending or dead, still names: the cutoff
  // is lowered to the oldest delivery's time (a dead letter replayed days later keeps its event).
  virtual Status PurgeEventsBefore(int64_t cutoff_ms) = 0;

  virtual QueueCounts Counts() const = 0;
  virtual Result<std::optional<DeliveryRecord>> GetDelivery(const std::string& id) = 0;
};

}  // namespace switchyard::storage
