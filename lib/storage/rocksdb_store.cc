// RocksDB implementation of Store (EventStore + DeliveryQueue).
//
// Layout (column families):
//   events:     <ULID event id>                  -> EncodeEvent(event)
//   dedupe:     <source> 0x00 <sha256(body)>     -> fixed64le(received_at_ms) <ULID event id>
//   deliveries: <ULID delivery id>               -> EncodeDelivery(record)
//   schedule:   <sink> 0x00 be64(due_ms) <id>    -> "" (pending deliveries, due order per sink)
//   dead:       <ULID delivery id>               -> "" (index of dead letters)
//   installations: <source> 0x00 <uuid>          -> sealed token record (lib/sentry; opaque here)
// An event, its dedupe entry and its deliveries are written in one WriteBatch, so either all
// exist or none. Expired dedupe entries are ignored on lookup and dropped by a compaction filter.
// Schedule scans start at a per-sink in-memory watermark (no live key of the sink is below it),
// so the tombstones of completed deliveries are not walked again (RocksDB's queue caveat).
//
// Threads: Append() may be called from any thread; it only enqueues. One writer thread owns all
// writes: it drains the queue into one WriteBatch (group commit), writes it with the configured
// sync, then runs the callbacks. Dedupe checks happen on the writer thread too, so two identical
// bodies in flight at once can never both be stored.
#include <rocksdb/compaction_filter.h>
#include <rocksdb/db.h>
#include <rocksdb/filter_policy.h>
#include <rocksdb/options.h>
#include <rocksdb/slice_transform.h>
#include <rocksdb/table.h>
#include <rocksdb/utilities/table_properties_collectors.h>
#include <rocksdb/write_batch.h>
#include <sys/statvfs.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <filesystem>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <shared_mutex>
#include <thread>
#include <unordered_map>

#include "common/crypto.h"
#include "common/ids.h"
#include "common/log.h"
#include "common/step_aside.h"
#include "common/thread_name.h"
#include "storage/delivery_record.h"
#include "storage/event_store.h"
#include "storage/rocksdb_common.h"

namespace switchyard::storage {
namespace {

int64_t DecodeFixed64(const char* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return static_cast<int64_t>(v);
}

// The dead-letter index's value: when the delivery died (8 bytes, host order, as the dedupe
// index's). Empty in stores written before it was kept: DecodeDeathTime returns -1.
std::string EncodeDeathTime(int64_t died_ms) {
  std::string v(8, '\0');
  std::memcpy(v.data(), &died_ms, 8);
  return v;
}

int64_t DecodeDeathTime(const rocksdb::Slice& value) {
  return value.size() == 8 ? DecodeFixed64(value.data()) : -1;
}

class DedupeExpiryFilter final : public rocksdb::CompactionFilter {
 public:
  DedupeExpiryFilter(Clock& clock, std::chrono::milliseconds window)
      : clock_(clock), window_(window) {}
  bool Filter(int, const rocksdb::Slice&, const rocksdb::Slice& value, std::string*,
              bool*) const override {
    if (value.size() < 8) return true;
    return DecodeFixed64(value.data()) + window_.count() < clock_.NowMillis();
  }
  const char* Name() const override { return "switchyard.DedupeExpiryFilter"; }

 private:
  Clock& clock_;
  std::chrono::milliseconds window_;
};

// One column family as a KvTable; every write is synced.
class RocksKvTable final : public KvTable {
 public:
  RocksKvTable(rocksdb::DB* db, rocksdb::ColumnFamilyHandle* cf, std::function<Status(size_t)> room)
      : db_(db), cf_(cf), room_(std::move(room)) {}
  Status Put(std::string_view key, std::string_view value) override {
    if (Status room = room_(key.size() + value.size()); !room.ok()) return room;
    rocksdb::WriteOptions wo;
    wo.sync = true;
    rocksdb::Status s = db_->Put(wo, cf_, rocksdb::Slice(key.data(), key.size()),
                                 rocksdb::Slice(value.data(), value.size()));
    return s.ok() ? Status::Ok() : Unavailable("storage write failed: " + s.ToString());
  }
  Status Delete(std::string_view key) override {
    if (Status room = room_(key.size()); !room.ok()) return room;
    rocksdb::WriteOptions wo;
    wo.sync = true;
    rocksdb::Status s = db_->Delete(wo, cf_, rocksdb::Slice(key.data(), key.size()));
    return s.ok() ? Status::Ok() : Unavailable("storage write failed: " + s.ToString());
  }
  Result<std::optional<std::string>> Get(std::string_view key) override {
    std::string value;
    rocksdb::Status s =
        db_->Get(rocksdb::ReadOptions(), cf_, rocksdb::Slice(key.data(), key.size()), &value);
    if (s.IsNotFound()) return std::optional<std::string>();
    if (!s.ok()) return Unavailable("storage read failed: " + s.ToString());
    return std::optional<std::string>(std::move(value));
  }
  Result<std::vector<std::pair<std::string, std::string>>> Scan(std::string_view prefix) override {
    std::vector<std::pair<std::string, std::string>> out;
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), cf_));
    for (it->Seek(rocksdb::Slice(prefix.data(), prefix.size())); it->Valid(); it->Next()) {
      if (!it->key().starts_with(rocksdb::Slice(prefix.data(), prefix.size()))) break;
      out.emplace_back(it->key().ToString(), it->value().ToString());
    }
    if (!it->status().ok()) return Unavailable("storage read failed: " + it->status().ToString());
    return out;
  }
  Status Room(size_t bytes) override { return room_(bytes); }

 private:
  rocksdb::DB* db_;
  rocksdb::ColumnFamilyHandle* cf_;
  std::function<Status(size_t)> room_;
};

struct PendingAppend {
  StoredEvent event;
  std::vector<NewDelivery> deliveries;
  std::function<void(Result<AppendResult>)> done;
};

