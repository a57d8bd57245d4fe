// End-to-end tests of storage faults: a full disk while deliveries are being retried (so the
// queue's own writes meet the full disk too), a corrupted store (CURRENT, MANIFEST or table file
// truncated, garbled or missing), a torn write-ahead-log tail, and the max_disk_bytes bound.
// ingest_test.cc has the basic disk-full test (ingest only, no deliveries).
#include <gtest/gtest.h>
#include <sys/mount.h>

#include <boost/json.hpp>
#include <filesystem>
#include <fstream>
#include <random>
#include <set>
#include <sstream>
#include <thread>

#include "fakes/recording_receiver.h"
#include "support/daemon_process.h"
#include "support/http_client.h"
#include "support/sentry.h"
#include "support/temp_dir.h"

namespace switchyard::testing {
namespace {

namespace fs = std::filesystem;
using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr char kSecret[] = "storage-faults-secret";
constexpr auto kWait = seconds(30);

std::string Body(int i, const std::string& pad = "") {
  return "{\"action\":\"created\",\"i\":" + std::to_string(i) + ",\"pad\":\"" + pad + "\"}";
}

class StorageFaultsTest : public ::testing::Test {
 protected:
  std::string Config(const std::string& store, const std::string& storage_extra = "",
                     const std::string& sink_extra = "") {
    return "server:\n  listen: 127.0.0.1:0\n  admin_listen: 127.0.0.1:0\n  threads: 2\n"
           "storage:\n  path: " +
           store + "\n" + storage_extra +
           "sources:\n  sentry:\n    type: sentry\n    client_secret: " + kSecret +
           "\n"
           "sinks:\n  rcv:\n    type: http\n    url: " +
           receiver_.url("/in") + "\n    timeout: 2s\n" + sink_extra +
           "retry:\n  initial: 20ms\n  max_delay: 100ms\n  jitter: 0\n  max_attempts: 100000\n"
           "routes:\n  - name: to-rcv\n    to: [rcv]\n";
  }

  std::optional<HttpResponse> Post(const std::string& body) {
    return Fetch(daemon_.port(), "POST", "/hooks/sentry",
                 SentryHeaders("issue", SentrySignature(kSecret, body)), body);
  }

  bool WaitQueueEmpty() {
    auto deadline = std::chrono::steady_clock::now() + kWait;
    while (std::chrono::steady_clock::now() < deadline) {
      auto q = Fetch(daemon_.admin_port(), "GET", "/admin/queue");
      if (q && q->body.starts_with("{\"pending\":0,\"dead\":0")) return true;
      std::this_thread::sleep_for(milliseconds(20));  // polling the daemon's state
    }
    return false;
  }

  TempDir dir_;
  RecordingReceiver receiver_;
  DaemonProcess daemon_{dir_.path()};
};

// A small real filesystem under the store; unmounted (lazily) at the end.
class SmallFilesystem {
 public:
  SmallFilesystem(const std::string& path, const std::string& size) : path_(path) {
    fs::create_directories(path);
    mounted_ = mount("tmpfs", path.c_str(), "tmpfs", 0, ("size=" + size).c_str()) == 0;
    if (!mounted_) error_ = strerror(errno);
  }
  ~SmallFilesystem() {
    if (mounted_) umount2(path_.c_str(), MNT_DETACH);
  }
  bool mounted() const { return mounted_; }
  const std::string& error() const { return error_; }
  // Fills what is left with a ballast file.
  void Fill() const {
    std::ofstream ballast(path_ + "/ballast", std::ios::binary);
    const std::string mb(1 << 20, 'b');
    while (ballast.write(mb.data(), mb.size())) {
    }
  }
  void Free() const { fs::remove(path_ + "/ballast"); }

