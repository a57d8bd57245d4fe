#include "sinks/file_sink.h"

#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <boost/json.hpp>
#include <condition_variable>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>
#include <vector>

#include "fakes/fake_http_client.h"
#include "support/temp_dir.h"

namespace switchyard::sinks {
namespace {

using ::testing::HasSubstr;
using Kind = Outcome::Kind;

std::vector<std::string> Lines(const std::string& path) {
  std::vector<std::string> lines;
  std::istringstream in(testing::ReadFile(path));
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

// SIGPIPE ignored for the scope, as the daemon ignores it: a FIFO whose reader left is EPIPE.
class IgnoreSigpipe {
 public:
  IgnoreSigpipe() {
    struct sigaction ignore {};
    ignore.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &ignore, &old_);
  }
  ~IgnoreSigpipe() { sigaction(SIGPIPE, &old_, nullptr); }

 private:
  struct sigaction old_ {};
};

class FileSinkTest : public ::testing::Test {
 protected:
  FileSinkTest() : path_(dir_.File("archive/events.jsonl")) {}

  std::unique_ptr<Sink> MakeSink(const std::string& path) {
    config::SinkConfig c;
    c.name = "archive";
    c.type = "file";
    c.settings = config::FileSinkConfig{path};
    auto sink = NewSink(c, client_);
    EXPECT_TRUE(sink.ok()) << sink.status().ToString();
    return sink.ok() ? std::move(sink).value() : nullptr;
  }

  static Delivery MakeDelivery(std::string id, std::string body = R"({"action":"created"})") {
    auto event = std::make_shared<storage::StoredEvent>();
    event->id = "01JD00000000000000000000EV";
    event->source = "sentry";
    event->resource = "issue";
    event->action = "created";
    event->received_at_ms = 1700000000123;  // 2023-11-14T22:13:20.123Z
    event->body = std::move(body);
    Delivery d;
    d.id = std::move(id);
    d.route = "archive-everything";
    d.event = std::move(event);
    return d;
  }

  static Outcome DeliverTo(Sink& sink, const Delivery& d) {
    std::optional<Outcome> out;
    sink.Deliver(d, [&](Outcome o) { out = std::move(o); });
    EXPECT_TRUE(out.has_value()) << "file sinks complete before Deliver returns";
    return out.value_or(Outcome{});
  }

  testing::TempDir dir_;
  std::string path_;
  testing::FakeHttpClient client_;
};

TEST_F(FileSinkTest, WritesOneJsonObjectPerLineWithThePayloadAsAValue) {
  const std::string body =
      R"({"action":"created","data":{"issue":{"title":"日本語 \"q\"","count":3,"x":null}}})";
  auto sink = MakeSink(path_);
  ASSERT_NE(sink, nullptr);
  EXPECT_EQ(DeliverTo(*sink, MakeDelivery("01JD0000000000000000000DL1", body)).kind,
            Kind::kSuccess);

  const std::string content = testing::ReadFile(path_);
  ASSERT_FALSE(content.empty());
  EXPECT_EQ(content.back(), '\n');
  const auto lines = Lines(path_);
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(lines[0],
            R"({"id":"01JD00000000000000000000EV","received_at":"2023-11-14T22:13:20.123Z",)"
            R"("source":"sentry","resource":"issue","action":"created",)"
            R"("route":"archive-everything","delivery_id":"01JD0000000000000000000DL1",)"
            R"("payload":)" +
                body + "}");
  const boost::json::value v = boost::json::parse(lines[0]);
  EXPECT_EQ(v.at("id"), "01JD00000000000000000000EV") << "the webhook's id, as its 202 said";
  EXPECT_EQ(v.at("delivery_id"), "01JD0000000000000000000DL1");
  EXPECT_EQ(v.at("received_at"), "2023-11-14T22:13:20.123Z");
  EXPECT_EQ(v.at("source"), "sentry");
  EXPECT_EQ(v.at("resource"), "issue");
  EXPECT_EQ(v.at("action"), "created");
  EXPECT_EQ(v.at("route"), "archive-everything");
  EXPECT_EQ(v.at("payload"), boost::json::parse(body));
}

TEST_F(FileSinkTest, PrettyPrintedPayloadStaysOnOneLine) {
  const std::string body = "{\r\n  \"action\": \"resolved\",\n  \"data\": [1,\n 2]\n}\n";
  auto sink = MakeSink(path_);
  DeliverTo(*sink, MakeDelivery("a", body));
  DeliverTo(*sink, MakeDelivery("b", body));
  const auto lines = Lines(path_);
  ASSERT_EQ(lines.size(), 2u);
  for (const auto& line : lines) {
    EXPECT_EQ(boost::json::parse(line).at("payload"), boost::json::parse(body));
  }
}