// RocksDB's background errors, reported from any of its threads (and from a foreground write that
// fails). A WAL sync that fails for another thread's write (a token record's synced Put, a flush
// syncing a closed WAL) consumes the kernel's one report of the error, and the writer's own
// SyncWAL() then returns OK for pages that may never reach the disk: the writer compares the count
// around each group (Write). A fatal error cannot be resumed until the store is reopened.
class BackgroundErrors final : public rocksdb::EventListener {
 public:
  void OnBackgroundError(rocksdb::BackgroundErrorReason reason, rocksdb::Status* error) override {
    if (error != nullptr && error->severity() >= rocksdb::Status::Severity::kFatalError) {
      std::lock_guard lock(mu_);
      if (fatal_.empty()) fatal_ = error->ToString();
    }
    // A compaction never writes or syncs the WAL (its ENOSPC near the disk's floor is a soft
    // error that must not fail a durable group).
    if (reason != rocksdb::BackgroundErrorReason::kCompaction) {
      count_.fetch_add(1, std::memory_order_acq_rel);
    }
  }
  uint64_t count() const { return count_.load(std::memory_order_acquire); }
  // The first fatal error, or "".
  std::string fatal() const {
    std::lock_guard lock(mu_);
    return fatal_;
  }

 private:
  std::atomic<uint64_t> count_{0};
  mutable std::mutex mu_;
  std::string fatal_;  // GUARDED_BY(mu_)
};

class RocksDbStore final : public Store {
 public:
  RocksDbStore(StoreOptions options, Clock& clock, rocksdb::Env* env)
      : options_(std::move(options)),
        clock_(clock),
        env_(env),
        dedupe_filter_(clock, options_.dedupe_window) {}

  ~RocksDbStore() override { Close(); }

  Status Open() {
    rocksdb::ColumnFamilyOptions dedupe_opts = BaseColumnFamilyOptions();
    dedupe_opts.compaction_filter = &dedupe_filter_;
    // One compression (LZ4, the default's) at every level: RocksDB moves a flushed file down a
    // level without rewriting it only when the compressions match (event keys are time-ordered
    // ULIDs, so flushed files do not overlap), and a different bottommost compression turned
    // every such move into a rewrite. Blocks still compress across records (JSON keys repeat),
    // though each body is LZ4'd in its record already: without it a 1M backlog took 2.6 GB.
    rocksdb::ColumnFamilyOptions events_opts = BaseColumnFamilyOptions();
    // Queue families are delete-heavy: compact files that are mostly tombstones early.
    rocksdb::ColumnFamilyOptions queue_opts = BaseColumnFamilyOptions();
    // Their keys arrive in order (ULIDs; a sink's schedule keys by due time), and a completion
    // deletes keys written a moment before: each memtable insert starts its skiplist search at
    // the previous insert of the same first byte instead of at the top. End to end this took
    // the dispatcher's completion writes from 7.8 % to 5.1 % of all samples. RocksDB 7.8 keeps
    // one hint per prefix for a memtable's point entries and its range tombstones alike (fixed
    // upstream later), and a hint used on both corrupts the skiplist (Debian's build asserts):
    // never DeleteRange in these families. The events family, which does (retention), has none.
    queue_opts.memtable_insert_with_hint_prefix_extractor.reset(
        rocksdb::NewCappedPrefixTransform(1));
    queue_opts.table_properties_collector_factories.emplace_back(
        rocksdb::NewCompactOnDeletionCollectorFactory(/*window=*/10000, /*trigger=*/5000,
                                                      /*ratio=*/0.5));
    auto result = OpenDatabase(options_.path,
                               {{kEventsCf, events_opts},
                                {kDedupeCf, dedupe_opts},
                                {kDeliveriesCf, queue_opts},
                                {kScheduleCf, queue_opts},
                                {kDeadCf, queue_opts},
                                {kInstallationsCf, BaseColumnFamilyOptions()}},
                               env_, bg_errors_);
    if (!result.ok()) return result.status();
    db_ = std::move(result.value());
    events_cf_ = db_->Handle(kEventsCf);
    dedupe_cf_ = db_->Handle(kDedupeCf);
    deliveries_cf_ = db_->Handle(kDeliveriesCf);
    schedule_cf_ = db_->Handle(kScheduleCf);
    dead_cf_ = db_->Handle(kDeadCf);
    // Token records may use the lower half of the free-space floor (see RoomForWrite).
    installations_.emplace(db_->db(), db_->Handle(kInstallationsCf), [this](size_t bytes) {
      return RoomForWrite(bytes, options_.min_free_bytes / 2);
    });
    if (Status s = LoadCounts(); !s.ok()) return s;
    writer_ = std::thread([this] {
      NameThisThread("sy-store-write");
      WriterLoop();
    });
    return Status::Ok();
  }

  bool WriterAlive(std::chrono::milliseconds limit) const override {
    std::optional<std::chrono::steady_clock::time_point> since;
    {
      std::lock_guard lock(mu_);
      since = waiting_since_;
    }
    return !since || clock_.SteadyNow() - *since <= limit;
  }

  void Append(StoredEvent event, std::vector<NewDelivery> deliveries,
              std::function<void(Result<AppendResult>)> done) override {
    bool closing, accepted = false, wake_writer = false;
    {
      std::lock_guard lock(mu_);
      closing = closing_;
      if (!closing && queue_.size() < options_.max_pending_appends) {
        // Only an append to an empty queue can find the writer waiting; the others would pay
        // a futex call for nothing.
        wake_writer = queue_.empty();
        // The first append the writer has to take up: its wait starts (once per group).
        if (!waiting_since_) waiting_since_ = clock_.SteadyNow();
        queue_.push_back({std::move(event), std::move(deliveries), std::move(done)});
        accepted = true;
      }
    }
    // Notified after the unlock: a writer woken while this thread still held the lock would
    // block on it at once and cost two more context switches (both often share one core).
    if (wake_writer) cv_.notify_one();
    if (accepted) return;
    done(Unavailable(closing ? "storage is closing" : "storage write queue is full"));
  }

  Result<std::shared_ptr<const StoredEvent>> Get(const std::string& id) override {
    {
      std::lock_guard lock(recent_mu_);
      auto it = recent_.find(id);
      if (it != recent_.end()) return it->second;
    }
    std::string value;
    rocksdb::Status s = db_->db()->Get(rocksdb::ReadOptions(), events_cf_, id, &value);
    if (s.IsNotFound()) return std::shared_ptr<const StoredEvent>();
    if (!s.ok()) return Unavailable("reading event: " + s.ToString());
    auto decoded = DecodeEvent(value);
    if (!decoded.ok()) return decoded.status();
    return std::make_shared<const StoredEvent>(std::move(decoded).value());
  }

