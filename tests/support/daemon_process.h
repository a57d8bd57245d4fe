// Runs the real switchyard binary as a child process for end-to-end tests. The config is written
// to a temp dir; both listeners bind port 0 and the harness learns the ports from the daemon's
// "listening" log lines (stderr goes to a file in the temp dir, so nothing can block on a pipe).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace switchyard::testing {

struct RunResult {
  int exit_code = -1;  // -1 if killed by a signal
  std::string out;
  std::string err;
};

// Runs `switchyard ARGS...` to completion (with a deadline) and captures stdout/stderr.
RunResult RunCli(const std::vector<std::string>& args,
                 std::chrono::milliseconds timeout = std::chrono::seconds(30),
                 const std::vector<std::string>& env = {});

class DaemonProcess {
 public:
  // `dir` holds config.yaml, the log and (by default) the store. Does not start the daemon.
  explicit DaemonProcess(std::string dir) : dir_(std::move(dir)) {}
  ~DaemonProcess();

  // Writes `config_yaml` to dir/config.yaml and starts the daemon; waits until both listeners
  // are up (or fails the test). Extra environment variables as NAME=VALUE.
  void Start(const std::string& config_yaml, std::vector<std::string> env = {});
  // Starts again with the same config (e.g. after Kill/Terminate), on new ports.
  void Restart();

  // SIGTERM, then waits for exit; returns the exit code (-1 if killed by a signal or timed out).
  int Terminate(std::chrono::milliseconds timeout = std::chrono::seconds(30));
  // SIGKILL and reap.
  void Kill();
  // Sends a signal without waiting.
  void Signal(int signo);
  // Waits for exit; nullopt on timeout.
  std::optional<int> WaitExit(std::chrono::milliseconds timeout);
  bool running() const { return pid_ > 0; }
  pid_t pid() const { return pid_; }

  uint16_t port() const { return port_; }
  uint16_t admin_port() const { return admin_port_; }
  std::string Log() const;
  const std::string& dir() const { return dir_; }
  std::string config_path() const { return dir_ + "/config.yaml"; }
  // Waits until the log contains `needle` (after the current start); false on timeout.
  bool WaitForLog(const std::string& needle,
                  std::chrono::milliseconds timeout = std::chrono::seconds(10)) const;

 private:
  void Spawn();
  std::string dir_;
  std::vector<std::string> env_;
  pid_t pid_ = -1;
  uint16_t port_ = 0;
  uint16_t admin_port_ = 0;
  size_t log_offset_ = 0;  // where the current run's log starts
};

}  // namespace switchyard::testing
