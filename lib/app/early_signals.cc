#include "app/early_signals.h"

#include <csignal>
#include <initializer_list>

namespace switchyard::app {
namespace {

volatile std::sig_atomic_t stop_seen = 0;
volatile std::sig_atomic_t reload_seen = 0;

// Async-signal-safe: stores a flag.
void Record(int signo) {
  if (signo == SIGHUP) {
    reload_seen = 1;
  } else {
    stop_seen = 1;
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
  e.stop = stop_seen != 0;
  e.reload = reload_seen != 0;
  stop_seen = 0;
  reload_seen = 0;
  return e;
}

}  // namespace switchyard::app
