#include "support/daemon_process.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <regex>
#include <thread>

#include <gtest/gtest.h>

#include "support/temp_dir.h"

extern char** environ;

namespace switchyard::testing {
namespace {

pid_t SpawnProcess(const std::vector<std::string>& args, const std::vector<std::string>& env,
                   const std::string& out_path, const std::string& err_path, bool append) {
  pid_t pid = fork();
  if (pid != 0) return pid;
  int flags = O_WRONLY | O_CREAT | (append ? O_APPEND : O_TRUNC);
  int out = open(out_path.c_str(), flags, 0644);
  int err = open(err_path.c_str(), flags, 0644);
  int devnull = open("/dev/null", O_RDONLY);
  dup2(devnull, 0);
  dup2(out, 1);
  dup2(err, 2);
  for (const auto& e : env) putenv(strdup(e.c_str()));
  std::vector<char*> argv;
  std::string bin = SWITCHYARD_BINARY;
  argv.push_back(bin.data());
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  execv(bin.c_str(), argv.data());
  _exit(127);
}

std::optional<int> WaitPid(pid_t pid, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    int status = 0;
    pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid) return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    if (r < 0) return -1;
    if (std::chrono::steady_clock::now() > deadline) return std::nullopt;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));  // polling a child's exit
  }
}

}  // namespace

RunResult RunCli(const std::vector<std::string>& args, std::chrono::milliseconds timeout,
                 const std::vector<std::string>& env) {
  TempDir tmp;
  pid_t pid = SpawnProcess(args, env, tmp.File("out"), tmp.File("err"), false);
  auto code = WaitPid(pid, timeout);
  if (!code) {
    kill(pid, SIGKILL);
    WaitPid(pid, std::chrono::seconds(5));
  }
  RunResult r;
  r.exit_code = code.value_or(-1);
  r.out = ReadFile(tmp.File("out"));
  r.err = ReadFile(tmp.File("err"));
  return r;
}

DaemonProcess::~DaemonProcess() {
  if (pid_ > 0) {
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      ADD_FAILURE() << "daemon died before the test ended: "
                    << (WIFSIGNALED(status) ? "signal " + std::to_string(WTERMSIG(status))
                                            : "exit " + std::to_string(WEXITSTATUS(status)));
      pid_ = -1;
    } else {
      Kill();
    }
  }
  if (::testing::Test::HasFailure()) {
    fprintf(stderr, "---- daemon log (%s) ----\n%s---- end of daemon log ----\n", dir_.c_str(),
            ReadFile(dir_ + "/daemon.log").c_str());
  }
}

void DaemonProcess::Start(const std::string& config_yaml, std::vector<std::string> env) {
  std::ofstream(config_path()) << config_yaml;
  env_ = std::move(env);
  Spawn();
}

void DaemonProcess::Restart() {
  ASSERT_LE(pid_, 0) << "daemon still running";
  Spawn();
}

void DaemonProcess::Spawn() {
  log_offset_ = ReadFile(dir_ + "/daemon.log").size();
  pid_ = SpawnProcess({"run", "-c", config_path()}, env_, dir_ + "/daemon.out",
                      dir_ + "/daemon.log", true);
  port_ = admin_port_ = 0;
  // The "listening" lines in either log format (SWITCHYARD_LOG_FORMAT=text or json).
  static const std::regex kListening(
      R"re((?:listener=|"listener":")(public|admin)"?[ ,](?:addr=|"addr":")[^ \n"]*:(\d+))re");
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (std::chrono::steady_clock::now() < deadline) {
    std::string log = Log();
    for (std::sregex_iterator it(log.begin(), log.end(), kListening), end; it != end; ++it) {
      uint16_t p = static_cast<uint16_t>(std::stoi((*it)[2]));
      ((*it)[1] == "public" ? port_ : admin_port_) = p;
    }
    if (port_ && admin_port_ && log.find("switchyard started") != std::string::npos) return;
    if (auto code = WaitPid(pid_, std::chrono::milliseconds(0))) {
      pid_ = -1;
      FAIL() << "daemon exited with " << *code << " during start; log:\n" << log;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  FAIL() << "daemon did not report its listeners; log:\n" << Log();
}

int DaemonProcess::Terminate(std::chrono::milliseconds timeout) {
  if (pid_ <= 0) return -1;
  kill(pid_, SIGTERM);
  auto code = WaitPid(pid_, timeout);
  if (!code) {
    Kill();
    return -1;
  }
  pid_ = -1;
  return *code;
}

void DaemonProcess::Kill() {
  if (pid_ <= 0) return;
  kill(pid_, SIGKILL);
  WaitPid(pid_, std::chrono::seconds(10));
  pid_ = -1;
}

void DaemonProcess::Signal(int signo) {
  if (pid_ > 0) kill(pid_, signo);
}

std::optional<int> DaemonProcess::WaitExit(std::chrono::milliseconds timeout) {
  if (pid_ <= 0) return std::nullopt;
  auto code = WaitPid(pid_, timeout);
  if (code) pid_ = -1;
  return code;
}

std::string DaemonProcess::Log() const {
  std::string all = ReadFile(dir_ + "/daemon.log");
  return all.size() >= log_offset_ ? all.substr(log_offset_) : all;
}

bool DaemonProcess::WaitForLog(const std::string& needle, std::chrono::milliseconds timeout) const {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (Log().find(needle) != std::string::npos) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return false;
}

}  // namespace switchyard::testing
