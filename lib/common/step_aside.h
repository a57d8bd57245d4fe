// The wakeup batching shared by the threads of the durable path (the store's writer, the
// dispatcher, the HTTP client's workers).
#pragma once

#include <sched.h>

#include <mutex>

namespace switchyard {

// Call once after being woken from an idle wait by another thread's hand-off, holding no lock
// that thread needs. Under load the threads share a core, and the waker was most likely
// preempted by the wakeup in the middle of a round that hands off more of the same work: the
// yield lets it finish the round, so this thread takes the whole round in one pass (one commit,
// scan or write instead of one per item). On a core with nothing else runnable it returns at
// once.
inline void StepAsideAfterWakeup() { sched_yield(); }

// The same for a thread woken from a condition-variable wait: `lock` (held on entry, the lock the
// waker takes to hand off more) is released for the yield and held again on return.
inline void StepAsideAfterWakeup(std::unique_lock<std::mutex>& lock) {
  lock.unlock();
  StepAsideAfterWakeup();
  lock.lock();
}

}  // namespace switchyard
