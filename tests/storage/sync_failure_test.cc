// storage.sync: true against a power loss and a failing fsync. The store runs on a RocksDB
// file system that remembers how much of each WAL file was synced; a "power loss" closes the
// store without a successful sync and cuts every WAL file back to its synced length.
#include <gtest/gtest.h>
#include <rocksdb/env.h>
#include <rocksdb/file_system.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/clock.h"
#include "storage/event_store.h"
#include "storage/rocksdb_common.h"
#include "support/temp_dir.h"

namespace switchyard::storage {
namespace {

// WAL files (*.log) as a disk with a volatile cache: appended bytes count as on disk only after
// a successful Sync/Fsync. While `fail_syncs` is set, those fail with an I/O error. Thread-safe.
class WalSyncTrackingFs : public rocksdb::FileSystemWrapper {
 public:
  WalSyncTrackingFs() : FileSystemWrapper(rocksdb::FileSystem::Default()) {}
  const char* Name() const override { return "WalSyncTrackingFs"; }

  rocksdb::IOStatus NewWritableFile(const std::string& fname, const rocksdb::FileOptions& opts,
                                    std::unique_ptr<rocksdb::FSWritableFile>* result,
                                    rocksdb::IODebugContext* dbg) override {
    rocksdb::IOStatus s = target()->NewWritableFile(fname, opts, result, dbg);
    if (s.ok() && fname.ends_with(".log")) {
      {
        std::lock_guard lock(mu_);
        files_[fname] = {};
      }
      *result = std::make_unique<WalFile>(std::move(*result), this, fname);
    }
    return s;
  }

  // The power loss: every WAL file written through this file system loses what was not synced.
  void CutWalsToSyncedLength() {
    std::lock_guard lock(mu_);
    for (const auto& [name, f] : files_) {
      std::error_code ec;
      if (std::filesystem::exists(name, ec)) std::filesystem::resize_file(name, f.synced, ec);
      EXPECT_FALSE(ec) << name << ": " << ec.message();
    }
  }

  int wal_syncs() const { return wal_syncs_.load(); }
  std::atomic<bool> fail_syncs{false};
  // Runs at the start of every WAL sync, on the syncing thread. Set before the store opens.
  std::function<void()> before_wal_sync;

 private:
  struct Lengths {
    uint64_t written = 0;
    uint64_t synced = 0;
  };

  class WalFile : public rocksdb::FSWritableFileOwnerWrapper {
   public:
    WalFile(std::unique_ptr<rocksdb::FSWritableFile>&& f, WalSyncTrackingFs* fs, std::string name)
        : FSWritableFileOwnerWrapper(std::move(f)), fs_(fs), name_(std::move(name)) {}

    rocksdb::IOStatus Append(const rocksdb::Slice& data, const rocksdb::IOOptions& o,
                             rocksdb::IODebugContext* dbg) override {
      rocksdb::IOStatus s = target()->Append(data, o, dbg);
      if (s.ok()) fs_->Written(name_, data.size());
      return s;
    }
    rocksdb::IOStatus Append(const rocksdb::Slice& data, const rocksdb::IOOptions& o,
                             const rocksdb::DataVerificationInfo& v,
                             rocksdb::IODebugContext* dbg) override {
      rocksdb::IOStatus s = target()->Append(data, o, v, dbg);
      if (s.ok()) fs_->Written(name_, data.size());
      return s;
    }
    rocksdb::IOStatus Sync(const rocksdb::IOOptions& o, rocksdb::IODebugContext* dbg) override {
      return SyncWith(o, dbg, false);
    }
    rocksdb::IOStatus Fsync(const rocksdb::IOOptions& o, rocksdb::IODebugContext* dbg) override {
      return SyncWith(o, dbg, true);
    }

   private:
    rocksdb::IOStatus SyncWith(const rocksdb::IOOptions& o, rocksdb::IODebugContext* dbg,
                               bool fsync) {
      if (fs_->before_wal_sync) fs_->before_wal_sync();
      if (fs_->fail_syncs) return rocksdb::IOStatus::IOError("injected fsync failure");
      const uint64_t upto = fs_->WrittenSoFar(name_);  // bytes appended later are not covered
      rocksdb::IOStatus s = fsync ? target()->Fsync(o, dbg) : target()->Sync(o, dbg);
      if (s.ok()) fs_->Synced(name_, upto);
      return s;
    }

