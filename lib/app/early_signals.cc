#include "app/early_signals.h"

#include <atomic>
#include <csignal>
#include <initializer_list>

namespace switchyard::app {
namespace {

// Lock-free atomics, so safe in a handler that may run on any of the process's threads.
std::atomic<int> stop_seen{0};
std::atomic<int> reload_seen{0};
static_assert(std::atomic<int>::is_always_lock_free);

// Async-signal-safe: sets a flag. A second SIGTERM or SIGINT while starting takes the default
// action (Ctrl-C twice ends a start that is taking too long).
void Record(int signo) {
  if (signo == SIGHUP) {
    reload_seen.store(1);
  } else if (stop_seen.exchange(1) != 0) {
    std::signal(signo, SIG_DFL);
    std::raise(signo);
  }
}

}  // namespace

void CaptureEarlySignals() {
  struct sigaction sa {};
  sa.sa_handler = Record;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;  // a read or write the signal interrupts goes on
  for (int signo : {SIGTERM, SIGINT, SIGHUP}) sigaction(signo, &sa, nullptr);
}

EarlySignals TakeEarlySignals() {
  EarlySignals e;
  e.stop = stop_seen.exchange(0) != 0;
  e.reload = reload_seen.exchange(0) != 0;
  return e;
}

}  // namespace switchyard::app
