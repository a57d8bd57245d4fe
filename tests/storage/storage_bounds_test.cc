// The store's guards against its disk: the max_disk_bytes bound on the store's size, and the
// refusal to open (and silently reset) a store that lost its CURRENT file. Real RocksDB in a temp
// dir; the end-to-end side (503 + Retry-After, exit codes) is in tests/e2e/storage_faults_test.cc.
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <future>
#include <random>
#include <string>

#include "common/clock.h"
#include "storage/event_store.h"
#include "support/temp_dir.h"

namespace switchyard::storage {
namespace {

// Incompressible, so the stored size follows the body size (bodies are LZ4-compressed).
std::string RandomBody(std::mt19937_64& rng, size_t size) {
  std::string s = "{\"pad\":\"";
  std::uniform_int_distribution<int> letter('a', 'z');
  while (s.size() < size - 2) s.push_back(static_cast<char>(letter(rng)));
  return s + "\"}";
}

class StorageBoundsTest : public ::testing::Test {
 protected:
  StoreOptions Options(uint64_t max_disk_bytes) const {
    StoreOptions o;
    o.path = dir_.path() + "/store";
    o.sync = false;
    o.min_free_bytes = 0;
    o.max_disk_bytes = max_disk_bytes;
    return o;
  }

  static Result<AppendResult> AppendSync(Store& store, std::string body) {
    StoredEvent e;
    e.source = "sentry";
    e.resource = "issue";
    e.action = "created";
    e.body = std::move(body);
    std::promise<Result<AppendResult>> p;
    auto f = p.get_future();
    store.Append(std::move(e), {{"route", "sink", false}},
                 [&p](Result<AppendResult> r) { p.set_value(std::move(r)); });
    return f.get();
  }

  switchyard::testing::TempDir dir_;
  FakeClock clock_;
  std::mt19937_64 rng_{42};
};

TEST_F(StorageBoundsTest, MaxDiskBytesRefusesAppendsPastTheBoundAndRaisingItAcceptsAgain) {
  constexpr uint64_t kBound = 1 << 20;
  constexpr size_t kBody = 32 << 10;
  std::vector<std::string> ids;
  {
    auto opened = OpenStore(Options(kBound), clock_);
    ASSERT_TRUE(opened.ok()) << opened.status().ToString();
    auto& store = *opened.value();
    Status refused;
    for (int i = 0; i < 200; ++i) {
      auto r = AppendSync(store, RandomBody(rng_, kBody));
      if (!r.ok()) {
        refused = r.status();
        break;
      }
      ids.push_back(r->id);
    }
    ASSERT_FALSE(refused.ok()) << "never refused after " << ids.size() << " appends";
    EXPECT_EQ(refused.code(), StatusCode::kUnavailable);
    EXPECT_NE(refused.message().find("max_disk_bytes"), std::string::npos) << refused.message();
    // Close to the bound, not far below or above it.
    EXPECT_GE(ids.size() * kBody, kBound / 2);
    EXPECT_LE(ids.size() * kBody, kBound);
    // Refused, and still refused: nothing was written meanwhile.
    EXPECT_FALSE(AppendSync(store, RandomBody(rng_, kBody)).ok());
    // Readiness says so too.
    const Status accepting = store.Accepting();
    EXPECT_EQ(accepting.code(), StatusCode::kUnavailable);
    EXPECT_NE(accepting.message().find("max_disk_bytes"), std::string::npos) << accepting.message();
    store.Close();
    EXPECT_TRUE(store.Accepting().ok());  // after Close: nothing to measure, and no crash
  }
  // The operator raises the bound: accepted again, and everything stored before is intact.
  auto opened = OpenStore(Options(8 * kBound), clock_);
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  auto& store = *opened.value();
  EXPECT_TRUE(store.Accepting().ok());
  EXPECT_TRUE(AppendSync(store, RandomBody(rng_, kBody)).ok());
  for (const std::string& id : ids) {
    auto e = store.Get(id);
    ASSERT_TRUE(e.ok() && e.value() != nullptr) << id;
    EXPECT_EQ(e.value()->body.size(), kBody);
  }
  EXPECT_EQ(store.Counts().pending, ids.size() + 1);
}

TEST_F(StorageBoundsTest, MaxDiskBytesZeroIsUnlimited) {
  auto opened = OpenStore(Options(0), clock_);
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  for (int i = 0; i < 64; ++i) {
    auto r = AppendSync(*opened.value(), RandomBody(rng_, 32 << 10));
    ASSERT_TRUE(r.ok()) << i << ": " << r.status().ToString();
  }
}

// RocksDB's info LOG had no size limit: one file growing (stats every 10 minutes, every flush
// and compaction) until the next restart, outside max_disk_bytes. The options RocksDB persists
// with the store show the roll size.
TEST_F(StorageBoundsTest, RocksDbsOwnLogRollsAtABoundedSize) {
  auto opened = OpenStore(Options(0), clock_);
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  opened.value()->Close();
  std::string options_text;
  for (const auto& f : std::filesystem::directory_iterator(dir_.path() + "/store/db")) {
    if (f.path().filename().string().starts_with("OPTIONS-")) {
      options_text = switchyard::testing::ReadFile(f.path().string());
    }
  }
  ASSERT_FALSE(options_text.empty()) << "no OPTIONS file in the store";
  EXPECT_NE(options_text.find("max_log_file_size=16777216"), std::string::npos);
  EXPECT_NE(options_text.find("keep_log_file_num=5"), std::string::npos);
}

// Without CURRENT, RocksDB's create_if_missing would start an empty database and delete the old
// files as obsolete. The store refuses to open instead, and leaves every file in place.
TEST_F(StorageBoundsTest, StoreWithoutCurrentFileIsRefusedNotReset) {
  const std::string db = dir_.path() + "/store/db";
  std::string id;
  {
    auto opened = OpenStore(Options(0), clock_);
    ASSERT_TRUE(opened.ok()) << opened.status().ToString();
    auto r = AppendSync(*opened.value(), "{\"keep\":\"me\"}");
    ASSERT_TRUE(r.ok());
    id = r->id;
    opened.value()->Close();
  }
  const std::string current = switchyard::testing::ReadFile(db + "/CURRENT");
  ASSERT_FALSE(current.empty());
  std::vector<std::string> before;
  for (const auto& f : std::filesystem::directory_iterator(db))
    before.push_back(f.path().filename());
  std::filesystem::remove(db + "/CURRENT");

  auto refused = OpenStore(Options(0), clock_);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), StatusCode::kCorruption);
  EXPECT_NE(refused.status().message().find("no CURRENT file"), std::string::npos)
      << refused.status().message();
  for (const std::string& name : before) {
    if (name == "CURRENT") continue;
    EXPECT_TRUE(std::filesystem::exists(db + "/" + name)) << name << " was removed";
  }

  std::ofstream(db + "/CURRENT") << current;  // the operator restores it
  auto opened = OpenStore(Options(0), clock_);
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  auto e = opened.value()->Get(id);
  ASSERT_TRUE(e.ok() && e.value() != nullptr);
  EXPECT_EQ(e.value()->body, "{\"keep\":\"me\"}");
}

}  // namespace
}  // namespace switchyard::storage
