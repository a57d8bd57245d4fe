// RocksDB implementation of EventStore.
//
// Layout (column families):
//   events: <ULID id>                         -> EncodeEvent(event)
//   dedupe: <source> 0x00 <sha256(body)>      -> fixed64le(received_at_ms) <ULID id>
// The dedupe entry and the event are written in one WriteBatch, so either both exist or neither.
// Expired dedupe entries are ignored on lookup and dropped by a compaction filter.
//
// Threads: Append() may be called from any thread; it only enqueues. One writer thread owns all
// writes: it drains the queue into one WriteBatch (group commit), writes it with the configured
// sync, then runs the callbacks. Dedupe checks happen on the writer thread too, so two identical
// bodies in flight at once can never both be stored.
#include <rocksdb/compaction_filter.h>
#include <rocksdb/db.h>
#include <rocksdb/filter_policy.h>
#include <rocksdb/options.h>
#include <rocksdb/table.h>
#include <rocksdb/write_batch.h>

#include <sys/statvfs.h>

#include <condition_variable>
#include <cstring>
#include <deque>
#include <filesystem>
#include <mutex>
#include <thread>
#include <unordered_map>

#include "common/crypto.h"
#include "common/ids.h"
#include "common/log.h"
#include "storage/event_store.h"
#include "storage/rocksdb_common.h"

