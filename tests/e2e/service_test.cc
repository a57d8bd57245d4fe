// End-to-end tests of running as a service: sd_notify protocol, reload by SIGHUP and by the admin
// API, and the admin token.
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <set>
#include <sstream>
#include <string>
#include <thread>

#include "support/daemon_process.h"
#include "support/http_client.h"
#include "support/sentry.h"
#include "support/temp_dir.h"

namespace switchyard::testing {
namespace {

constexpr char kSecret[] = "service-e2e-secret";

// A fake service manager: the AF_UNIX datagram socket that $NOTIFY_SOCKET names.
class NotifySocket {
 public:
  explicit NotifySocket(const std::string& path) : path_(path) {
    fd_ = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path.c_str());
    EXPECT_EQ(bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0) << strerror(errno);
  }
  ~NotifySocket() {
    close(fd_);
    unlink(path_.c_str());
  }
  // Waits for a datagram containing `line` (e.g. "READY=1"); messages before it are consumed.
  bool WaitFor(const std::string& line, std::chrono::milliseconds timeout) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return false;
      pollfd p{fd_, POLLIN, 0};
      if (poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
      char buf[4096];
      ssize_t n = recv(fd_, buf, sizeof buf, 0);
      if (n <= 0) continue;
      std::string msg(buf, static_cast<size_t>(n));
      received_ += msg + "|";
      if (("\n" + msg + "\n").find("\n" + line + "\n") != std::string::npos) return true;
    }
  }
  const std::string& received() const { return received_; }

 private:
  std::string path_;
  int fd_ = -1;
  std::string received_;
};

class ServiceTest : public ::testing::Test {
 protected:
  std::string Config(const std::string& routes, const std::string& server_extra = "") {
    return "server:\n  listen: 127.0.0.1:0\n  admin_listen: 127.0.0.1:0\n" + server_extra +
           "storage:\n  path: " + dir_.path() + "/var\n"
           "sources:\n  sentry:\n    type: sentry\n    client_secret: " + kSecret + "\n"
           "sinks:\n  a:\n    type: file\n    path: " + dir_.path() + "/a.jsonl\n"
           "  b:\n    type: file\n    path: " + dir_.path() + "/b.jsonl\n"
           "routes:\n" + routes;
  }
  int Post(const std::string& body) {
    auto r = Fetch(daemon_.port(), "POST", "/hooks/sentry",
                   SentryHeaders("issue", SentrySignature(kSecret, body)), body);
    return r ? r->status : 0;
  }
  bool WaitForFile(const std::string& name, const std::string& needle) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (std::chrono::steady_clock::now() < deadline) {
      if (ReadFile(dir_.File(name)).find(needle) != std::string::npos) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));  // polling a file the daemon writes
    }
    return false;
  }
  std::string Metrics() {
    auto m = Fetch(daemon_.admin_port(), "GET", "/metrics");
    return m ? m->body : "";
  }

  TempDir dir_;
  DaemonProcess daemon_{dir_.path()};
};

TEST_F(ServiceTest, NotifySocketGetsReadyReloadingStoppingAndWatchdogPings) {
  NotifySocket notify(dir_.File("notify.sock"));
  daemon_.Start(Config("  - name: r\n    to: [a]\n"),
                {"NOTIFY_SOCKET=" + dir_.File("notify.sock"), "WATCHDOG_USEC=200000"});
  EXPECT_TRUE(notify.WaitFor("READY=1", std::chrono::seconds(10))) << notify.received();
  EXPECT_TRUE(notify.WaitFor("WATCHDOG=1", std::chrono::seconds(10))) << notify.received();
  daemon_.Signal(SIGHUP);
  EXPECT_TRUE(notify.WaitFor("RELOADING=1", std::chrono::seconds(10))) << notify.received();
  EXPECT_TRUE(notify.WaitFor("READY=1", std::chrono::seconds(10))) << notify.received();
  daemon_.Signal(SIGTERM);
  EXPECT_TRUE(notify.WaitFor("STOPPING=1", std::chrono::seconds(10))) << notify.received();
  auto code = daemon_.WaitExit(std::chrono::seconds(20));
  ASSERT_TRUE(code);
  EXPECT_EQ(*code, 0);
}

TEST_F(ServiceTest, ThreadsCarryTheirRoleInTheirNames) {
  daemon_.Start(Config("  - name: all\n    to: [a]\n"));
  std::set<std::string> names;
  const std::string tasks = "/proc/" + std::to_string(daemon_.pid()) + "/task";
  for (const auto& entry : std::filesystem::directory_iterator(tasks)) {
    std::string comm = ReadFile(entry.path().string() + "/comm");
    while (!comm.empty() && comm.back() == '\n') comm.pop_back();
    names.insert(comm);
  }
  for (const char* role : {"sy-io", "sy-store-write", "sy-dispatch", "sy-blocking"}) {
    EXPECT_TRUE(names.count(role))
        << role << " missing; threads: " << ::testing::PrintToString(names);
  }
}

