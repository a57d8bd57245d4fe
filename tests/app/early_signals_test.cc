#include "app/early_signals.h"

#include <gtest/gtest.h>

#include <csignal>

namespace switchyard::app {
namespace {

// Until the listener's handling is installed, SIGHUP and SIGTERM are recorded, not fatal: this
// test process would end at the first raise() otherwise.
TEST(EarlySignalsTest, SignalsDuringStartupAreRecordedNotFatal) {
  CaptureEarlySignals();
  EarlySignals none = TakeEarlySignals();
  EXPECT_FALSE(none.stop);
  EXPECT_FALSE(none.reload);

  std::raise(SIGHUP);
  EarlySignals hup = TakeEarlySignals();
  EXPECT_TRUE(hup.reload);
  EXPECT_FALSE(hup.stop);

  std::raise(SIGTERM);  // one: a second would take the default action
  EarlySignals term = TakeEarlySignals();
  EXPECT_TRUE(term.stop);
  EXPECT_FALSE(term.reload);
  EXPECT_FALSE(TakeEarlySignals().stop) << "taken once";
  std::raise(SIGINT);
  EXPECT_TRUE(TakeEarlySignals().stop);

  for (int signo : {SIGTERM, SIGINT, SIGHUP}) std::signal(signo, SIG_DFL);
}

}  // namespace
}  // namespace switchyard::app
