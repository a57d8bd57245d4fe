#include "common/blocking_pool.h"

#include <gtest/gtest.h>

#include <atomic>
#include <future>
#include <thread>
#include <vector>

namespace switchyard {
namespace {

// The daemon stops the admin pool before it closes the store: Stop() must have run every task
// already queued (and any they post) when it returns, so none reads the store afterwards.
TEST(BlockingPoolTest, StopRunsEveryQueuedTaskBeforeItReturns) {
  BlockingPool pool(1);
  std::promise<void> started;
  std::promise<void> gate;
  std::shared_future<void> open = gate.get_future().share();
  std::atomic<int> ran{0};
  pool.Post([&, open] {
    started.set_value();
    open.wait();  // a long task (a DLQ replay) still running when Stop() is called
    ran.fetch_add(1);
  });
  for (int i = 0; i < 10; ++i) pool.Post([&] { ran.fetch_add(1); });
  pool.Post([&] { pool.Post([&] { ran.fetch_add(1); }); });  // posts from a task still run
  started.get_future().wait();
  std::thread stopper([&] { pool.Stop(); });
  gate.set_value();
  stopper.join();
  EXPECT_EQ(ran.load(), 12);
  pool.Stop();  // idempotent, and the destructor stops it again
}

}  // namespace
}  // namespace switchyard