// The process holds secrets: it writes no core file, and its store is not readable by other
// users whatever the umask (outside systemd's UMask=0077: make run, Docker, Kubernetes).
TEST_F(ServiceTest, NoCoreFileAndAStoreOnlyItsOwnerCanEnter) {
  const mode_t old_umask = umask(022);
  daemon_.Start(Config("  - name: all\n    to: [a]\n"));
  umask(old_umask);
  const std::string limits = ReadFile("/proc/" + std::to_string(daemon_.pid()) + "/limits");
  const auto line = limits.find("Max core file size");
  ASSERT_NE(line, std::string::npos) << limits;
  std::istringstream fields(limits.substr(line + strlen("Max core file size")));
  std::string soft, hard;
  fields >> soft >> hard;
  EXPECT_EQ(soft, "0") << limits;
  EXPECT_EQ(hard, "0") << limits;
  struct stat st {};
  ASSERT_EQ(stat((dir_.path() + "/var").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 077, 0u) << std::oct << st.st_mode;
}

TEST_F(ServiceTest, SighupWithAGoodConfigSwapsTheRoutes) {
  daemon_.Start(Config("  - name: r\n    to: [a]\n"));
  ASSERT_EQ(Post("{\"action\":\"created\",\"n\":\"first\"}"), 202);
  ASSERT_TRUE(WaitForFile("a.jsonl", "first"));
  dir_.Write("config.yaml", Config("  - name: r2\n    to: [b]\n"));
  daemon_.Signal(SIGHUP);
  ASSERT_TRUE(daemon_.WaitForLog("config reloaded"));
  ASSERT_EQ(Post("{\"action\":\"created\",\"n\":\"second\"}"), 202);
  ASSERT_TRUE(WaitForFile("b.jsonl", "second"));
  EXPECT_EQ(ReadFile(dir_.File("a.jsonl")).find("second"), std::string::npos);
  EXPECT_NE(Metrics().find("switchyard_config_reloads_total{outcome=\"success\"} 1"),
            std::string::npos);
}

TEST_F(ServiceTest, SighupWithABadConfigKeepsTheRunningOne) {
  daemon_.Start(Config("  - name: r\n    to: [a]\n"));
  dir_.Write("config.yaml", "routes:\n  - name: r\n    to: [nope]\n");
  daemon_.Signal(SIGHUP);
  ASSERT_TRUE(daemon_.WaitForLog("config reload rejected"));
  EXPECT_NE(daemon_.Log().find("nope"), std::string::npos);
  ASSERT_EQ(Post("{\"action\":\"created\",\"n\":\"still\"}"), 202);
  EXPECT_TRUE(WaitForFile("a.jsonl", "still"));
  EXPECT_NE(Metrics().find("switchyard_config_reloads_total{outcome=\"failure\"} 1"),
            std::string::npos);
}

TEST_F(ServiceTest, AdminReloadAnswers400WithTheErrorsOr200) {
  daemon_.Start(Config("  - name: r\n    to: [a]\n"));
  dir_.Write("config.yaml", "server:\n  bogus: 1\n");
  auto bad = Fetch(daemon_.admin_port(), "POST", "/admin/reload");
  ASSERT_TRUE(bad);
  EXPECT_EQ(bad->status, 400);
  EXPECT_NE(bad->body.find("config.yaml:2:3"), std::string::npos) << bad->body;
  dir_.Write("config.yaml", Config("  - name: r2\n    to: [b]\n"));
  auto good = Fetch(daemon_.admin_port(), "POST", "/admin/reload");
  ASSERT_TRUE(good);
  EXPECT_EQ(good->status, 200);
  ASSERT_EQ(Post("{\"action\":\"created\",\"n\":\"after\"}"), 202);
  EXPECT_TRUE(WaitForFile("b.jsonl", "after"));
}

// The contract says POST /admin/reload is the same as SIGHUP, which reopens the file sinks
// (logrotate) whether or not the config on disk is valid; the endpoint only reloaded, so with a
// config being edited (rejected) a postrotate that called it left the daemon writing to the
// rotated file.
TEST_F(ServiceTest, AdminReloadReopensFilesAsSighupDoesEvenWhenTheConfigIsRejected) {
  daemon_.Start(Config("  - name: r\n    to: [a]\n"));
  ASSERT_EQ(Post("{\"action\":\"created\",\"n\":\"before\"}"), 202);
  ASSERT_TRUE(WaitForFile("a.jsonl", "before"));
  std::filesystem::rename(dir_.File("a.jsonl"), dir_.File("a.jsonl.1"));
  dir_.Write("config.yaml", "server:\n  bogus: 1\n");  // mid-edit
  auto r = Fetch(daemon_.admin_port(), "POST", "/admin/reload");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 400);
  ASSERT_EQ(Post("{\"action\":\"created\",\"n\":\"after\"}"), 202);
  EXPECT_TRUE(WaitForFile("a.jsonl", "after")) << "written to a new file, not the rotated one";
  EXPECT_EQ(ReadFile(dir_.File("a.jsonl.1")).find("after"), std::string::npos);
}

TEST_F(ServiceTest, AdminEndpointsRequireTheTokenWhenOneIsSet) {
  daemon_.Start(Config("  - name: r\n    to: [a]\n", "  admin_token: s3cr3t-admin\n"));
  auto none = Fetch(daemon_.admin_port(), "GET", "/admin/queue");
  auto wrong = Fetch(daemon_.admin_port(), "GET", "/admin/queue",
                     {{"Authorization", "Bearer wrong-token"}});
  auto right = Fetch(daemon_.admin_port(), "GET", "/admin/queue",
                     {{"Authorization", "Bearer s3cr3t-admin"}});
  ASSERT_TRUE(none && wrong && right);
  EXPECT_EQ(none->status, 401);
  EXPECT_EQ(wrong->status, 401);
  EXPECT_EQ(right->status, 200);
  EXPECT_EQ(none->body.find("s3cr3t"), std::string::npos);
  // Probes and metrics stay open (load balancers and Prometheus scrape them).
  EXPECT_EQ(Fetch(daemon_.admin_port(), "GET", "/healthz")->status, 200);
  EXPECT_EQ(Fetch(daemon_.admin_port(), "GET", "/metrics")->status, 200);
  EXPECT_EQ(daemon_.Log().find("s3cr3t-admin"), std::string::npos);
}

}  // namespace
}  // namespace switchyard::testing