  KvTable& Installations() override { return *installations_; }

  Status ScanEventsSince(int64_t from_ms,
                         const std::function<bool(const StoredEvent&)>& fn) override {
    std::unique_ptr<rocksdb::Iterator> it(
        db_->db()->NewIterator(rocksdb::ReadOptions(), events_cf_));
    for (it->Seek(UlidLowerBound(from_ms)); it->Valid(); it->Next()) {
      auto decoded = DecodeEvent(std::string_view(it->value().data(), it->value().size()));
      if (!decoded.ok()) return decoded.status();
      decoded.value().id = it->key().ToString();
      if (!fn(decoded.value())) break;
    }
    if (!it->status().ok()) return Unavailable("scanning events: " + it->status().ToString());
    return Status::Ok();
  }

  Status Health() const override {
    std::lock_guard lock(health_mu_);
    return health_;
  }

  Status Failed() const override {
    std::string fatal = bg_errors_->fatal();
    if (fatal.empty() && !resume_refused_.load()) return Status::Ok();
    if (fatal.empty()) fatal = "RocksDB refuses to resume";
    return Unavailable("storage failed beyond recovery in this process (" + fatal +
                       "); it takes writes again once reopened");
  }

  Status Accepting() const override {
    if (Status failed = Failed(); !failed.ok()) return failed;
    if (Status room = RoomForWrite(0); !room.ok()) return room;
    if (options_.max_disk_bytes == 0) return Status::Ok();
    // Read at each call, as the writer's check reads it, so readiness returns as soon as the
    // backlog shrinks, without a webhook having to try first.
    std::shared_lock lock(close_mu_);
    if (!db_ || db_->db() == nullptr) return Status::Ok();  // closed: nothing to measure
    // Also while the last batch the writer refused for the bound would still not fit: a store
    // a few KB under the bound refuses every webhook too.
    const uint64_t used = StoreBytes();
    if (used + refused_batch_bytes_.load(std::memory_order_relaxed) <= options_.max_disk_bytes) {
      return Status::Ok();
    }
    return Unavailable("storage holds " + std::to_string(used) +
                       " bytes, at or over max_disk_bytes");
  }

  StoreStats Stats() const override {
    std::lock_guard lock(health_mu_);
    return stats_;
  }

  void Close() override {
    {
      std::lock_guard lock(mu_);
      if (closing_) return;
      closing_ = true;
      cv_.notify_all();
    }
    if (writer_.joinable()) writer_.join();
    std::unique_lock lock(close_mu_);  // Accepting() may be reading the database's size
    if (db_) db_->Close();
  }

  // DeliveryQueue

  Result<std::vector<DeliveryRecord>> Due(const std::string& sink, int64_t now_ms, size_t limit,
                                          const DeliveryIdSet& skip) override {
    std::vector<DeliveryRecord> out;
    int64_t start;
    uint64_t epoch;
    {
      std::lock_guard lock(counts_mu_);
      auto it = watermark_.find(sink);
      start = it == watermark_.end() ? 0 : it->second;
      epoch = watermark_epoch_;
    }
    std::string lower = ScheduleBound(sink, start);
    // now_ms + 1 overflows for "everything" (INT64_MAX): then bound by the end of the sink's keys.
    std::string upper =
        now_ms == INT64_MAX ? std::string(sink) + '\x01' : ScheduleBound(sink, now_ms + 1);
    rocksdb::Slice lower_slice(lower), upper_slice(upper);
    rocksdb::ReadOptions ro;
    ro.iterate_lower_bound = &lower_slice;
    ro.iterate_upper_bound = &upper_slice;
    std::unique_ptr<rocksdb::Iterator> it(db_->db()->NewIterator(ro, schedule_cf_));
    bool first = true;
    // In-flight deliveries stay scheduled until they complete, so a scan walks past up to
    // `concurrency` of them: each costs a key parse into views and a set lookup, no allocation.
    for (it->Seek(lower_slice); it->Valid() && out.size() < limit; it->Next()) {
      std::string_view key_sink, id;
      int64_t due = 0;
      if (!ParseScheduleKey(it->key().ToStringView(), &key_sink, &due, &id)) continue;
      if (first) {
        std::lock_guard lock(counts_mu_);
        auto& w = watermark_[sink];
        // Nothing live of this sink below the first key found, unless a key was written since
        // this scan started (the iterator may not see it): then leave the watermark alone.
        if (epoch == watermark_epoch_ && due > w) w = due;
        first = false;
      }
      if (skip.find(id) != skip.end()) continue;
      // The schedule entry carries a copy of the delivery record, written in the same batch as
      // the record itself, so the iterator's snapshot has both or neither: no point read. An
      // entry without a value was written by an older release; read the record then.
      std::string value;
      if (it->value().empty()) {
        rocksdb::Status s = db_->db()->Get(rocksdb::ReadOptions(), deliveries_cf_,
                                           rocksdb::Slice(id.data(), id.size()), &value);
        if (s.IsNotFound()) continue;  // completed concurrently
        if (!s.ok()) return Unavailable("reading delivery: " + s.ToString());
      }
      auto d = DecodeDelivery(it->value().empty() ? std::string_view(value)
                                                  : it->value().ToStringView());
      if (d.ok() && d.value().id != id) d = Internal("schedule entry and record disagree");
      if (!d.ok()) {
        // Every scan passes it again (about ten a second): logged once per record.
        if (FirstSightOfCorrupt(id)) {
          log::Error("skipping corrupt delivery record", {{"id", std::string(id)}});
        }
        continue;
      }
      out.push_back(std::move(d).value());
    }
    if (!it->status().ok()) return Unavailable("scanning schedule: " + it->status().ToString());
    return out;
  }

  // True the first time `id` is reported corrupt (up to kMaxCorruptRemembered ids; past that,
  // every sighting is reported: a store that corrupt needs attention more than a quiet log).
  bool FirstSightOfCorrupt(std::string_view id) {
    std::lock_guard lock(corrupt_mu_);
    if (corrupt_seen_.size() >= kMaxCorruptRemembered) return true;
    return corrupt_seen_.emplace(id).second;
  }
  static constexpr size_t kMaxCorruptRemembered = 1024;
  std::mutex corrupt_mu_;
  std::set<std::string, std::less<>> corrupt_seen_;  // GUARDED_BY(corrupt_mu_)

