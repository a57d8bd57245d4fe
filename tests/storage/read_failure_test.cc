// Scans that meet a read error (a bad sector, a corrupted table file) must say so. A RocksDB
// iterator that fails just stops being Valid(), like one at its end: the dead-letter scans used
// to answer such a partial list as the whole one (`dlq list` printing "no dead letters").
#include <gtest/gtest.h>
#include <rocksdb/env.h>
#include <rocksdb/file_system.h>

#include <atomic>
#include <future>
#include <memory>
#include <string>

#include "common/clock.h"
#include "storage/event_store.h"
#include "storage/rocksdb_common.h"
#include "support/temp_dir.h"

namespace switchyard::storage {
namespace {

// Table files (*.sst) whose reads fail with an I/O error while `fail_reads` is set.
class FailingReadsFs : public rocksdb::FileSystemWrapper {
 public:
  FailingReadsFs() : FileSystemWrapper(rocksdb::FileSystem::Default()) {}
  const char* Name() const override { return "FailingReadsFs"; }

  std::atomic<bool> fail_reads{false};

  rocksdb::IOStatus NewRandomAccessFile(const std::string& name,
                                        const rocksdb::FileOptions& options,
                                        std::unique_ptr<rocksdb::FSRandomAccessFile>* result,
                                        rocksdb::IODebugContext* dbg) override {
    rocksdb::IOStatus s = target()->NewRandomAccessFile(name, options, result, dbg);
    if (s.ok() && name.ends_with(".sst")) {
      *result = std::make_unique<File>(std::move(*result), this);
    }
    return s;
  }

 private:
  class File : public rocksdb::FSRandomAccessFileOwnerWrapper {
   public:
    File(std::unique_ptr<rocksdb::FSRandomAccessFile> f, FailingReadsFs* fs)
        : FSRandomAccessFileOwnerWrapper(std::move(f)), fs_(fs) {}
    rocksdb::IOStatus Read(uint64_t offset, size_t n, const rocksdb::IOOptions& options,
                           rocksdb::Slice* result, char* scratch,
                           rocksdb::IODebugContext* dbg) const override {
      if (fs_->fail_reads) return rocksdb::IOStatus::IOError("injected read error");
      return target()->Read(offset, n, options, result, scratch, dbg);
    }
    rocksdb::IOStatus MultiRead(rocksdb::FSReadRequest* reqs, size_t num_reqs,
                                const rocksdb::IOOptions& options,
                                rocksdb::IODebugContext* dbg) override {
      if (fs_->fail_reads) return rocksdb::IOStatus::IOError("injected read error");
      return target()->MultiRead(reqs, num_reqs, options, dbg);
    }

   private:
    FailingReadsFs* fs_;
  };
};

class ReadFailureTest : public ::testing::Test {
 protected:
  ReadFailureTest()
      : fs_(std::make_shared<FailingReadsFs>()), env_(rocksdb::NewCompositeEnv(fs_)) {}
  void TearDown() override {
    fs_->fail_reads = false;
    if (store_) store_->Close();
  }

  void Open() {
    StoreOptions o;
    o.path = dir_.path() + "/store";
    o.sync = false;
    o.min_free_bytes = 0;
    o.dedupe_window = std::chrono::milliseconds(0);
    auto s = OpenStoreWithEnv(o, clock_, env_.get());
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    store_ = std::move(s).value();
  }

  // Three dead letters, flushed into table files by a close and reopen.
  void ThreeDeadLettersOnDisk() {
    Open();
    for (int i = 0; i < 3; ++i) {
      StoredEvent e;
      e.source = "sentry";
      e.resource = "issue";
      e.action = "created";
      e.body = "{\"n\":" + std::to_string(i) + "}";
      std::promise<Result<AppendResult>> p;
      store_->Append(std::move(e), {{"route", "sink", false}},
                     [&p](Result<AppendResult> r) { p.set_value(std::move(r)); });
      ASSERT_TRUE(p.get_future().get().ok());
    }
    auto due = store_->Due("sink", clock_.NowMillis(), 10, {});
    ASSERT_TRUE(due.ok());
    ASSERT_EQ(due->size(), 3u);
    for (const DeliveryRecord& d : *due) ASSERT_TRUE(store_->DeadLetter(d).ok());
    store_->Close();
    store_.reset();
    Open();
  }

  switchyard::testing::TempDir dir_;
  FakeClock clock_;
  std::shared_ptr<FailingReadsFs> fs_;
  std::unique_ptr<rocksdb::Env> env_;
  std::unique_ptr<Store> store_;
};

TEST_F(ReadFailureTest, DeadLetterScansThatMeetAReadErrorFailInsteadOfAnsweringPartly) {
  ThreeDeadLettersOnDisk();
  fs_->fail_reads = true;
  auto listed = store_->ListDead(10);
  EXPECT_FALSE(listed.ok()) << "listed " << listed.value().size() << " of 3 as if that were all";
  auto replayed = store_->Replay({}, /*all=*/true, clock_.NowMillis());
  EXPECT_FALSE(replayed.ok()) << "replayed " << replayed.value() << " of 3 as if that were all";
  auto purged = store_->PurgeDead(clock_.NowMillis() + 1);
  EXPECT_FALSE(purged.ok());
  fs_->fail_reads = false;
  listed = store_->ListDead(10);
  ASSERT_TRUE(listed.ok()) << listed.status().ToString();
  EXPECT_EQ(listed->size(), 3u) << "nothing was lost";
}

}  // namespace
}  // namespace switchyard::storage
