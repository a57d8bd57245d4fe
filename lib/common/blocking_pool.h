// BlockingPool: a few threads for work that may block (file writes, RocksDB scans for the admin
// API), so it never runs on I/O threads. Tasks run in submission order per thread. Thread-safe.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace switchyard {

class BlockingPool {
 public:
  explicit BlockingPool(int threads);
  ~BlockingPool();  // Stop()
  // Runs the tasks already queued (and those they post), then joins the threads. Idempotent;
  // call it before anything the tasks use goes away. A task posted after the threads have
  // finished never runs (it is destroyed with the pool). Not from a pool thread; one caller.
  BlockingPool(const BlockingPool&) = delete;
  BlockingPool& operator=(const BlockingPool&) = delete;

  void Stop();

  void Post(std::function<void()> task);

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> tasks_;  // GUARDED_BY(mu_)
  bool stopping_ = false;                    // GUARDED_BY(mu_)
  std::vector<std::thread> threads_;
};

}  // namespace switchyard