  Status Complete(const DeliveryRecord& d) override {
    rocksdb::WriteBatch wb;
    wb.Delete(deliveries_cf_, d.id);
    wb.Delete(schedule_cf_, ScheduleKey(d.sink, d.due_ms, d.id));
    Status s = WriteQueue(wb);
    if (s.ok()) AdjustCounts(d.sink, -1, 0);
    return s;
  }

  Status CompleteAll(const std::vector<DeliveryRecord>& ds) override {
    if (ds.empty()) return Status::Ok();
    rocksdb::WriteBatch wb;
    for (const DeliveryRecord& d : ds) {
      wb.Delete(deliveries_cf_, d.id);
      wb.Delete(schedule_cf_, ScheduleKey(d.sink, d.due_ms, d.id));
    }
    Status s = WriteQueue(wb);
    if (s.ok()) {
      for (const DeliveryRecord& d : ds) AdjustCounts(d.sink, -1, 0);
    }
    return s;
  }

  Status Reschedule(const DeliveryRecord& d, int64_t next_due_ms) override {
    DeliveryRecord next = d;
    next.due_ms = next_due_ms;
    rocksdb::WriteBatch wb;
    const std::string record = EncodeDelivery(next);
    wb.Delete(schedule_cf_, ScheduleKey(d.sink, d.due_ms, d.id));
    wb.Put(schedule_cf_, ScheduleKey(d.sink, next_due_ms, d.id), record);
    wb.Put(deliveries_cf_, d.id, record);
    Status s = WriteQueue(wb);
    if (s.ok()) {
      std::lock_guard lock(counts_mu_);
      LowerWatermarkLocked(d.sink, next_due_ms);
    }
    return s;
  }

  Status DeadLetter(const DeliveryRecord& d) override {
    DeliveryRecord dead = d;
    dead.dead = true;
    dead.due_ms = clock_.NowMillis();
    rocksdb::WriteBatch wb;
    wb.Delete(schedule_cf_, ScheduleKey(d.sink, d.due_ms, d.id));
    wb.Put(deliveries_cf_, d.id, EncodeDelivery(dead));
    const std::string died = EncodeDeathTime(dead.due_ms);
    wb.Put(dead_cf_, d.id, died);
    Status s = WriteQueue(wb);
    if (s.ok()) AdjustCounts(d.sink, -1, +1);
    return s;
  }

  // Calls `fn` with each dead letter's id, in id order, until it returns false. A read error
  // ends a RocksDB scan just as its end does: it is returned, never taken for the end (a partial
  // list answered as the list).
  // `died_ms` is when it died, or -1 for a dead letter written before that was kept in the
  // index (read its record instead).
  // Starts after the id `after` when it is not empty.
  Status ForEachDeadId(const std::function<bool(std::string id, int64_t died_ms)>& fn,
                       const std::string& after = "") {
    std::unique_ptr<rocksdb::Iterator> it(db_->db()->NewIterator(rocksdb::ReadOptions(), dead_cf_));
    if (after.empty()) {
      it->SeekToFirst();
    } else {
      it->Seek(after);
      if (it->Valid() && it->key() == rocksdb::Slice(after)) it->Next();
    }
    for (; it->Valid(); it->Next()) {
      if (!fn(it->key().ToString(), DecodeDeathTime(it->value()))) break;
    }
    if (!it->status().ok()) return Unavailable("reading dead letters: " + it->status().ToString());
    return Status::Ok();
  }

  Result<std::vector<DeliveryRecord>> ListDead(size_t limit, const std::string& after) override {
    std::vector<DeliveryRecord> out;
    Status read = Status::Ok();
    Status scanned = ForEachDeadId(
        [&](std::string id, int64_t) {
          if (out.size() >= limit) return false;
          auto d = GetDelivery(id);
          if (!d.ok()) {
            read = d.status();
            return false;
          }
          if (d.value() && d.value()->dead) out.push_back(std::move(*d.value()));
          return true;
        },
        after);
    if (!read.ok()) return read;
    if (!scanned.ok()) return scanned;
    return out;
  }

  using DeliveryQueue::Drop;  // the overloads without a skipped list
  using DeliveryQueue::Replay;
  Result<size_t> Replay(const std::vector<std::string>& ids, bool all, int64_t now_ms,
                        std::vector<std::string>* skipped) override {
    std::vector<std::string> targets = ids;
    if (all) {
      targets.clear();
      Status scanned = ForEachDeadId([&targets](std::string id, int64_t) {
        targets.push_back(std::move(id));
        return true;
      });
      if (!scanned.ok()) return scanned;
    }
    size_t replayed = 0;
    for (const std::string& id : targets) {
      std::lock_guard dead_lock(dead_mu_);
      auto d = GetDelivery(id);
      if (!d.ok()) return d.status();
      if (!d.value() || !d.value()->dead) {
        if (skipped) skipped->push_back(id);
        continue;
      }
      DeliveryRecord r = std::move(*d.value());
      r.dead = false;
      r.attempts = 0;
      r.created_ms = now_ms;  // max_age counts from the replay
      r.due_ms = now_ms;
      r.last_error.clear();
      rocksdb::WriteBatch wb;
      const std::string record = EncodeDelivery(r);
      wb.Delete(dead_cf_, id);
      wb.Put(deliveries_cf_, id, record);
      wb.Put(schedule_cf_, ScheduleKey(r.sink, r.due_ms, id), record);
      AdjustCounts(r.sink, +1, -1);  // before the write: see CommitBatch
      if (Status s = WriteQueue(wb); !s.ok()) {
        AdjustCounts(r.sink, -1, +1);
        return s;
      }
      {
        std::lock_guard lock(counts_mu_);
        LowerWatermarkLocked(r.sink, now_ms);
      }
      ++replayed;
    }
    return replayed;
  }

  Result<size_t> Drop(const std::vector<std::string>& ids,
                      std::vector<std::string>* skipped) override {
    size_t dropped = 0;
    for (const std::string& id : ids) {
      std::lock_guard dead_lock(dead_mu_);
      auto d = GetDelivery(id);
      if (!d.ok()) return d.status();
      if (!d.value() || !d.value()->dead) {
        if (skipped) skipped->push_back(id);
        continue;
      }
      rocksdb::WriteBatch wb;
      wb.Delete(dead_cf_, id);
      wb.Delete(deliveries_cf_, id);
      if (Status s = WriteQueue(wb); !s.ok()) return s;
      AdjustCounts(d.value()->sink, 0, -1);
      ++dropped;
    }
    return dropped;
  }

