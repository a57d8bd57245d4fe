#include "common/log.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <future>
#include <regex>
#include <string>

#include "support/captured_stderr.h"

namespace switchyard::log {
namespace {

using testing::CapturedStderr;

class LogTest : public ::testing::Test {
 protected:
  void SetUp() override { Configure(Level::kInfo, Format::kText); }
  void TearDown() override { ConfigureFromEnv(); }
};

int64_t ParseUtcMillis(const std::smatch& m) {
  struct tm tm = {};
  tm.tm_year = std::stoi(m[1]) - 1900;
  tm.tm_mon = std::stoi(m[2]) - 1;
  tm.tm_mday = std::stoi(m[3]);
  tm.tm_hour = std::stoi(m[4]);
  tm.tm_min = std::stoi(m[5]);
  tm.tm_sec = std::stoi(m[6]);
  return static_cast<int64_t>(timegm(&tm)) * 1000 + std::stoi(m[7]);
}

int64_t NowMillis() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

const std::regex kLine(
    R"re(ts=(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)\.(\d{3})Z level=info msg="(\w+)" k=v)re");

TEST_F(LogTest, EveryLineCarriesTheCurrentUtcTimeToTheMillisecond) {
  CapturedStderr err;
  const int64_t before = NowMillis();
  for (int i = 0; i < 3; ++i) Info("hello", {{"k", "v"}});  // the later ones reuse the date
  const int64_t after = NowMillis();
  const std::string out = err.Read();
  auto it = std::sregex_iterator(out.begin(), out.end(), kLine);
  int lines = 0;
  for (; it != std::sregex_iterator(); ++it, ++lines) {
    const int64_t ts = ParseUtcMillis(*it);
    EXPECT_GE(ts, before) << out;
    EXPECT_LE(ts, after) << out;
    EXPECT_EQ((*it)[8], "hello");
  }
  EXPECT_EQ(lines, 3) << out;
}

TEST_F(LogTest, TheDateMovesOnWhenTheSecondChanges) {
  CapturedStderr err;
  Info("before", {{"k", "v"}});  // formats and caches this second's date
  const int64_t start = NowMillis();
  while (NowMillis() / 1000 == start / 1000) {
  }  // await the next second (at most one)
  const int64_t later = NowMillis();
  Info("after", {{"k", "v"}});
  const std::string out = err.Read();
  std::smatch m;
  const size_t at = out.find("msg=\"after\"");
  ASSERT_NE(at, std::string::npos) << out;
  const std::string line = out.substr(out.rfind('\n', at) + 1);
  ASSERT_TRUE(std::regex_search(line, m, kLine)) << out;
  EXPECT_GE(ParseUtcMillis(m), later) << line;
}

TEST_F(LogTest, ABatchWritesItsLinesInOrderWhenItEnds) {
  CapturedStderr err;
  {
    ScopedBatch batch;
    Info("batchfirst", {{"k", "v"}});
    Info("batchsecond", {{"k", "v"}});
    EXPECT_EQ(err.Read().find("batchfirst"), std::string::npos)
        << "a batched line was written before the batch ended";
  }
  const std::string out = err.Read();
  const size_t first = out.find("msg=\"batchfirst\" k=v\n");
  const size_t second = out.find("msg=\"batchsecond\" k=v\n");
  ASSERT_NE(first, std::string::npos) << out;
  ASSERT_NE(second, std::string::npos) << out;
  EXPECT_LT(first, second);
}

TEST_F(LogTest, ABatchIsWrittenOutEvery64KiB) {
  CapturedStderr err;
  ScopedBatch batch;
  const std::string big(1000, 'x');
  for (int i = 0; i < 80; ++i) Info("bulk", {{"k", big}});
  const std::string out = err.Read();  // the batch is still open
  EXPECT_GE(out.size(), 64u << 10);
  EXPECT_LT(out.size(), 80u * 1000u);
  EXPECT_EQ(out.back(), '\n') << "a line was split across writes";
}

// A Request-ID or resource header is logged as sent, before any authentication: whatever its
// bytes, a JSON line must stay valid UTF-8 (log shippers drop lines that are not) and a text
// line must not carry the raw bytes either.
TEST_F(LogTest, InvalidUtf8FromAClientBecomesReplacementCharactersInBothFormats) {
  const std::string bad =
      "ab\xc3\x28"
      "cd\xff\xe2\x82";  // bad continuation, 0xFF, cut short
  const std::string replacement = "\xef\xbf\xbd";
  const std::string repaired = "ab" + replacement + "(cd" + replacement + replacement;
  for (Format format : {Format::kJson, Format::kText}) {
    Configure(Level::kInfo, format);
    CapturedStderr captured;
    Info("webhook rejected", {{"request_id", bad}, {"ok", "caf\xc3\xa9"}});
    const std::string line = captured.Read();
    EXPECT_NE(line.find(repaired), std::string::npos) << line;
    EXPECT_NE(line.find("caf\xc3\xa9"), std::string::npos) << line;  // valid UTF-8 kept
    EXPECT_EQ(line.find("\xff"), std::string::npos);
    EXPECT_EQ(line.find("\xc3\x28"), std::string::npos);
  }
}

// stderr on a pipe nobody reads (journald stalled, a container runtime's pipe): write(2)
// blocked the thread that logged, and the store's writer logs after every group commit, so
// every webhook waited for journald. Lines are now dropped after a short wait and counted, and
// the first line that gets through says how many were lost.
class LogPipeTest : public LogTest, public ::testing::WithParamInterface<bool> {
 protected:
  void TearDown() override {
    DisablePipeReopenForTest(false);
    LogTest::TearDown();
  }
};

// Both ways: through a non-blocking description of the pipe of our own, and (a pipe another
// user created, which cannot be reopened) through fd 2 written only when poll says so.
TEST_P(LogPipeTest, AStderrPipeNobodyReadsDropsLinesInsteadOfBlocking) {
  DisablePipeReopenForTest(GetParam());
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  const int saved = dup(STDERR_FILENO);
  ASSERT_EQ(dup2(fds[1], STDERR_FILENO), STDERR_FILENO);
  const uint64_t dropped_before = DroppedLines();
  // 2,000 lines of ~200 bytes: six times what a pipe holds.
  auto logging = std::async(std::launch::async, [] {
    const std::string filler(150, 'x');
    for (int i = 0; i < 2000; ++i) Info("filler", {{"n", std::to_string(i)}, {"f", filler}});
  });
  const bool finished = logging.wait_for(std::chrono::seconds(30)) == std::future_status::ready;
  // Drain the pipe: unblocks the logging thread if it was stuck, and reads what got through.
  auto read_all = [&] {
    std::string got;
    char buf[65536];
    const int flags = fcntl(fds[0], F_GETFL);
    fcntl(fds[0], F_SETFL, flags | O_NONBLOCK);
    for (ssize_t n; (n = read(fds[0], buf, sizeof buf)) > 0;)
      got.append(buf, static_cast<size_t>(n));
    return got;
  };
  std::string got = read_all();
  logging.wait();
  EXPECT_TRUE(finished) << "logging blocked on a full pipe";
  const uint64_t dropped = DroppedLines() - dropped_before;
  EXPECT_GT(dropped, 0u);
  Info("after", {});
  got += read_all();
  dup2(saved, STDERR_FILENO);
  close(saved);
  close(fds[0]);
  close(fds[1]);
  EXPECT_NE(got.find("msg=\"log lines dropped: stderr was not read in time\" count=" +
                     std::to_string(dropped) + "\n"),
            std::string::npos)
      << got.substr(got.size() > 600 ? got.size() - 600 : 0);
  EXPECT_TRUE(got.ends_with("msg=\"after\"\n"))
      << got.substr(got.size() > 300 ? got.size() - 300 : 0);
}

INSTANTIATE_TEST_SUITE_P(Ways, LogPipeTest, ::testing::Values(false, true),
                         [](const ::testing::TestParamInfo<bool>& i) {
                           return i.param ? std::string("PolledFd2")
                                          : std::string("OwnNonBlockingFd");
                         });

TEST_F(LogTest, LinesBelowTheLevelAreNotWritten) {
  Configure(Level::kWarn, Format::kText);
  CapturedStderr err;
  Info("quiet", {{"k", "v"}});
  { ScopedBatch batch; Info("quiet too", {{"k", "v"}}); }
  Warn("loud", {{"k", "v"}});
  const std::string out = err.Read();
  EXPECT_EQ(out.find("quiet"), std::string::npos) << out;
  EXPECT_NE(out.find("level=warn msg=\"loud\""), std::string::npos) << out;
}

}  // namespace
}  // namespace switchyard::log