    WalSyncTrackingFs* fs_;
    std::string name_;
  };

  void Written(const std::string& name, uint64_t n) {
    std::lock_guard lock(mu_);
    files_[name].written += n;
  }
  uint64_t WrittenSoFar(const std::string& name) {
    std::lock_guard lock(mu_);
    return files_[name].written;
  }
  void Synced(const std::string& name, uint64_t upto) {
    std::lock_guard lock(mu_);
    auto& f = files_[name];
    f.synced = std::max(f.synced, upto);
    ++wal_syncs_;
  }

  std::mutex mu_;
  std::map<std::string, Lengths> files_;  // GUARDED_BY(mu_)
  std::atomic<int> wal_syncs_{0};
};

StoredEvent MakeEvent(std::string body) {
  StoredEvent e;
  e.source = "sentry";
  e.resource = "issue";
  e.action = "created";
  e.body = std::move(body);
  return e;
}

class SyncFailureTest : public ::testing::Test {
 protected:
  SyncFailureTest()
      : fs_(std::make_shared<WalSyncTrackingFs>()), env_(rocksdb::NewCompositeEnv(fs_)) {
    fs_->before_wal_sync = [this] {
      if (watching_) answered_before_a_sync_ = answered_before_a_sync_ || answered_;
      std::unique_lock lock(hang_mu_);
      if (hang_) {
        syncs_hanging_ = true;
        hang_cv_.notify_all();
        hang_cv_.wait(lock, [this] { return !hang_; });
      }
    };
  }

  void SetUp() override { Open(); }
  void TearDown() override {
    if (store_) store_->Close();
  }

  void Open() {
    StoreOptions o;
    o.path = dir_.path() + "/store";
    o.sync = true;
    o.dedupe_window = std::chrono::hours(1);
    o.min_free_bytes = 0;
    auto s = OpenStoreWithEnv(o, clock_, env_.get());
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    store_ = std::move(s).value();
  }

  // Closes the store the way a power loss would leave its files, then opens it again.
  void PowerLossAndRestart() {
    fs_->fail_syncs = true;  // Close() syncs the WAL: that sync must not count
    store_->Close();
    store_.reset();
    fs_->CutWalsToSyncedLength();
    fs_->fail_syncs = false;
    Open();
  }

  Result<AppendResult> Append(const std::string& body) {
    std::promise<Result<AppendResult>> p;
    auto f = p.get_future();
    answered_ = false;
    store_->Append(MakeEvent(body), {{"route", "sink", false}}, [this, &p](Result<AppendResult> r) {
      answered_ = true;
      p.set_value(std::move(r));
    });
    return f.get();
  }

  bool Stored(const std::string& id) {
    auto e = store_->Get(id);
    return e.ok() && e.value() != nullptr;
  }