  // Runs on the dispatcher's thread once a minute, so it reads only what it may remove: the
  // index is in id order, ids are ULIDs of the creation time, and a delivery dies after it was
  // created, so the scan ends at the first id made at or after the cutoff; the time of death
  // is the index value (only dead letters indexed before it was kept there are read). A wall
  // clock that ran ahead when ids were made only delays their purge by as much.
  Result<size_t> PurgeDead(int64_t cutoff_ms) override {
    std::vector<std::string> old;
    Status scanned = ForEachDeadId([&](std::string id, int64_t died_ms) {
      if (UlidMillis(id) >= cutoff_ms || old.size() >= kMaxPurgedPerCall) return false;
      if (died_ms < 0) {
        auto d = GetDelivery(id);
        if (!d.ok() || !d.value()) return true;
        died_ms = d.value()->due_ms;
      }
      if (died_ms < cutoff_ms) old.push_back(std::move(id));
      return true;
    });
    if (!scanned.ok()) return scanned;
    return Drop(old, nullptr);
  }

  Status PurgeEventsBefore(int64_t cutoff_ms) override {
    // Never an event a stored delivery (pending or dead) names. A delivery is made in the same
    // commit as its event, with the same clock reading, and keeps its id through retries, death
    // and replay; so no event older than the oldest delivery id is still named.
    {
      std::unique_ptr<rocksdb::Iterator> it(
          db_->db()->NewIterator(rocksdb::ReadOptions(), deliveries_cf_));
      it->SeekToFirst();
      if (!it->status().ok()) return Unavailable("scanning deliveries: " + it->status().ToString());
      if (it->Valid()) {
        const int64_t oldest = UlidMillis(it->key().ToString());
        if (oldest < 0) return Corruption("delivery key is not a ULID");
        cutoff_ms = std::min(cutoff_ms, oldest);
      }
    }
    std::string end = UlidLowerBound(cutoff_ms);
    if (Status room = RoomForWrite(end.size() + 64); !room.ok()) return room;
    rocksdb::WriteOptions wo;
    // Only here, and only because events_cf_ has no memtable insert hints (see Open).
    rocksdb::Status s = db_->db()->DeleteRange(wo, events_cf_, rocksdb::Slice(), end);
    if (!s.ok()) return Unavailable("purging old events: " + s.ToString());
    return Status::Ok();
  }

  QueueCounts Counts() const override {
    std::lock_guard lock(counts_mu_);
    return counts_;
  }

  Result<std::optional<DeliveryRecord>> GetDelivery(const std::string& id) override {
    std::string value;
    rocksdb::Status s = db_->db()->Get(rocksdb::ReadOptions(), deliveries_cf_, id, &value);
    if (s.IsNotFound()) return std::optional<DeliveryRecord>();
    if (!s.ok()) return Unavailable("reading delivery: " + s.ToString());
    auto d = DecodeDelivery(value);
    if (!d.ok()) return d.status();
    return std::optional<DeliveryRecord>(std::move(d).value());
  }

 private:
  // Queue updates are not fsync'd: losing one in a machine crash only repeats a delivery
  // (at-least-once), never loses one; the WAL still makes them survive a process crash.
  // Every write outside the group commit (queue updates, purges, installations) first checks
  // the same free-space floor as ingest: Debian's librocksdb aborts on an assertion when a write
  // follows one that failed with ENOSPC, so no write may be tried on a full disk. A refused
  // queue update leaves the delivery pending (it is delivered again: at least once).
  //
  // `floor` is min_free_bytes unless given. Installation records are a few hundred bytes, and one
  // that is refused can be a token pair Sentry has just issued (the old one is dead): losing it
  // means a re-installation. So they may use the lower half of the floor that refuses webhooks;
  // the other half still keeps every write away from ENOSPC.
  Status RoomForWrite(size_t bytes, std::optional<uint64_t> floor = std::nullopt) const {
    const std::optional<uint64_t> free_bytes =
        FreeBytesBelowFloor(bytes, floor.value_or(options_.min_free_bytes));
    if (!free_bytes) return Status::Ok();
    return Unavailable("storage nearly full: " + std::to_string(*free_bytes) + " bytes free");
  }

  // The free bytes of the store's filesystem when they are below `floor` + `bytes`; nullopt when
  // there is room (or the floor is off, or statvfs cannot tell: then try).
  std::optional<uint64_t> FreeBytesBelowFloor(size_t bytes, uint64_t floor) const {
    if (floor == 0) return std::nullopt;
    struct statvfs fs;
    if (statvfs(options_.path.c_str(), &fs) != 0) return std::nullopt;
    const uint64_t free_bytes = static_cast<uint64_t>(fs.f_bavail) * fs.f_frsize;
    if (free_bytes >= floor + bytes) return std::nullopt;
    return free_bytes;
  }

  Status WriteQueue(rocksdb::WriteBatch& wb) {
    if (Status room = RoomForWrite(wb.GetDataSize()); !room.ok()) return room;
    rocksdb::WriteOptions wo;
    wo.sync = false;
    rocksdb::Status s = db_->db()->Write(wo, &wb);
    if (!s.ok()) return Unavailable("queue write failed: " + s.ToString());
    return Status::Ok();
  }

  // Counts never go below zero (a repeated Complete/DeadLetter must not wrap them).
  void AdjustCounts(const std::string& sink, int pending, int dead) {
    auto add = [](uint64_t& v, int d) { v = d < 0 && v < static_cast<uint64_t>(-d) ? 0 : v + d; };
    std::lock_guard lock(counts_mu_);
    auto& c = counts_.sinks[sink];
    add(c.pending, pending);
    add(c.dead, dead);
    add(counts_.pending, pending);
    add(counts_.dead, dead);
  }