 private:
  std::string path_;
  bool mounted_ = false;
  std::string error_;
};

// The disk fills up while deliveries flow: ingest answers 503 + Retry-After, the dispatcher
// keeps completing deliveries (queue writes on the full disk), nothing crashes; when space
// returns, webhooks are accepted again and every acknowledged one is delivered.
TEST_F(StorageFaultsTest, DiskFullWhileDeliveriesFlowNeitherCrashesNorLosesWebhooks) {
  SmallFilesystem small(dir_.File("small"), "48m");
  if (!small.mounted()) {
    GTEST_SKIP() << "cannot mount a tmpfs here (needs root): " << small.error();
  }
  // One slow delivery at a time: the backlog drains while the disk is full.
  receiver_.SetDefault(ServerReply{200, {}, "ok", milliseconds(30)});
  daemon_.Start(Config(dir_.File("small") + "/var",
                       "  dedupe_window: 0\n  min_free_bytes: 4194304\n", "    concurrency: 1\n"));
  std::set<std::string> acknowledged;
  for (int i = 0; i < 150; ++i) {
    ASSERT_EQ(Post(Body(i))->status, 202);
    acknowledged.insert(Body(i));
  }
  small.Fill();
  const std::string pad(60000, 'p');
  std::optional<HttpResponse> r;
  for (int i = 1000; i < 1500; ++i) {
    r = Post(Body(i, pad));
    ASSERT_TRUE(r) << "no answer: the daemon died? " << daemon_.Log();
    if (r->status == 503) break;
    ASSERT_EQ(r->status, 202) << r->body;
    acknowledged.insert(Body(i, pad));
  }
  ASSERT_EQ(r->status, 503) << "the filesystem never filled up";
  EXPECT_FALSE(r->Header("Retry-After").empty());
  // Deliveries go on completing (and writing the queue) on the full disk; the daemon stays up.
  ASSERT_TRUE(receiver_.WaitFor(receiver_.count() + 10, kWait));
  EXPECT_EQ(Post(Body(5000, pad))->status, 503);
  auto health = Fetch(daemon_.admin_port(), "GET", "/healthz");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 200);
  // Not ready while storage refuses every webhook (a balancer sends them elsewhere)...
  auto ready = Fetch(daemon_.admin_port(), "GET", "/readyz");
  ASSERT_TRUE(ready);
  EXPECT_EQ(ready->status, 503);
  EXPECT_NE(ready->body.find("storage nearly full"), std::string::npos) << ready->body;

