// EventStore: the durable home of accepted webhooks. An event is acknowledged to the sender only
// after Append's callback reports success, and success means the event is in the write-ahead log
// (and fsync'd when `sync` is on). Implementations batch concurrent appends into one write and
// one fsync (group commit) on a dedicated writer thread; callers never block.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/clock.h"
#include "common/status.h"
#include "storage/delivery_queue.h"
#include "storage/event.h"

namespace switchyard::storage {

struct StoreOptions {
  std::string path;  // directory; created if missing
  bool sync = true;  // fsync each group commit before acknowledging
  std::chrono::milliseconds dedupe_window{std::chrono::hours(1)};  // 0 = no dedupe
  size_t max_batch_events = 1024;       // group-commit bound (events)
  size_t max_batch_bytes = 8u << 20;    // group-commit bound (bytes)
  size_t max_pending_appends = 100000;  // beyond this, Append fails fast with kUnavailable
  // Refuse appends (kUnavailable) while the store's filesystem has less free space than this.
  // The installations table (tiny token records) may use the lower half of it.
  uint64_t min_free_bytes = 128ull << 20;
  // Refuse appends (kUnavailable) while the store holds more than this many bytes (table files
  // plus memtables, from RocksDB's size properties); 0 = unlimited.
  uint64_t max_disk_bytes = 0;
  // Called on the writer thread after each successful group commit with the events it wrote.
  std::function<void(size_t events)> on_group_commit;
};

struct AppendResult {
  std::string id;          // the stored event's id (the first one's, for a duplicate)
  bool duplicate = false;  // same source + identical body within the dedupe window
  size_t deliveries = 0;   // deliveries created (0 for a duplicate)
};

struct StoreStats {
  uint64_t group_commits = 0;
  uint64_t events_written = 0;
  uint64_t write_failures = 0;
};

class EventStore {
 public:
  virtual ~EventStore() = default;

  // Stores `event` durably (assigning its id) together with `deliveries` (all in one atomic
  // batch), unless it duplicates one stored within the dedupe window (then nothing is written).
  // `done` runs exactly once, on the store's writer thread, after the outcome is durable; it must
  // not block. Errors: kUnavailable (storage cannot accept now: disk full, I/O error, overloaded,
  // closing) — the caller answers 503 and the sender retries.
  virtual void Append(StoredEvent event, std::vector<NewDelivery> deliveries,
                      std::function<void(Result<AppendResult>)> done) = 0;

  // Reads one event by id; null if it is not stored. Events are immutable, so the event may be
  // shared with the store's cache of recent events (no copy). Blocking; not for I/O threads.
  virtual Result<std::shared_ptr<const StoredEvent>> Get(const std::string& id) = 0;

  // OK while writes succeed; the last write error otherwise (cleared by the next success).
  virtual Status Health() const = 0;

  // OK unless new webhooks would be refused for want of space now: the filesystem has less than
  // min_free_bytes free, or the store holds more than max_disk_bytes (both checked at the call,
  // so it recovers without a write). Cheap (one statvfs, two RocksDB properties); any thread,
  // also after Close().
  virtual Status Accepting() const = 0;

  virtual StoreStats Stats() const = 0;

  // Non-OK once the store cannot take writes again until it is reopened (a fatal RocksDB error,
  // such as a failed WAL sync in RocksDB 7.8): Accepting() then says so too, and the daemon exits
  // 2 so that its service manager restarts it. Cheap; any thread.
  virtual Status Failed() const { return Status::Ok(); }

  // False once appends have waited more than `limit` without the writer finishing a group (a
  // write or sync stalled behind a hung disk, a RocksDB write stop, or a bug that blocks the
  // writer thread); true while it is idle or progressing. For the service manager's watchdog.
  // Cheap (one lock); any thread.
  virtual bool WriterAlive(std::chrono::milliseconds limit) const {
    (void)limit;
    return true;
  }

  // Stops accepting appends, completes the queued ones, and flushes. Idempotent. Blocking.
  virtual void Close() = 0;
};

// A small durable table of opaque values (the installations' encrypted token records). Put and
// Delete are fsync'd before they return, whatever `storage.sync` says: a token pair Sentry has
// just issued must survive a crash once it is used. Blocking; never call from I/O threads.
class KvTable {
 public:
  virtual ~KvTable() = default;
  virtual Status Put(std::string_view key, std::string_view value) = 0;
  virtual Status Delete(std::string_view key) = 0;
  virtual Result<std::optional<std::string>> Get(std::string_view key) = 0;
  // Every entry whose key starts with `prefix`, in key order.
  virtual Result<std::vector<std::pair<std::string, std::string>>> Scan(
      std::string_view prefix) = 0;
  // OK when a Put of `bytes` would not be refused for lack of space now (cheap: no write).
  virtual Status Room(size_t /*bytes*/) { return Status::Ok(); }
};

// The RocksDB store: events and the delivery queue share one database (and one atomic batch).
class Store : public EventStore, public DeliveryQueue {
 public:
  // The installations table (same database, its own column family).
  virtual KvTable& Installations() = 0;
  // Calls `fn` for each stored event received at or after `from_ms`, oldest first, until it
  // returns false. Blocking; for start-up recovery, not for the hot path.
  virtual Status ScanEventsSince(int64_t from_ms,
                                 const std::function<bool(const StoredEvent&)>& fn) = 0;
};

// Opens (creating if needed) the RocksDB store at options.path. Refuses a corrupted store with
// kCorruption and a message naming the problem; never resets data.
Result<std::unique_ptr<Store>> OpenStore(const StoreOptions& options, Clock& clock);

}  // namespace switchyard::storage