TEST_F(FileSinkTest, InvalidPayloadAndMetadataStillGiveValidLines) {
  auto sink = MakeSink(path_);
  Delivery d = MakeDelivery("c", "not json \xFF");
  auto event = std::make_shared<storage::StoredEvent>(*d.event);
  event->action = "bad\xC0utf8\n";
  d.event = event;
  EXPECT_EQ(DeliverTo(*sink, d).kind, Kind::kSuccess);
  const auto lines = Lines(path_);
  ASSERT_EQ(lines.size(), 1u);
  const boost::json::value v = boost::json::parse(lines[0]);
  EXPECT_EQ(v.at("payload"), "not json \xEF\xBF\xBD");
  EXPECT_EQ(v.at("action"), "bad\xEF\xBF\xBDutf8\n");
}

TEST_F(FileSinkTest, CreatesParentDirectoriesAndFileWithMode0640) {
  const mode_t old = umask(022);
  const std::string deep = dir_.File("a/b/c/events.jsonl");
  auto sink = MakeSink(deep);
  umask(old);
  EXPECT_EQ(DeliverTo(*sink, MakeDelivery("d")).kind, Kind::kSuccess);
  struct stat st {};
  ASSERT_EQ(stat(deep.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0640u);
  EXPECT_EQ(Lines(deep).size(), 1u);
}

TEST_F(FileSinkTest, ConcurrentDeliveriesProduceIntactLines) {
  auto sink = MakeSink(path_);
  constexpr int kThreads = 8;
  constexpr int kPerThread = 500;
  // Bodies of different sizes, some larger than a pipe buffer, so torn writes would show.
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      const std::string body = R"({"thread":)" + std::to_string(t) + R"(,"pad":")" +
                               std::string(static_cast<size_t>(100 + t * 1500), 'a' + t) + "\"}";
      for (int i = 0; i < kPerThread; ++i) {
        const Outcome out =
            DeliverTo(*sink, MakeDelivery(std::to_string(t) + "-" + std::to_string(i), body));
        EXPECT_EQ(out.kind, Kind::kSuccess);
      }
    });
  }
  for (auto& th : threads) th.join();

  const auto lines = Lines(path_);
  ASSERT_EQ(lines.size(), static_cast<size_t>(kThreads * kPerThread));
  std::set<std::string> ids;
  for (const auto& line : lines) {
    boost::json::error_code ec;
    const boost::json::value v = boost::json::parse(line, ec);
    ASSERT_FALSE(ec) << line.substr(0, 200);
    const auto t = v.at("payload").at("thread").as_int64();
    EXPECT_EQ(v.at("payload").at("pad").as_string().size(), static_cast<size_t>(100 + t * 1500));
    ids.insert(std::string(v.at("delivery_id").as_string()));
  }
  EXPECT_EQ(ids.size(), static_cast<size_t>(kThreads * kPerThread));
}

TEST_F(FileSinkTest, ReopenAfterRenameWritesToANewFile) {
  auto sink = MakeSink(path_);
  DeliverTo(*sink, MakeDelivery("before"));
  ASSERT_EQ(std::rename(path_.c_str(), (path_ + ".1").c_str()), 0);
  DeliverTo(*sink, MakeDelivery("still-old"));  // logrotate renamed, no SIGHUP yet
  sink->Reopen();
  DeliverTo(*sink, MakeDelivery("after"));

  const auto old_lines = Lines(path_ + ".1");
  ASSERT_EQ(old_lines.size(), 2u);
  EXPECT_THAT(old_lines[0], HasSubstr(R"("delivery_id":"before")"));
  EXPECT_THAT(old_lines[1], HasSubstr(R"("delivery_id":"still-old")"));
  const auto new_lines = Lines(path_);
  ASSERT_EQ(new_lines.size(), 1u);
  EXPECT_THAT(new_lines[0], HasSubstr(R"("delivery_id":"after")"));
}