  // Called after a key of `sink` with `due_ms` became visible. Must follow the write: lowered
  // before it, a Due scan whose iterator predates the write could raise the watermark again
  // past the key and strand it. The epoch bump stops a scan already running from raising.
  // REQUIRES: counts_mu_ held.
  void LowerWatermarkLocked(const std::string& sink, int64_t due_ms) {
    ++watermark_epoch_;  // a Due scan running now may not see this key: it must not raise
    auto it = watermark_.find(sink);
    if (it != watermark_.end() && due_ms < it->second) it->second = due_ms;
  }

  // Counts pending and dead deliveries per sink (one scan at open).
  Status LoadCounts() {
    std::unique_ptr<rocksdb::Iterator> it(
        db_->db()->NewIterator(rocksdb::ReadOptions(), deliveries_cf_));
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      auto d = DecodeDelivery(it->value().ToStringView());
      if (!d.ok())
        return Corruption("delivery record " + it->key().ToString() + ": " + d.status().message());
      auto& c = counts_.sinks[d->sink];
      if (d->dead) {
        ++c.dead;
        ++counts_.dead;
      } else {
        ++c.pending;
        ++counts_.pending;
      }
    }
    if (!it->status().ok()) return Unavailable("scanning deliveries: " + it->status().ToString());
    return Status::Ok();
  }

  void WriterLoop() {
    std::vector<PendingAppend> batch;
    for (bool group_done = false;; group_done = true) {
      {
        std::unique_lock lock(mu_);
        if (group_done) {
          // The last group is done (its answers given): what is left has waited since now.
          waiting_since_.reset();
          if (!queue_.empty()) waiting_since_ = clock_.SteadyNow();
        }
        if (queue_.empty() && !closing_) {
          cv_.wait(lock, [this] { return closing_ || !queue_.empty(); });
          // Woken by the first append of an I/O thread's round of ready requests: let the round
          // finish so that one commit takes it (at 64 connections on one core, groups grew from
          // ~4 to ~45 webhooks).
          StepAsideAfterWakeup(lock);
        }
        if (queue_.empty() && closing_) return;
        size_t bytes = 0;
        while (!queue_.empty() && batch.size() < options_.max_batch_events &&
               bytes < options_.max_batch_bytes) {
          bytes += queue_.front().event.body.size();
          batch.push_back(std::move(queue_.front()));
          queue_.pop_front();
        }
      }
      CommitBatch(batch);
      batch.clear();
    }
  }

  void CommitBatch(std::vector<PendingAppend>& batch) {
    const int64_t now = clock_.NowMillis();
    const bool dedupe = options_.dedupe_window.count() > 0;
    std::vector<AppendResult> results(batch.size());
    std::unordered_map<std::string, std::string> in_batch;  // dedupe key -> id
    std::vector<DeliveryRecord> new_deliveries;
    rocksdb::WriteBatch wb;
    // While the store is failed nothing is answered 2xx, duplicates included: after a failed
    // sync the dedupe index may name an event that is not on disk (see Write).
    Status status = RecoverIfFailed();

    for (size_t i = 0; status.ok() && i < batch.size(); ++i) {
      StoredEvent& e = batch[i].event;
      std::string key;
      if (dedupe) {
        auto digest = crypto::Sha256(e.body);
        key.reserve(e.source.size() + 1 + digest.size());
        key.append(e.source).push_back('\0');
        key.append(reinterpret_cast<const char*>(digest.data()), digest.size());
        if (auto it = in_batch.find(key); it != in_batch.end()) {
          results[i] = {it->second, true};
          continue;
        }
        std::string value;
        rocksdb::Status s = db_->db()->Get(rocksdb::ReadOptions(), dedupe_cf_, key, &value);
        if (s.ok() && value.size() > 8 &&
            DecodeFixed64(value.data()) + options_.dedupe_window.count() >= now) {
          results[i] = {value.substr(8), true};
          continue;
        }
        if (!s.ok() && !s.IsNotFound()) {
          status = Unavailable("dedupe lookup failed: " + s.ToString());
          break;
        }
      }
      e.id = NewUlid(now);
      e.received_at_ms = e.received_at_ms ? e.received_at_ms : now;
      wb.Put(events_cf_, e.id, EncodeEvent(e));
      for (const NewDelivery& nd : batch[i].deliveries) {
        DeliveryRecord d;
        d.id = NewUlid(now);
        d.event_id = e.id;
        d.route = nd.route;
        d.sink = nd.sink;
        d.deferred = nd.deferred;
        d.counts_match = nd.deferred && nd.counts_match;
        d.created_ms = now;
        d.due_ms = now;
        const std::string record = EncodeDelivery(d);
        wb.Put(deliveries_cf_, d.id, record);
        wb.Put(schedule_cf_, ScheduleKey(d.sink, d.due_ms, d.id), record);
        new_deliveries.push_back(std::move(d));
      }
      if (dedupe) {
        std::string value(8, '\0');
        uint64_t ts = static_cast<uint64_t>(e.received_at_ms);
        std::memcpy(value.data(), &ts, 8);
        value += e.id;
        wb.Put(dedupe_cf_, key, value);
        in_batch.emplace(std::move(key), e.id);
      }
      results[i] = {e.id, false, batch[i].deliveries.size()};
    }

    if (status.ok() && wb.Count() > 0) status = CheckFreeSpace(wb.GetDataSize());
    if (status.ok() && wb.Count() > 0) status = CheckDiskBound(wb.GetDataSize());
    if (status.ok() && wb.Count() > 0) {
      // Count the new deliveries before they become visible: the dispatcher may deliver and
      // Complete() one the moment the write lands, and its decrement must find it counted.
      for (const DeliveryRecord& d : new_deliveries) AdjustCounts(d.sink, +1, 0);
      // Cache the events before the write for the same reason: a dispatcher scanning at that
      // moment reads them next (remembered after the write, most were read back from RocksDB
      // and decoded). Nothing can ask for them before the write: their ids are new and their
      // deliveries not yet visible. The events are already encoded into `wb`.
      auto cached = [&](size_t i) { return !results[i].duplicate && !batch[i].deliveries.empty(); };
      for (size_t i = 0; i < batch.size(); ++i) {
        if (cached(i)) RememberRecent(std::move(batch[i].event));
      }
      status = Write(wb);
      if (!status.ok() && !unsynced_) {
        for (const DeliveryRecord& d : new_deliveries) AdjustCounts(d.sink, -1, 0);
        std::lock_guard lock(recent_mu_);  // ids that will never be asked for
        for (size_t i = 0; i < batch.size(); ++i) {
          if (cached(i)) recent_.erase(results[i].id);  // its recent_order_ entry ages out
        }
      }
    }

    {
      std::lock_guard lock(health_mu_);
      health_ = status;
      if (status.ok()) {
        ++stats_.group_commits;
        for (const auto& r : results) stats_.events_written += !r.duplicate;
      } else {
        ++stats_.write_failures;
      }
    }
    if (status.ok()) {
      size_t events = 0;
      for (const auto& r : results) events += !r.duplicate;
      if (options_.on_group_commit) options_.on_group_commit(events);
    }
    if (status.ok() || unsynced_) {  // the deliveries are visible: they must not be stranded
      // Lowering the watermark must follow the write (see LowerWatermarkLocked).
      std::lock_guard lock(counts_mu_);
      for (const DeliveryRecord& d : new_deliveries) LowerWatermarkLocked(d.sink, d.due_ms);
    }
    log::ScopedBatch log_batch;  // the callbacks' log lines leave in one write(2)
    for (size_t i = 0; i < batch.size(); ++i) {
      if (status.ok()) {
        batch[i].done(std::move(results[i]));
      } else {
        batch[i].done(status);
      }
    }
  }

  // Keeps an event (with deliveries) being written in memory, so the dispatcher, which reads it
  // next, skips a RocksDB read and an LZ4 decode. Bounded by kRecentBytes, oldest out first.
  // Events are immutable, so a cached copy can never be stale.
  void RememberRecent(StoredEvent e) {
    const size_t bytes = e.body.size() + 256;
    std::lock_guard lock(recent_mu_);
    std::string id = e.id;
    auto shared = std::make_shared<const StoredEvent>(std::move(e));
    if (!recent_.emplace(id, std::move(shared)).second) return;
    recent_order_.emplace_back(std::move(id), bytes);
    recent_bytes_ += bytes;
    while (recent_bytes_ > kRecentBytes && !recent_order_.empty()) {
      recent_.erase(recent_order_.front().first);
      recent_bytes_ -= recent_order_.front().second;
      recent_order_.pop_front();
    }
  }

  // Fails while the filesystem has less than min_free_bytes (plus this batch) free. Checked per
  // group commit, so a filling disk is refused before RocksDB ever sees ENOSPC.
  Status CheckFreeSpace(size_t batch_bytes) {
    const std::optional<uint64_t> free_bytes =
        FreeBytesBelowFloor(batch_bytes, options_.min_free_bytes);
    if (!free_bytes) {
      if (low_space_) log::Info("storage has free space again", {{"path", options_.path}});
      low_space_ = false;
      return Status::Ok();
    }
    if (!low_space_) {
      log::Error("storage nearly full; refusing new webhooks until space returns",
                 {{"path", options_.path},
                  {"free_bytes", std::to_string(*free_bytes)},
                  {"min_free_bytes", std::to_string(options_.min_free_bytes)}});
    }
    low_space_ = true;
    return Unavailable("storage nearly full (" + std::to_string(*free_bytes) + " bytes free)");
  }

  // Fails while the store holds more than max_disk_bytes (plus this batch), so a backlog that
  // cannot drain (a receiver down for days) hits a bound the operator chose before it fills the
  // disk. The store's size is RocksDB's table files (`rocksdb.total-sst-files-size`, obsolete ones
  // not yet deleted included) plus its memtables (`rocksdb.cur-size-all-mem-tables`, which is
  // what the live WAL holds). Those are in-memory metadata, but walking them per group commit is
  // waste: they are read at most every kDiskBytesRefresh, and in between the bytes appended since
  // are added; while over the bound they are re-read on every check, so recovery (deliveries
  // completing, compaction) is seen at once.
  static constexpr std::chrono::milliseconds kDiskBytesRefresh{250};
  // The store's size as max_disk_bytes counts it. Only while the database is open.
  uint64_t StoreBytes() const {
    uint64_t sst = 0, mem = 0;
    db_->db()->GetAggregatedIntProperty("rocksdb.total-sst-files-size", &sst);
    db_->db()->GetAggregatedIntProperty("rocksdb.cur-size-all-mem-tables", &mem);
    return sst + mem;
  }
  Status CheckDiskBound(size_t batch_bytes) {
    if (options_.max_disk_bytes == 0) return Status::Ok();
    const auto now = clock_.SteadyNow();
    if (over_disk_bound_ || !disk_bytes_read_ || now - disk_bytes_read_at_ >= kDiskBytesRefresh) {
      disk_bytes_ = StoreBytes();
      disk_bytes_read_ = true;
      disk_bytes_read_at_ = now;
    }
    const uint64_t used = disk_bytes_;
    if (used + batch_bytes <= options_.max_disk_bytes) {
      refused_batch_bytes_.store(0, std::memory_order_relaxed);
      if (over_disk_bound_) {
        log::Info("storage is under max_disk_bytes again", {{"path", options_.path}});
      }
      over_disk_bound_ = false;
      disk_bytes_ += batch_bytes;  // counted until the next read of the properties
      return Status::Ok();
    }
    if (!over_disk_bound_) {
      log::Error("storage reached max_disk_bytes; refusing new webhooks until the backlog shrinks",
                 {{"path", options_.path},
                  {"bytes", std::to_string(used)},
                  {"max_disk_bytes", std::to_string(options_.max_disk_bytes)}});
    }
    over_disk_bound_ = true;
    refused_batch_bytes_.store(std::max<uint64_t>(batch_bytes, 1), std::memory_order_relaxed);
    return Unavailable("storage holds " + std::to_string(used) + " bytes, over max_disk_bytes");
  }

  // With storage.sync a group is written without a sync and then made durable by SyncWAL(),
  // rather than by a sync'd Write(). RocksDB holds its write queue for the whole fsync of a
  // sync'd write, and the dispatcher's queue updates waited behind it: in an end-to-end run 23 %
  // of them waited 1.3 ms on average, 1.9 s of the dispatcher's 6.8 s, in which no delivery
  // started. SyncWAL() lets them go on. What it costs: the group is visible before it is durable.
  // - Nothing is answered from it before the sync returns: the answers wait for it, and dedupe
  //   lookups run on this thread, after it.
  // - A delivery of it may start early. Should the machine then fail, the webhook was never
  //   acknowledged and its sender retries it: at least once, as always.
  // - A failed sync leaves the group in the memtables, perhaps not on disk (after a failed fsync
  //   the kernel may have dropped the dirty pages). The store then stays failed until RocksDB
  //   resumes and a flush has written the memtables out from memory (RecoverIfFailed).
  // Returns non-OK when the batch is not durable. unsynced_ then says whether it is visible.
  // Called only once RecoverIfFailed() has succeeded.
  Status Write(rocksdb::WriteBatch& wb) {
    const uint64_t errors_before = bg_errors_->count();
    rocksdb::Status s = db_->db()->Write(rocksdb::WriteOptions(), &wb);
    if (s.ok() && options_.sync) {
      s = db_->db()->SyncWAL();
      // A background error meanwhile may be a failed sync of this WAL by another thread, whose
      // error our sync no longer sees: not durable, as if our own sync had failed.
      if (s.ok() && bg_errors_->count() != errors_before) {
        s = rocksdb::Status::IOError(
            "a RocksDB background error during the group's write and sync");
      }
      if (!s.ok()) unsynced_ = true;
    }
    if (s.ok()) return Status::Ok();
    needs_resume_ = true;
    log::Error(unsynced_ ? "storage sync failed" : "storage write failed",
               {{"error", s.ToString()}});
    return Unavailable("storage write failed: " + s.ToString());
  }

  // After a failed write RocksDB stays read-only until resumed (e.g. once disk space returns).
  Status RecoverIfFailed() {
    if (!needs_resume_) return Status::Ok();
    rocksdb::Status rs = db_->db()->Resume();
    if (rs.ok() && unsynced_) {
      rocksdb::FlushOptions fo;
      fo.allow_write_stall = true;
      rs = db_->db()->Flush(fo, db_->Handles());
      if (rs.ok()) unsynced_ = false;
    }
    if (!rs.ok()) {
      if (rs.severity() >= rocksdb::Status::Severity::kFatalError &&
          !resume_refused_.exchange(true)) {
        log::Error(
            "storage cannot resume in this process (a fatal RocksDB error): it must be "
            "reopened",
            {{"error", rs.ToString()}});
      }
      return Unavailable("storage is not writable: " + rs.ToString());
    }
    log::Info("storage recovered after write failure");
    needs_resume_ = false;
    return Status::Ok();
  }

  const StoreOptions options_;
  Clock& clock_;
  // Shared with RocksDB (its listener); read by any thread.
  const std::shared_ptr<BackgroundErrors> bg_errors_ = std::make_shared<BackgroundErrors>();
  std::atomic<bool> resume_refused_{false};  // RecoverIfFailed met a fatal error
  // Held by Replay and Drop (an admin request, the dispatcher's purge of old dead letters) from
  // reading a dead letter to writing it: a replay between a purge's read and its write left a
  // pending delivery's schedule entry without its record (and its event purgeable).
  std::mutex dead_mu_;
  // Held shared by Accepting() (any thread) while it reads the database, exclusively by Close()
  // while it closes it.
  mutable std::shared_mutex close_mu_;
  // The size of the last batch CheckDiskBound refused, 0 once a batch passes: Accepting() stays
  // not ready while it would still not fit. Written by the writer thread, read by any.
  std::atomic<uint64_t> refused_batch_bytes_{0};
  rocksdb::Env* env_;                 // RocksDB's default when null; not owned
  DedupeExpiryFilter dedupe_filter_;  // must outlive db_
  std::unique_ptr<Database> db_;
  rocksdb::ColumnFamilyHandle* events_cf_ = nullptr;
  rocksdb::ColumnFamilyHandle* dedupe_cf_ = nullptr;
  rocksdb::ColumnFamilyHandle* deliveries_cf_ = nullptr;
  rocksdb::ColumnFamilyHandle* schedule_cf_ = nullptr;
  rocksdb::ColumnFamilyHandle* dead_cf_ = nullptr;
  std::optional<RocksKvTable> installations_;

  mutable std::mutex counts_mu_;
  QueueCounts counts_;                        // GUARDED_BY(counts_mu_)
  std::map<std::string, int64_t> watermark_;  // GUARDED_BY(counts_mu_)
  uint64_t watermark_epoch_ = 0;              // GUARDED_BY(counts_mu_)

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<PendingAppend> queue_;  // GUARDED_BY(mu_)
  // For WriterAlive, GUARDED_BY(mu_): since when appends have waited for the writer to finish a
  // group (the first append while it was idle, or the end of its last group when appends were
  // left); empty while it has nothing to do.
  std::optional<std::chrono::steady_clock::time_point> waiting_since_;
  bool closing_ = false;             // GUARDED_BY(mu_)
  std::thread writer_;
  bool needs_resume_ = false;  // writer thread only
  bool unsynced_ = false;      // writer thread only: a failed sync left writes in the memtables
  bool low_space_ = false;     // writer thread only
  // CheckDiskBound's cache; writer thread only.
  bool over_disk_bound_ = false;
  bool disk_bytes_read_ = false;
  uint64_t disk_bytes_ = 0;
  std::chrono::steady_clock::time_point disk_bytes_read_at_;

  static constexpr size_t kRecentBytes = 8u << 20;
  std::mutex recent_mu_;
  std::unordered_map<std::string, std::shared_ptr<const StoredEvent>> recent_;  // GUARDED_BY
  std::deque<std::pair<std::string, size_t>> recent_order_;                     // GUARDED_BY
  size_t recent_bytes_ = 0;                                                     // GUARDED_BY

  mutable std::mutex health_mu_;
  Status health_;     // GUARDED_BY(health_mu_)
  StoreStats stats_;  // GUARDED_BY(health_mu_)
};

}  // namespace

Result<std::unique_ptr<Store>> OpenStore(const StoreOptions& options, Clock& clock) {
  return OpenStoreWithEnv(options, clock, nullptr);
}

Result<std::unique_ptr<Store>> OpenStoreWithEnv(const StoreOptions& options, Clock& clock,
                                                rocksdb::Env* env) {
  auto store = std::make_unique<RocksDbStore>(options, clock, env);
  Status s = store->Open();
  if (!s.ok()) return s;
  return std::unique_ptr<Store>(std::move(store));
}

}  // namespace switchyard::storage
