#include "common/thread_name.h"

#include <gtest/gtest.h>
#include <pthread.h>

#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>

namespace switchyard {
namespace {

std::string NameOf(std::thread& t) {
  char buf[32] = {};
  EXPECT_EQ(pthread_getname_np(t.native_handle(), buf, sizeof(buf)), 0);
  return buf;
}

// Runs `name` through NameThisThread on a fresh thread and returns what the kernel then reports.
std::string NameAfter(const char* name) {
  bool named = false;
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  std::thread t([&] {
    NameThisThread(name);
    std::unique_lock lock(mu);
    named = true;
    cv.notify_all();
    cv.wait(lock, [&] { return done; });
  });
  std::string result;
  {
    std::unique_lock lock(mu);
    cv.wait(lock, [&] { return named; });
  }
  result = NameOf(t);
  {
    std::lock_guard lock(mu);
    done = true;
    cv.notify_all();
  }
  t.join();
  return result;
}

TEST(ThreadName, TheKernelReportsTheNameGiven) { EXPECT_EQ(NameAfter("sy-io"), "sy-io"); }

TEST(ThreadName, NamesLongerThanTheKernelKeepsAreCutToFifteenCharacters) {
  // pthread_setname_np refuses (ERANGE) a name over 15 characters; it must not stay unnamed.
  EXPECT_EQ(NameAfter("sy-a-name-well-over-fifteen"), "sy-a-name-well-");
}

}  // namespace
}  // namespace switchyard
