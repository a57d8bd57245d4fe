// Signals that arrive while the daemon starts, before the listener's signal handling is in place.
//
// Startup loads the config, recovers the store (seconds with a large backlog or after a crash),
// starts the dispatcher and binds the listeners. Until HttpServer::HandleSignals runs, SIGHUP
// and SIGTERM have their default action and end the process: a logrotate SIGHUP in that window
// killed the daemon (which systemd counts as a clean exit, so Restart=on-failure does not
// restart it), and a SIGTERM exited 143 rather than 0. These handlers only record the signal;
// the daemon acts on it once it runs (a stop right after start, a reload).
#pragma once

namespace switchyard::app {

struct EarlySignals {
  bool stop = false;    // SIGTERM or SIGINT
  bool reload = false;  // SIGHUP
};

// From now on records SIGTERM, SIGINT and SIGHUP instead of their default action (a second
// SIGTERM or SIGINT takes it). Main thread, before any other thread starts.
void CaptureEarlySignals();

// What was recorded since CaptureEarlySignals (or the last call), and forgets it. Call after the
// real handling is installed, which replaces these handlers: a signal is then either recorded
// here or handled there.
EarlySignals TakeEarlySignals();

}  // namespace switchyard::app