namespace switchyard::storage {
namespace {

int64_t DecodeFixed64(const char* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return static_cast<int64_t>(v);
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

struct PendingAppend {
  StoredEvent event;
  std::function<void(Result<AppendResult>)> done;
};

class RocksDbEventStore final : public EventStore {
 public:
  RocksDbEventStore(StoreOptions options, Clock& clock)
      : options_(std::move(options)), clock_(clock), dedupe_filter_(clock, options_.dedupe_window) {}

  ~RocksDbEventStore() override { Close(); }

  Status Open() {
    rocksdb::ColumnFamilyOptions dedupe_opts = BaseColumnFamilyOptions();
    dedupe_opts.compaction_filter = &dedupe_filter_;
    // Event bodies are LZ4-compressed in the record already; compressing SSTs again costs CPU
    // on every flush for little gain. Only the bottommost level (cold data) is compressed.
    rocksdb::ColumnFamilyOptions events_opts = BaseColumnFamilyOptions();
    events_opts.compression = rocksdb::kNoCompression;
    events_opts.bottommost_compression = rocksdb::kLZ4Compression;
    auto result = OpenDatabase(options_.path, {{kEventsCf, events_opts}, {kDedupeCf, dedupe_opts}});
    if (!result.ok()) return result.status();
    db_ = std::move(result.value());
    events_cf_ = db_->Handle(kEventsCf);
    dedupe_cf_ = db_->Handle(kDedupeCf);
    writer_ = std::thread([this] { WriterLoop(); });
    return Status::Ok();
  }

  void Append(StoredEvent event, std::function<void(Result<AppendResult>)> done) override {
    {
      std::lock_guard lock(mu_);
      if (!closing_ && queue_.size() < options_.max_pending_appends) {
        queue_.push_back({std::move(event), std::move(done)});
        cv_.notify_one();
        return;
      }
    }
    done(Unavailable(closing_ ? "storage is closing" : "storage write queue is full"));
  }

  Result<std::optional<StoredEvent>> Get(const std::string& id) override {
    std::string value;
    rocksdb::Status s = db_->db()->Get(rocksdb::ReadOptions(), events_cf_, id, &value);
    if (s.IsNotFound()) return std::optional<StoredEvent>();
    if (!s.ok()) return Unavailable("reading event: " + s.ToString());
    auto decoded = DecodeEvent(value);
    if (!decoded.ok()) return decoded.status();
    return std::optional<StoredEvent>(std::move(decoded).value());
  }

  Status Health() const override {
    std::lock_guard lock(health_mu_);
    return health_;
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
    if (db_) db_->Close();
  }

 private:
  void WriterLoop() {
    std::vector<PendingAppend> batch;
    for (;;) {
      {
        std::unique_lock lock(mu_);
        cv_.wait(lock, [this] { return closing_ || !queue_.empty(); });
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
    rocksdb::WriteBatch wb;
    Status lookup_error;

    for (size_t i = 0; i < batch.size(); ++i) {
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
          lookup_error = Unavailable("dedupe lookup failed: " + s.ToString());
          break;
        }
      }
      e.id = NewUlid(now);
      e.received_at_ms = e.received_at_ms ? e.received_at_ms : now;
      wb.Put(events_cf_, e.id, EncodeEvent(e));
      if (dedupe) {
        std::string value(8, '\0');
        uint64_t ts = static_cast<uint64_t>(e.received_at_ms);
        std::memcpy(value.data(), &ts, 8);
        value += e.id;
        wb.Put(dedupe_cf_, key, value);
        in_batch.emplace(std::move(key), e.id);
      }
      results[i] = {e.id, false};
    }

    Status status = lookup_error;
    if (status.ok() && wb.Count() > 0) status = CheckFreeSpace(wb.GetDataSize());
    if (status.ok() && wb.Count() > 0) status = Write(wb);

    {
      std::lock_guard lock(health_mu_);
      health_ = status;
      if (status.ok()) {
        ++stats_.group_commits;
        stats_.events_written += wb.Count();
      } else {
        ++stats_.write_failures;
      }
    }
    if (status.ok() && options_.on_group_commit) {
      options_.on_group_commit(wb.Count() / (dedupe ? 2 : 1));
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

  // Fails while the filesystem has less than min_free_bytes (plus this batch) free. Checked per
  // group commit, so a filling disk is refused before RocksDB ever sees ENOSPC.
  Status CheckFreeSpace(size_t batch_bytes) {
    if (options_.min_free_bytes == 0) return Status::Ok();
    struct statvfs fs;
    if (statvfs(options_.path.c_str(), &fs) != 0) return Status::Ok();  // cannot tell; try
    uint64_t free_bytes = static_cast<uint64_t>(fs.f_bavail) * fs.f_frsize;
    if (free_bytes >= options_.min_free_bytes + batch_bytes) {
      if (low_space_) log::Info("storage has free space again", {{"path", options_.path}});
      low_space_ = false;
      return Status::Ok();
    }
    if (!low_space_) {
      log::Error("storage nearly full; refusing new webhooks until space returns",
                 {{"path", options_.path},
                  {"free_bytes", std::to_string(free_bytes)},
                  {"min_free_bytes", std::to_string(options_.min_free_bytes)}});
    }
    low_space_ = true;
    return Unavailable("storage nearly full (" + std::to_string(free_bytes) + " bytes free)");
  }

  Status Write(rocksdb::WriteBatch& wb) {
    if (needs_resume_) {
      // After a failed write RocksDB stays read-only until resumed (e.g. once disk space returns).
      rocksdb::Status rs = db_->db()->Resume();
      if (!rs.ok()) return Unavailable("storage is not writable: " + rs.ToString());
      log::Info("storage recovered after write failure");
      needs_resume_ = false;
    }
    rocksdb::WriteOptions wo;
    wo.sync = options_.sync;
    rocksdb::Status s = db_->db()->Write(wo, &wb);
    if (s.ok()) return Status::Ok();
    needs_resume_ = true;
    log::Error("storage write failed", {{"error", s.ToString()}});
    return Unavailable("storage write failed: " + s.ToString());
  }

  const StoreOptions options_;
  Clock& clock_;
  DedupeExpiryFilter dedupe_filter_;  // must outlive db_
  std::unique_ptr<Database> db_;
  rocksdb::ColumnFamilyHandle* events_cf_ = nullptr;
  rocksdb::ColumnFamilyHandle* dedupe_cf_ = nullptr;

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<PendingAppend> queue_;  // GUARDED_BY(mu_)
  bool closing_ = false;             // GUARDED_BY(mu_)
  std::thread writer_;
  bool needs_resume_ = false;  // writer thread only
  bool low_space_ = false;     // writer thread only

  mutable std::mutex health_mu_;
  Status health_;     // GUARDED_BY(health_mu_)
  StoreStats stats_;  // GUARDED_BY(health_mu_)
};

}  // namespace

Result<std::unique_ptr<EventStore>> OpenEventStore(const StoreOptions& options, Clock& clock) {
  auto store = std::make_unique<RocksDbEventStore>(options, clock);
  Status s = store->Open();
  if (!s.ok()) return s;
  return std::unique_ptr<EventStore>(std::move(store));
}

}  // namespace switchyard::storage