  small.Free();
  // ...and ready again once space returns, before any webhook arrives to find out.
  bool ready_again = false;
  for (int i = 0; i < 200 && !ready_again; ++i) {
    ready = Fetch(daemon_.admin_port(), "GET", "/readyz");
    ready_again = ready && ready->status == 200;
    if (!ready_again) std::this_thread::sleep_for(milliseconds(20));  // polling the daemon
  }
  EXPECT_TRUE(ready_again);
  bool accepted = false;
  for (int i = 0; i < 200 && !accepted; ++i) {
    auto again = Post(Body(2000 + i));
    ASSERT_TRUE(again);
    accepted = again->status == 202;
    if (accepted) {
      acknowledged.insert(Body(2000 + i));
    } else {
      std::this_thread::sleep_for(milliseconds(50));  // the store resumes on the next batch
    }
  }
  EXPECT_TRUE(accepted) << daemon_.Log();
  receiver_.SetDefault(ServerReply{200, {}, "ok"});
  ASSERT_TRUE(WaitQueueEmpty()) << daemon_.Log();
  std::set<std::string> delivered;
  for (const auto& req : receiver_.requests()) delivered.insert(req.body);
  size_t lost = 0;
  for (const auto& body : acknowledged) lost += !delivered.count(body);
  EXPECT_EQ(lost, 0u);
  EXPECT_EQ(daemon_.Terminate(), 0);
}

// ---- corrupted stores ----

struct Corruption {
  const char* name;
  // Damages the store at `db` (the RocksDB directory); returns the file it damaged.
  std::string (*damage)(const std::string& db);
  const char* says;  // in the error
};

void PrintTo(const Corruption& c, std::ostream* os) { *os << c.name; }

std::string FindFile(const std::string& db, const std::string& prefix, const std::string& ext) {
  std::string found;
  for (const auto& f : fs::directory_iterator(db)) {
    const std::string name = f.path().filename();
    if (name.starts_with(prefix) && name.ends_with(ext) && name > found) found = name;
  }
  return found.empty() ? "" : db + "/" + found;
}

std::string Largest(const std::string& db, const std::string& ext) {
  std::string best;
  uintmax_t size = 0;
  for (const auto& f : fs::directory_iterator(db)) {
    if (f.path().extension() == ext && f.file_size() > size) {
      size = f.file_size();
      best = f.path();
    }
  }
  return best;
}

void Overwrite(const std::string& file, uintmax_t offset, const std::string& bytes) {
  std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
  f.seekp(static_cast<std::streamoff>(offset));
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

class CorruptStoreTest : public StorageFaultsTest,
                         public ::testing::WithParamInterface<Corruption> {};

// A damaged store is refused at start with a clear error and exit code 2 — never opened as a
// fresh, empty store; every file is left as it was, and undoing the damage brings the data back.
TEST_P(CorruptStoreTest, IsRefusedAtStartWithAClearErrorAndNeverReset) {
  const std::string store = dir_.path() + "/var", db = store + "/db";
  daemon_.Start(Config(store));
  for (int i = 0; i < 50; ++i) ASSERT_EQ(Post(Body(i))->status, 202);
  ASSERT_TRUE(WaitQueueEmpty());
  ASSERT_EQ(daemon_.Terminate(), 0);
  daemon_.Restart();  // recovery flushes the WAL into table files
  ASSERT_EQ(daemon_.Terminate(), 0);
  ASSERT_FALSE(Largest(db, ".sst").empty()) << "no table file to damage";

  // Keep a copy to undo the damage with.
  const std::string backup = dir_.path() + "/backup";
  fs::copy(db, backup, fs::copy_options::recursive);
  const std::string damaged = GetParam().damage(db);
  std::set<std::string> files_left;
  for (const auto& f : fs::directory_iterator(db)) files_left.insert(f.path().filename());

  auto run = RunCli({"run", "-c", daemon_.config_path()}, seconds(20));
  EXPECT_EQ(run.exit_code, 2) << run.err;
  EXPECT_NE(run.err.find("cannot open storage"), std::string::npos) << run.err;
  EXPECT_NE(run.err.find(GetParam().says), std::string::npos) << run.err;
  // Nothing was reset or cleaned up: every file the damage left is still there.
  for (const std::string& name : files_left) {
    EXPECT_TRUE(fs::exists(db + "/" + name)) << name << " disappeared";
  }

  // Undo the damage: the store opens with its data (the first webhook is a known duplicate).
  for (const auto& f : fs::directory_iterator(backup)) {
    const std::string target = db + "/" + f.path().filename().string();
    if (!fs::exists(target) || target == damaged) {
      fs::copy_file(f.path(), target, fs::copy_options::overwrite_existing);
    }
  }
  daemon_.Restart();
  auto again = Post(Body(0));
  ASSERT_TRUE(again);
  EXPECT_EQ(again->status, 200) << again->body;
  EXPECT_EQ(daemon_.Terminate(), 0);
}

INSTANTIATE_TEST_SUITE_P(
    Damage, CorruptStoreTest,
    ::testing::Values(Corruption{"CurrentMissing",
                                 [](const std::string& db) {
                                   fs::remove(db + "/CURRENT");
                                   return db + "/CURRENT";
                                 },
                                 "corrupted"},
                      Corruption{"CurrentMissingAndNoWal",
                                 [](const std::string& db) {
                                   for (const auto& f : fs::directory_iterator(db)) {
                                     if (f.path().extension() == ".log") fs::remove(f.path());
                                   }
                                   fs::remove(db + "/CURRENT");
                                   return db + "/CURRENT";
                                 },
                                 "but no CURRENT file"},
                      Corruption{"CurrentTruncated",
                                 [](const std::string& db) {
                                   fs::resize_file(db + "/CURRENT", 0);
                                   return db + "/CURRENT";
                                 },
                                 "corrupted"},
                      Corruption{"CurrentNamesAMissingManifest",
                                 [](const std::string& db) {
                                   std::ofstream(db + "/CURRENT") << "MANIFEST-999999\n";
                                   return db + "/CURRENT";
                                 },
                                 "MANIFEST-999999"},
                      Corruption{"ManifestTruncated",
                                 [](const std::string& db) {
                                   std::string m = FindFile(db, "MANIFEST-", "");
                                   fs::resize_file(m, 100);
                                   return m;
                                 },
                                 "corrupted"},
                      Corruption{"ManifestGarbled",
                                 [](const std::string& db) {
                                   std::string m = FindFile(db, "MANIFEST-", "");
                                   Overwrite(m, 40, std::string(32, 'X'));
                                   return m;
                                 },
                                 "corrupted"},
                      Corruption{"ManifestMissing",
                                 [](const std::string& db) {
                                   std::string m = FindFile(db, "MANIFEST-", "");
                                   fs::remove(m);
                                   return m;
                                 },
                                 "MANIFEST-"},
                      Corruption{"TableTruncated",
                                 [](const std::string& db) {
                                   std::string t = Largest(db, ".sst");
                                   fs::resize_file(t, fs::file_size(t) / 2);
                                   return t;
                                 },
                                 "corrupted"},
                      Corruption{"TableFooterGarbled",
                                 [](const std::string& db) {
                                   std::string t = Largest(db, ".sst");
                                   Overwrite(t, fs::file_size(t) - 8, std::string(8, 'X'));
                                   return t;
                                 },
                                 "corrupted"},
                      Corruption{"TableMissing",
                                 [](const std::string& db) {
                                   std::string t = Largest(db, ".sst");
                                   fs::remove(t);
                                   return t;
                                 },
                                 "corrupted"}),
    [](const ::testing::TestParamInfo<Corruption>& info) { return std::string(info.param.name); });

// A crash in the middle of a WAL write leaves a torn record at the tail. Recovery stops there
// (point-in-time): the store opens, and every acknowledged webhook (whose write completed and
// was fsync'd before its 202) is still there.
TEST_F(StorageFaultsTest, TornWalTailIsRecoveredWithEveryAcknowledgedWebhook) {
  const std::string store = dir_.path() + "/var", db = store + "/db";
  ASSERT_TRUE(receiver_.SetDown(true));  // keep the deliveries pending: more WAL traffic
  daemon_.Start(Config(store));
  for (int i = 0; i < 100; ++i) ASSERT_EQ(Post(Body(i))->status, 202);
  daemon_.Kill();
  const std::string wal = FindFile(db, "", ".log");
  ASSERT_FALSE(wal.empty());
  {
    std::ofstream torn(wal, std::ios::binary | std::ios::app);  // half a record of garbage
    torn << std::string("\x7f\x13\x00\x00\x20\x00\x01", 7) << std::string(300, '\xab');
  }
  daemon_.Restart();
  for (int i = 0; i < 100; ++i) {
    auto r = Post(Body(i));
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200) << "webhook " << i << " was lost: " << r->body;
  }
  ASSERT_TRUE(receiver_.SetDown(false));
  ASSERT_TRUE(WaitQueueEmpty());
  std::set<std::string> delivered;
  for (const auto& req : receiver_.requests()) delivered.insert(req.body);
  EXPECT_EQ(delivered.size(), 100u);
}

// The daemon's RocksDB checksums its WAL and tables with the CRC32C of lib/storage/crc32c.cc (the
// CPU's instruction) where that replaces Debian's portable byte table; RocksDB's own LOG says
// which, as does the daemon's start line. (The torn-WAL test above reads those checksums back.)
TEST_F(StorageFaultsTest, TheDaemonsRocksDbChecksumsWithTheCrc32cItNames) {
  const std::string store = dir_.path() + "/var";
  daemon_.Start(Config(store));
  ASSERT_TRUE(daemon_.WaitForLog("switchyard started"));
  std::string log_line;
  {
    std::istringstream in(ReadFile(store + "/db/LOG"));
    for (std::string line; std::getline(in, line);) {
      if (line.find("Fast CRC32 supported:") != std::string::npos) log_line = line;
    }
  }
  ASSERT_FALSE(log_line.empty()) << "RocksDB's LOG names no CRC32C";
#if defined(SWITCHYARD_ROCKSDB_CRC32C_OVERRIDE)
  const std::string used = __builtin_cpu_supports("sse4.2") ? "sse4.2" : "table";
  EXPECT_NE(log_line.find("(switchyard, " + used + ")"), std::string::npos) << log_line;
#else
  const std::string used = "rocksdb";
  EXPECT_EQ(log_line.find("switchyard"), std::string::npos) << log_line;
#endif
  EXPECT_NE(daemon_.Log().find(" crc32c=" + used), std::string::npos) << daemon_.Log();
}

// storage.max_disk_bytes: past the bound, 503 + Retry-After; the daemon stays up.
TEST_F(StorageFaultsTest, MaxDiskBytesAnswers503WithRetryAfterPastTheBound) {
  ASSERT_TRUE(receiver_.SetDown(true));  // nothing drains
  daemon_.Start(Config(dir_.path() + "/var", "  max_disk_bytes: 2097152\n  dedupe_window: 0\n"));
  // Random letters: bodies are stored LZ4-compressed, and these do not compress.
  std::mt19937 rng(7);
  auto pad = [&] {
    std::string p(30000, 'a');
    for (char& c : p) c = static_cast<char>('a' + rng() % 26);
    return p;
  };
  std::optional<HttpResponse> r;
  int accepted = 0;
  for (int i = 0; i < 500; ++i) {
    r = Post(Body(i, pad()));
    ASSERT_TRUE(r);
    if (r->status != 202) break;
    ++accepted;
  }
  ASSERT_EQ(r->status, 503) << r->body;
  EXPECT_FALSE(r->Header("Retry-After").empty());
  EXPECT_LE(accepted * 30000, 2097152);
  EXPECT_NE(daemon_.Log().find("max_disk_bytes"), std::string::npos);
  EXPECT_EQ(Fetch(daemon_.admin_port(), "GET", "/healthz")->status, 200);
  // Not ready while every webhook would be refused (a Kubernetes Service sends none meanwhile).
  auto ready = Fetch(daemon_.admin_port(), "GET", "/readyz");
  ASSERT_TRUE(ready);
  EXPECT_EQ(ready->status, 503);
  EXPECT_NE(ready->body.find("max_disk_bytes"), std::string::npos) << ready->body;
  // Raising the bound (a restart: storage settings are read at start) accepts again.
  ASSERT_EQ(daemon_.Terminate(), 0);
  daemon_.Start(Config(dir_.path() + "/var", "  max_disk_bytes: 0\n  dedupe_window: 0\n"));
  EXPECT_EQ(Fetch(daemon_.admin_port(), "GET", "/readyz")->status, 200);
  EXPECT_EQ(Post(Body(9999))->status, 202);
}

}  // namespace
}  // namespace switchyard::testing
