#include "httpclient/host_resolver.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "support/blocking_lookup.h"

namespace switchyard::httpclient {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using Answer = Result<std::vector<std::string>>;

// Collects the answers of Resolve calls; each may be awaited.
class Answers {
 public:
  HostResolver::Callback Callback(int index) {
    return [this, index](Answer a) {
      std::lock_guard lock(mu_);
      ++calls_[index];
      answers_.insert_or_assign(index, std::move(a));
      cv_.notify_all();
    };
  }
  bool Wait(int index, milliseconds limit = seconds(30)) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, limit, [&] { return answers_.count(index) > 0; });
  }
  bool Has(int index) {
    std::lock_guard lock(mu_);
    return answers_.count(index) > 0;
  }
  Answer Get(int index) {
    std::lock_guard lock(mu_);
    return answers_.at(index);
  }
  int Calls(int index) {
    std::lock_guard lock(mu_);
    return calls_[index];
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::map<int, Answer> answers_;
  std::map<int, int> calls_;
};

HostResolverOptions With(testing::BlockingLookup& lookup, int max_threads = 8) {
  HostResolverOptions o;
  o.lookup = lookup.Fn();
  o.max_threads = max_threads;
  return o;
}

TEST(HostResolverTest, AHungLookupDelaysOnlyItsOwnHost) {
  testing::BlockingLookup lookup;
  lookup.Block("stuck.test");
  HostResolver resolver(With(lookup));
  Answers answers;
  resolver.Resolve("stuck.test", answers.Callback(0));
  ASSERT_TRUE(lookup.WaitStarted("stuck.test"));
  resolver.Resolve("ok.test", answers.Callback(1));
  ASSERT_TRUE(answers.Wait(1));
  ASSERT_TRUE(answers.Get(1).ok());
  EXPECT_EQ(*answers.Get(1), std::vector<std::string>{"127.0.0.1"});
  EXPECT_FALSE(answers.Has(0));
  lookup.Release("stuck.test");
  ASSERT_TRUE(answers.Wait(0));
  EXPECT_TRUE(answers.Get(0).ok());
}

TEST(HostResolverTest, RequestsForAHostBeingLookedUpShareThatLookup) {
  testing::BlockingLookup lookup;
  lookup.Block("a.test");
  HostResolver resolver(With(lookup));
  Answers answers;
  for (int i = 0; i < 5; ++i) resolver.Resolve("a.test", answers.Callback(i));
  ASSERT_TRUE(lookup.WaitStarted("a.test"));
  lookup.Release("a.test");
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(answers.Wait(i));
    EXPECT_TRUE(answers.Get(i).ok());
    EXPECT_EQ(answers.Calls(i), 1);
  }
  EXPECT_EQ(lookup.Count("a.test"), 1);
}

TEST(HostResolverTest, AnAnswerIsKeptForTheTtlThenLookedUpAgain) {
  testing::BlockingLookup lookup;
  FakeClock clock;
  HostResolverOptions o = With(lookup);
  o.ttl = seconds(30);
  o.clock = &clock;
  HostResolver resolver(o);
  Answers answers;
  resolver.Resolve("a.test", answers.Callback(0));
  ASSERT_TRUE(answers.Wait(0));
  resolver.Resolve("a.test", answers.Callback(1));
  EXPECT_TRUE(answers.Has(1));  // from the cache: answered inline
  EXPECT_EQ(lookup.Count("a.test"), 1);
  clock.Advance(seconds(29));
  resolver.Resolve("a.test", answers.Callback(2));
  EXPECT_TRUE(answers.Has(2));
  EXPECT_EQ(lookup.Count("a.test"), 1);
  clock.Advance(seconds(1));
  resolver.Resolve("a.test", answers.Callback(3));
  ASSERT_TRUE(answers.Wait(3));
  EXPECT_EQ(lookup.Count("a.test"), 2);
}

TEST(HostResolverTest, AFailureIsNotKept) {
  testing::BlockingLookup lookup;
  lookup.Fail("bad.test");
  HostResolver resolver(With(lookup));
  Answers answers;
  resolver.Resolve("bad.test", answers.Callback(0));
  ASSERT_TRUE(answers.Wait(0));
  ASSERT_FALSE(answers.Get(0).ok());
  EXPECT_EQ(answers.Get(0).status().code(), StatusCode::kUnavailable);
  EXPECT_EQ(answers.Get(0).status().message(), "Name or service not known");
  resolver.Resolve("bad.test", answers.Callback(1));
  ASSERT_TRUE(answers.Wait(1));
  EXPECT_EQ(lookup.Count("bad.test"), 2);
}

TEST(HostResolverTest, AtMostMaxThreadsLookupsRunAndTheRestWaitTheirTurn) {
  testing::BlockingLookup lookup;
  for (const char* h : {"a.test", "b.test", "c.test"}) lookup.Block(h);
  HostResolver resolver(With(lookup, /*max_threads=*/2));
  Answers answers;
  resolver.Resolve("a.test", answers.Callback(0));
  resolver.Resolve("b.test", answers.Callback(1));
  resolver.Resolve("c.test", answers.Callback(2));
  ASSERT_TRUE(lookup.WaitStarted("a.test"));
  ASSERT_TRUE(lookup.WaitStarted("b.test"));
  EXPECT_EQ(lookup.Count("c.test"), 0);
  lookup.Release("a.test");
  ASSERT_TRUE(lookup.WaitStarted("c.test"));  // the freed thread takes it
  lookup.Release("b.test");
  lookup.Release("c.test");
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(answers.Wait(i));
}

TEST(HostResolverTest, ShutdownAnswersWaitersAtOnceAndDropsTheLateAnswer) {
  testing::BlockingLookup lookup;
  lookup.Block("stuck.test");
  Answers answers;
  {
    HostResolver resolver(With(lookup));
    resolver.Resolve("stuck.test", answers.Callback(0));
    ASSERT_TRUE(lookup.WaitStarted("stuck.test"));
    resolver.Shutdown();  // does not wait for the lookup
    ASSERT_TRUE(answers.Has(0));
    EXPECT_EQ(answers.Get(0).status().message(), "client shutting down");
    resolver.Resolve("other.test", answers.Callback(1));
    ASSERT_TRUE(answers.Has(1));
    EXPECT_EQ(answers.Get(1).status().code(), StatusCode::kUnavailable);
  }  // destroyed while the lookup still runs
  lookup.Release("stuck.test");
  ASSERT_TRUE(lookup.WaitFinished("stuck.test"));
  EXPECT_EQ(answers.Calls(0), 1);
  EXPECT_EQ(lookup.Count("other.test"), 0);
}

TEST(HostResolverTest, SystemLookupFindsLocalhostAndRefusesAnEmptyName) {
  Answer local = SystemLookup("localhost");
  ASSERT_TRUE(local.ok()) << local.status().ToString();
  EXPECT_TRUE(std::any_of(local->begin(), local->end(),
                          [](const std::string& a) { return a == "127.0.0.1" || a == "::1"; }));
  Answer invalid = SystemLookup("");  // refused without asking DNS (none here in CI)
  ASSERT_FALSE(invalid.ok());
  EXPECT_EQ(invalid.status().code(), StatusCode::kUnavailable);
}

}  // namespace
}  // namespace switchyard::httpclient