TEST_F(FileSinkTest, ReopenWhileDeliveringLosesNoLines) {
  auto sink = MakeSink(path_);
  std::atomic<bool> done{false};
  std::thread writer([&] {
    for (int i = 0; i < 2000; ++i) DeliverTo(*sink, MakeDelivery(std::to_string(i)));
    done = true;
  });
  int rotations = 0;
  while (!done) {
    const std::string rotated = path_ + "." + std::to_string(++rotations);
    std::rename(path_.c_str(), rotated.c_str());
    sink->Reopen();
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  writer.join();
  size_t total = Lines(path_).size();
  for (int r = 1; r <= rotations; ++r) {
    for (const auto& line : Lines(path_ + "." + std::to_string(r))) {
      boost::json::error_code ec;
      boost::json::parse(line, ec);
      EXPECT_FALSE(ec);
      ++total;
    }
  }
  EXPECT_EQ(total, 2000u);
}

TEST_F(FileSinkTest, WriteErrorRetries) {
  auto sink = MakeSink("/dev/full");
  const Outcome out = DeliverTo(*sink, MakeDelivery("e"));
  EXPECT_EQ(out.kind, Kind::kRetry);
  EXPECT_EQ(out.error, "file write failed: No space left on device");
}

TEST_F(FileSinkTest, UnopenablePathRetriesAtDelivery) {
  dir_.Write("plainfile", "x");
  auto sink = MakeSink(dir_.File("plainfile/events.jsonl"));
  ASSERT_NE(sink, nullptr);
  const Outcome out = DeliverTo(*sink, MakeDelivery("f"));
  EXPECT_EQ(out.kind, Kind::kRetry);
  EXPECT_THAT(out.error, HasSubstr("file open failed"));
}

TEST_F(FileSinkTest, EmptyPathIsRejected) {
  config::SinkConfig c;
  c.type = "file";
  c.settings = config::FileSinkConfig{""};
  EXPECT_FALSE(NewSink(c, client_).ok());
}

TEST_F(FileSinkTest, DeliveryWithoutEventIsPermanent) {
  auto sink = MakeSink(path_);
  Delivery d = MakeDelivery("g");
  d.event = nullptr;
  EXPECT_EQ(DeliverTo(*sink, d).kind, Kind::kPermanent);
}

// Values recorded on other threads, awaited by the test.
template <class T>
class Recorded {
 public:
  void Add(T v) {
    std::lock_guard lock(mu_);
    items_.push_back(std::move(v));
    cv_.notify_all();
  }
  bool Wait(size_t n) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, std::chrono::seconds(10), [&] { return items_.size() >= n; });
  }
  std::vector<T> Get() {
    std::lock_guard lock(mu_);
    return items_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<T> items_;
};

// Stands in for fdatasync(2): records the fds it is asked to sync, and holds each call until
// released (or fails it).
class SyncGate {
 public:
  std::function<int(int)> Fn() {
    return [this](int fd) {
      fds_.Add(fd);
      std::unique_lock lock(mu_);
      cv_.wait(lock, [&] { return released_ > 0; });
      --released_;
      if (fail_) {
        errno = EIO;
        return -1;
      }
      return 0;
    };
  }
  void Release(int n = 1) {
    std::lock_guard lock(mu_);
    released_ += n;
    cv_.notify_all();
  }
  void FailAll() {
    std::lock_guard lock(mu_);
    fail_ = true;
    released_ = 1 << 20;
    cv_.notify_all();
  }
  bool WaitCalls(size_t n) { return fds_.Wait(n); }
  std::vector<int> fds() { return fds_.Get(); }

 private:
  Recorded<int> fds_;
  std::mutex mu_;
  std::condition_variable cv_;
  int released_ = 0;
  bool fail_ = false;
};

// Outcomes reported on the sink's sync thread.
class Outcomes : public Recorded<Outcome> {
 public:
  DeliverCallback Callback() {
    return [this](Outcome o) { Add(std::move(o)); };
  }
};

std::unique_ptr<Sink> SyncedSink(const std::string& path, SyncGate& gate) {
  FileSinkOptions options;
  options.sync = true;
  options.sync_fn = gate.Fn();
  auto sink = NewFileSink(config::FileSinkConfig{path}, std::move(options));
  EXPECT_TRUE(sink.ok());
  return sink.ok() ? std::move(sink).value() : nullptr;
}