  switchyard::testing::TempDir dir_;
  FakeClock clock_;
  std::shared_ptr<WalSyncTrackingFs> fs_;
  std::unique_ptr<rocksdb::Env> env_;
  std::unique_ptr<Store> store_;
  std::atomic<bool> watching_{false};  // record answers given when a WAL sync starts
  std::atomic<bool> answered_{false};
  std::atomic<bool> answered_before_a_sync_{false};
  // While hang_, a WAL sync blocks (a hung disk); syncs_hanging_ says one has started to.
  std::mutex hang_mu_;
  std::condition_variable hang_cv_;
  bool hang_ = false;           // GUARDED_BY(hang_mu_)
  bool syncs_hanging_ = false;  // GUARDED_BY(hang_mu_)
};

// A group commit stuck in its sync (a hung disk) is reported wedged once appends have waited the
// limit, and alive again once the sync returns; an idle writer is alive however long it idles.
TEST_F(SyncFailureTest, TheWriterIsWedgedWhileASyncHangsAndAliveWhenItReturns) {
  using std::chrono::milliseconds;
  EXPECT_TRUE(store_->WriterAlive(milliseconds(1000)));
  clock_.Advance(milliseconds(5000));
  EXPECT_TRUE(store_->WriterAlive(milliseconds(1000))) << "idle is not wedged";

  {
    std::lock_guard lock(hang_mu_);
    hang_ = true;
  }
  std::promise<Result<AppendResult>> answer;
  store_->Append(MakeEvent("stuck"), {{"route", "sink", false}},
                 [&answer](Result<AppendResult> r) { answer.set_value(std::move(r)); });
  {
    std::unique_lock lock(hang_mu_);
    hang_cv_.wait(lock, [this] { return syncs_hanging_; });
  }
  EXPECT_TRUE(store_->WriterAlive(milliseconds(1000)));  // the first sample of the stall
  clock_.Advance(milliseconds(999));
  EXPECT_TRUE(store_->WriterAlive(milliseconds(1000)));
  clock_.Advance(milliseconds(2));
  EXPECT_FALSE(store_->WriterAlive(milliseconds(1000)));

  {
    std::lock_guard lock(hang_mu_);
    hang_ = false;
  }
  hang_cv_.notify_all();
  auto r = answer.get_future().get();
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  // The answer runs inside the group; the writer counts the group done just after it.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!store_->WriterAlive(milliseconds(1000)) && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::yield();
  }
  EXPECT_TRUE(store_->WriterAlive(milliseconds(1000)));
}

TEST_F(SyncFailureTest, AnAcknowledgedEventSurvivesAPowerLoss) {
  const int syncs_before = fs_->wal_syncs();
  watching_ = true;
  auto r = Append(R"({"n":1})");
  watching_ = false;
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_GT(fs_->wal_syncs(), syncs_before) << "acknowledged before any WAL sync";
  EXPECT_FALSE(answered_before_a_sync_) << "answered before the WAL sync that covers the event";

  PowerLossAndRestart();
  EXPECT_TRUE(Stored(r->id)) << "acknowledged event lost";
  auto due = store_->Due("sink", clock_.NowMillis() + 1, 10, {});
  ASSERT_TRUE(due.ok());
  ASSERT_EQ(due->size(), 1u);
  EXPECT_EQ((*due)[0].event_id, r->id);
}

// A failed sync leaves the event readable in RocksDB's memtables but not on disk: its retry must
// not be called a duplicate of it. RocksDB 7.8 stops all writes after a failed WAL sync and does
// not resume, so the store answers 503 until it is opened again.
TEST_F(SyncFailureTest, AfterAFailedSyncNothingIsAcknowledgedThatAPowerLossWouldTake) {
  const std::string body = R"({"n":2})";
  fs_->fail_syncs = true;
  auto failed = Append(body);
  ASSERT_FALSE(failed.ok());
  EXPECT_EQ(failed.status().code(), StatusCode::kUnavailable);

  // RocksDB counts the failed sync fatal: the store says so at once (readiness, and the daemon
  // exits 2 for its service manager to reopen it), rather than answering 503 for ever.
  EXPECT_FALSE(store_->Failed().ok());
  EXPECT_FALSE(store_->Accepting().ok()) << "ready while no webhook can be stored";
  EXPECT_NE(store_->Failed().message().find("reopened"), std::string::npos)
      << store_->Failed().ToString();

  fs_->fail_syncs = false;
  auto retry = Append(body);  // Sentry retries with the same body
  EXPECT_FALSE(retry.ok()) << "answered " << (retry.ok() && retry->duplicate ? "duplicate" : "new")
                           << " after a failed sync";

  PowerLossAndRestart();
  EXPECT_TRUE(store_->Failed().ok()) << "reopened";
  EXPECT_TRUE(store_->Accepting().ok());
  auto again = Append(body);  // after a restart the store takes webhooks again
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_FALSE(again->duplicate) << "the unsynced original should not have survived";
  PowerLossAndRestart();
  EXPECT_TRUE(Stored(again->id)) << "acknowledged event lost";
}

}  // namespace
}  // namespace switchyard::storage