// With storage.sync a line used to be reported delivered once written into the page cache; the
// queue's record of it became durable at the next group commit, so a power cut could lose a line
// the queue called delivered. It is reported only after its sync returns.
TEST_F(FileSinkTest, WithSyncALineIsReportedDeliveredOnlyAfterItsSyncReturns) {
  SyncGate gate;
  Outcomes outcomes;
  {
    auto sink = SyncedSink(path_, gate);
    ASSERT_NE(sink, nullptr);
    sink->Deliver(MakeDelivery("01JD0000000000000000000DL1"), outcomes.Callback());
    ASSERT_TRUE(gate.WaitCalls(1));
    EXPECT_TRUE(outcomes.Get().empty()) << "reported before the sync returned";
    gate.Release();
    ASSERT_TRUE(outcomes.Wait(1));
    EXPECT_EQ(outcomes.Get()[0].kind, Kind::kSuccess);
  }
  EXPECT_EQ(Lines(path_).size(), 1u);
}

// One sync covers every line written while the previous one ran.
TEST_F(FileSinkTest, WithSyncLinesWrittenDuringASyncShareTheNextOne) {
  SyncGate gate;
  Outcomes outcomes;
  auto sink = SyncedSink(path_, gate);
  ASSERT_NE(sink, nullptr);
  sink->Deliver(MakeDelivery("01JD0000000000000000000DL0"), outcomes.Callback());
  ASSERT_TRUE(gate.WaitCalls(1));
  for (int i = 1; i <= 10; ++i) {
    sink->Deliver(MakeDelivery("01JD000000000000000000DL" + std::to_string(10 + i)),
                  outcomes.Callback());
  }
  gate.Release(2);
  ASSERT_TRUE(outcomes.Wait(11));
  EXPECT_EQ(gate.fds().size(), 2u) << "one sync for the first line, one for the ten after it";
  for (const Outcome& o : outcomes.Get()) EXPECT_EQ(o.kind, Kind::kSuccess);
  EXPECT_EQ(Lines(path_).size(), 11u);
}

TEST_F(FileSinkTest, WithSyncAFailedSyncIsARetryForItsLines) {
  SyncGate gate;
  Outcomes outcomes;
  auto sink = SyncedSink(path_, gate);
  ASSERT_NE(sink, nullptr);
  gate.FailAll();
  sink->Deliver(MakeDelivery("01JD0000000000000000000DL1"), outcomes.Callback());
  ASSERT_TRUE(outcomes.Wait(1));
  EXPECT_EQ(outcomes.Get()[0].kind, Kind::kRetry);
  EXPECT_THAT(outcomes.Get()[0].error, ::testing::HasSubstr("file sync failed"));
}

// A line cut short by a kill (or a partial line that could not be truncated) used to swallow
// the next line written after a restart: that line was not valid JSON.
TEST_F(FileSinkTest, ALineTornBeforeTheSinkOpenedTheFileDoesNotSwallowTheNextOne) {
  std::filesystem::create_directories(std::filesystem::path(path_).parent_path());
  { std::ofstream(path_) << "{\"id\":\"01JD0000000000000000000DL0\",\"recei"; }
  auto sink = MakeSink(path_);
  ASSERT_NE(sink, nullptr);
  EXPECT_EQ(DeliverTo(*sink, MakeDelivery("01JD0000000000000000000DL1")).kind, Kind::kSuccess);
  const auto lines = Lines(path_);
  ASSERT_EQ(lines.size(), 2u);
  boost::system::error_code ec;
  boost::json::parse(lines[1], ec);
  EXPECT_FALSE(ec) << lines[1];
}

// A FIFO (a log shipper reading it) whose reader goes away: the write fails (EPIPE, a retry)
// instead of filling a pipe the sink itself held open for reading and then blocking the
// dispatcher's file thread for good. Without a reader at all the open fails (a retry), and
// never blocks.
TEST_F(FileSinkTest, AFifoWithoutItsReaderIsARetryNeverABlockedThread) {
  IgnoreSigpipe ignore;  // as the daemon does
  const std::string fifo = dir_.File("pipe");
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  {
    auto sink = MakeSink(fifo);  // no reader yet: the open fails, and does not block
    ASSERT_NE(sink, nullptr);
    EXPECT_EQ(DeliverTo(*sink, MakeDelivery("01JD0000000000000000000DL0")).kind, Kind::kRetry);
  }
  const int reader = open(fifo.c_str(), O_RDONLY | O_NONBLOCK);
  ASSERT_GE(reader, 0);
  auto sink = MakeSink(fifo);
  ASSERT_NE(sink, nullptr);
  EXPECT_EQ(DeliverTo(*sink, MakeDelivery("01JD0000000000000000000DL1")).kind, Kind::kSuccess);
  char buf[4096];
  EXPECT_GT(read(reader, buf, sizeof buf), 0);
  close(reader);
  EXPECT_EQ(DeliverTo(*sink, MakeDelivery("01JD0000000000000000000DL2")).kind, Kind::kRetry)
      << "the reader is gone";
}

// A line longer than what a pipe holds is written in parts as its reader makes room: a part
// cannot be taken back, and a retry used to write the whole line after the half the reader had.
TEST_F(FileSinkTest, ALineLongerThanAFullPipeIsFinishedNotTornAndRetried) {
  IgnoreSigpipe ignore;  // as the daemon does
  const std::string fifo = dir_.File("pipe");
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  const int reader = open(fifo.c_str(), O_RDONLY | O_NONBLOCK);
  ASSERT_GE(reader, 0);
  auto sink = MakeSink(fifo);
  ASSERT_NE(sink, nullptr);
  const int capacity = fcntl(reader, F_GETPIPE_SZ);
  ASSERT_GT(capacity, 0);
  const std::string body = "{\"pad\":\"" + std::string(3 * capacity, 'p') + "\"}";
  std::optional<Outcome> outcome;
  std::thread writer(
      [&] { outcome = DeliverTo(*sink, MakeDelivery("01JD0000000000000000000DL3", body)); });
  // The reader starts once the pipe is full (or the delivery has given up).
  int queued = 0;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (queued < capacity && std::chrono::steady_clock::now() < deadline) {
    ioctl(reader, FIONREAD, &queued);
    std::this_thread::yield();
  }
  std::string got;
  char buf[65536];
  while (got.find('\n') == std::string::npos && std::chrono::steady_clock::now() < deadline) {
    const ssize_t n = read(reader, buf, sizeof buf);
    if (n > 0) got.append(buf, static_cast<size_t>(n));
    if (n <= 0) std::this_thread::yield();
  }
  writer.join();
  ASSERT_TRUE(outcome);
  EXPECT_EQ(outcome->kind, Kind::kSuccess) << outcome->error;
  ASSERT_FALSE(got.empty());
  EXPECT_EQ(got.back(), '\n') << "one whole line, and nothing after it";
  EXPECT_EQ(got.find('\n'), got.size() - 1);
  auto line = boost::json::parse(got);
  EXPECT_EQ(line.at("delivery_id").as_string(), "01JD0000000000000000000DL3");
  close(reader);
}

// A FIFO or /dev/stdout cannot be synced (EINVAL): its lines are delivered as without sync,
// not retried until they are dead letters.
TEST_F(FileSinkTest, WithSyncAFileThatCannotBeSyncedStillDelivers) {
  FileSinkOptions options;
  options.sync = true;
  options.sync_fn = [](int) {
    errno = EINVAL;
    return -1;
  };
  auto sink = NewFileSink(config::FileSinkConfig{path_}, std::move(options));
  ASSERT_TRUE(sink.ok());
  Outcomes outcomes;
  (*sink)->Deliver(MakeDelivery("01JD0000000000000000000DL1"), outcomes.Callback());
  ASSERT_TRUE(outcomes.Wait(1));
  EXPECT_EQ(outcomes.Get()[0].kind, Kind::kSuccess);
}

// Lines written before a reopen (logrotate) are synced on the file they went to, which stays
// open until then.
TEST_F(FileSinkTest, WithSyncLinesWrittenBeforeAReopenAreSyncedOnTheOldFile) {
  SyncGate gate;
  Outcomes outcomes;
  auto sink = SyncedSink(path_, gate);
  ASSERT_NE(sink, nullptr);
  sink->Deliver(MakeDelivery("01JD0000000000000000000DL0"), outcomes.Callback());
  ASSERT_TRUE(gate.WaitCalls(1));
  sink->Deliver(MakeDelivery("01JD0000000000000000000DL1"), outcomes.Callback());
  ASSERT_EQ(std::rename(path_.c_str(), (path_ + ".1").c_str()), 0);
  sink->Reopen();
  sink->Deliver(MakeDelivery("01JD0000000000000000000DL2"), outcomes.Callback());
  gate.Release(3);
  ASSERT_TRUE(outcomes.Wait(3));
  const std::vector<int> fds = gate.fds();
  ASSERT_EQ(fds.size(), 3u);
  EXPECT_EQ(fds[0], fds[1]) << "the second line went to the old file";
  EXPECT_NE(fds[1], fds[2]) << "the third to the new one";
  EXPECT_EQ(Lines(path_ + ".1").size(), 2u);
  EXPECT_EQ(Lines(path_).size(), 1u);
}

}  // namespace
}  // namespace switchyard::sinks
