// End-to-end tests of the command line: the real binary, exit codes and messages.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <boost/json.hpp>
#include <thread>

#include "fakes/test_http_server.h"
#include "support/daemon_process.h"
#include "support/temp_dir.h"

namespace switchyard::testing {
namespace {

TEST(CliTest, CheckAcceptsTheRepositoryDefaultConfigWithoutSecrets) {
  auto r = RunCli({"check", "-c", std::string(SWITCHYARD_SOURCE_DIR) + "/routes.yaml"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("OK"), std::string::npos);
}

TEST(CliTest, CheckReportsEachKindOfErrorAtItsLineAndColumn) {
  TempDir dir;
  const std::string path = dir.File("bad.yaml");
  dir.Write("bad.yaml",
            "server:\n"
            "  listn: 127.0.0.1:8080\n"  // 2:3 unknown key
            "  threads: many\n"          // 3:12 wrong type
            "storage:\n"
            "  dedupe_window: 5 minutes\n"  // 5:18 bad duration
            "sinks:\n"
            "  phone:\n"
            "    type: pushover\n"
            "    rate: fast\n"  // 9:11 bad rate
            "  phone:\n"        // 10:3 duplicate key
            "    type: file\n"
            "    path: /tmp/x\n"
            "routes:\n"
            "  - name: r\n"
            "    match: ['data.x ~= \"y\"']\n"  // 15 bad matcher
            "    to: [pager]\n");               // 16:10 dangling reference
  auto r = RunCli({"check", "-c", path});
  EXPECT_EQ(r.exit_code, 1);
  auto has = [&](const std::string& prefix) {
    return r.err.find(path + ":" + prefix) != std::string::npos;
  };
  EXPECT_TRUE(has("2:3: ")) << r.err;
  EXPECT_TRUE(has("3:12: ")) << r.err;
  EXPECT_TRUE(has("5:18: ")) << r.err;
  EXPECT_TRUE(has("9:11: ")) << r.err;
  EXPECT_TRUE(has("10:3: ")) << r.err;
  EXPECT_TRUE(has("15:")) << r.err;
  EXPECT_TRUE(has("16:10: ")) << r.err;
  EXPECT_NE(r.err.find("pager"), std::string::npos);
  EXPECT_TRUE(r.out.empty());
}

TEST(CliTest, CheckReportsAYamlSyntaxErrorWithPosition) {
  TempDir dir;
  dir.Write("c.yaml", "server:\n  listen: [unclosed\n");
  auto r = RunCli({"check", "-c", dir.File("c.yaml")});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find(dir.File("c.yaml") + ":"), std::string::npos) << r.err;
}

TEST(CliTest, CheckOfAMissingFileIsAUserError) {
  auto r = RunCli({"check", "-c", "/nonexistent/switchyard.yaml"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("/nonexistent/switchyard.yaml:1:1:"), std::string::npos) << r.err;
}

TEST(CliTest, ConfigPathComesFromTheEnvironmentWhenNotGiven) {
  TempDir dir;
  dir.Write("c.yaml", "server:\n  threads: 1\n");
  auto r = RunCli({"check"}, std::chrono::seconds(30), {"SWITCHYARD_CONFIG=" + dir.File("c.yaml")});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find(dir.File("c.yaml")), std::string::npos);
}

TEST(CliTest, UnknownCommandAndBadArgumentsAreUserErrors) {
  EXPECT_EQ(RunCli({"frobnicate"}).exit_code, 1);
  EXPECT_EQ(RunCli({"dlq", "explode"}).exit_code, 1);
  EXPECT_EQ(RunCli({}).exit_code, 1);
}

// Whatever listens at --admin: an answer that is not the DLQ's shape is exit 2 with the answer
// shown (a list of non-objects aborted the CLI), and a listener that accepts and never answers
// is exit 2 after the 10-s deadline (the blocking calls ignored it and waited forever).
TEST(CliTest, DlqListAgainstSomethingElseIsExitTwoNotACrashOrAHang) {
  TempDir dir;
  dir.Write("c.yaml", "server:\n  threads: 1\n");
  TestHttpServer wrong([](const ReceivedRequest&) { return ServerReply{200, {}, "[\"x\", 1]"}; });
  auto r = RunCli({"dlq", "list", "-c", dir.File("c.yaml"), "--admin",
                   "127.0.0.1:" + std::to_string(wrong.port())});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("unexpected answer"), std::string::npos) << r.err;

  TestHttpServer silent([](const ReceivedRequest&) {
    ServerReply reply;
    reply.delay = std::chrono::seconds(60);
    return reply;
  });
  const auto t0 = std::chrono::steady_clock::now();
  r = RunCli({"dlq", "list", "-c", dir.File("c.yaml"), "--admin",
              "127.0.0.1:" + std::to_string(silent.port())},
             std::chrono::seconds(40));
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("timeout"), std::string::npos) << r.err;
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(30));
  silent.Stop();
}

// A 200 from something that is not the daemon (a proxy's page at --admin) is no proof that a
// replay was done: exit 2 with a one-line excerpt, not the page and exit 0. So for --json views.
TEST(CliTest, AdminCommandsAnsweredWithSomethingElseAreExitTwoWithAShortExcerpt) {
  TempDir dir;
  dir.Write("c.yaml", "server:\n  threads: 1\n");
  const std::string page = "<html>\n<body>" + std::string(5000, 'x') + "</body>\n</html>";
  TestHttpServer proxy([&page](const ReceivedRequest&) { return ServerReply{200, {}, page}; });
  const std::string admin = "127.0.0.1:" + std::to_string(proxy.port());
  for (std::vector<std::string> args : {std::vector<std::string>{"dlq", "replay", "--all"},
                                        {"dlq", "drop", "01J0000000000000000000000A"},
                                        {"queue", "--json"},
                                        {"installations", "--json"}}) {
    args.insert(args.end(), {"-c", dir.File("c.yaml"), "--admin", admin});
    auto r = RunCli(args);
    EXPECT_EQ(r.exit_code, 2) << args[0] << " " << args[1] << ": " << r.err;
    EXPECT_NE(r.err.find("unexpected answer"), std::string::npos) << r.err;
    EXPECT_LT(r.err.size(), 400u) << "an excerpt, not the page";
    EXPECT_EQ(r.out.find("<html>"), std::string::npos) << "not printed as the answer";
  }
}

// A daemon from before ?limit/?after answers every page with its whole list: the CLI must print
// it once, not page forever or print it twice.
TEST(CliTest, DlqListAgainstADaemonWithoutPagesPrintsEachDeadLetterOnce) {
  TempDir dir;
  dir.Write("c.yaml", "server:\n  threads: 1\n");
  boost::json::array whole;
  for (int i = 0; i < 1000; ++i) {  // exactly one CLI page
    char id[32];
    std::snprintf(id, sizeof id, "01J00000000000000000%06d", i);
    whole.push_back(boost::json::object{
        {"id", id}, {"sink", "ops"}, {"route", "r"}, {"attempts", 1}, {"last_error", "HTTP 404"}});
  }
  const std::string body = boost::json::serialize(whole);
  int requests = 0;
  TestHttpServer old([&](const ReceivedRequest&) {
    ++requests;  // the server's one I/O thread
    return ServerReply{200, {{"Content-Type", "application/json"}}, body};
  });
  auto r = RunCli({"dlq", "list", "--json", "-c", dir.File("c.yaml"), "--admin",
                   "127.0.0.1:" + std::to_string(old.port())});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const boost::json::value listed = boost::json::parse(r.out);
  EXPECT_EQ(listed.as_array().size(), 1000u);
  auto table = RunCli({"dlq", "list", "-c", dir.File("c.yaml"), "--admin",
                       "127.0.0.1:" + std::to_string(old.port())});
  ASSERT_EQ(table.exit_code, 0) << table.err;
  EXPECT_EQ(std::count(table.out.begin(), table.out.end(), '\n'), 1001);  // header + 1,000
  old.Stop();
  EXPECT_EQ(requests, 4);  // two pages each: the second did not move forward
}

TEST(CliTest, VersionPrintsTheVersion) {
  auto r = RunCli({"version"});
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_EQ(r.out.rfind("switchyard ", 0), 0u);
}

TEST(CliTest, RunWithABadConfigExitsOneWithTheErrors) {
  TempDir dir;
  dir.Write("c.yaml", "server:\n  nope: 1\n");
  auto r = RunCli({"run", "-c", dir.File("c.yaml")});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find(":2:3:"), std::string::npos) << r.err;
}

// `check` and `run` agree on listen addresses: a host name is a config error (exit 1) in both,
// not a pass from `check` followed by a startup failure (exit 2) from `run`.
TEST(CliTest, AListenHostNameIsAConfigErrorForCheckAndRun) {
  TempDir dir;
  dir.Write("c.yaml",
            "server:\n  listen: example.com:8080\nstorage:\n  path: " + dir.path() + "/var\n");
  for (const char* command : {"check", "run"}) {
    auto r = RunCli({command, "-c", dir.File("c.yaml")});
    EXPECT_EQ(r.exit_code, 1) << command << ": " << r.err;
    EXPECT_NE(r.err.find(":2:11: server.listen: expected"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("the host is not an IP address"), std::string::npos) << r.err;
  }
}

TEST(CliTest, RunOnAPortInUseIsARuntimeFailure) {
  TempDir dir;
  DaemonProcess first(dir.path());
  first.Start("server:\n  listen: 127.0.0.1:0\n  admin_listen: 127.0.0.1:0\nstorage:\n  path: " +
              dir.path() + "/var1\n");
  dir.Write("c.yaml", "server:\n  listen: 127.0.0.1:" + std::to_string(first.port()) +
                          "\n  admin_listen: 127.0.0.1:0\nstorage:\n  path: " + dir.path() +
                          "/var2\n");
  auto r = RunCli({"run", "-c", dir.File("c.yaml")});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("cannot listen"), std::string::npos) << r.err;
}

TEST(CliTest, SecondDaemonOnTheSameStoreIsRefusedClearly) {
  TempDir dir;
  DaemonProcess first(dir.path());
  first.Start("server:\n  listen: 127.0.0.1:0\n  admin_listen: 127.0.0.1:0\nstorage:\n  path: " +
              dir.path() + "/var\n");
  dir.Write("c.yaml",
            "server:\n  listen: 127.0.0.1:0\n  admin_listen: 127.0.0.1:0\nstorage:\n"
            "  path: " +
                dir.path() + "/var\n");
  auto r = RunCli({"run", "-c", dir.File("c.yaml")});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("in use by another process"), std::string::npos) << r.err;
}

// The README's runbook runs `switchyard dlq list -c /etc/switchyard/routes.yaml` in an
// operator's shell, which lacks the daemon's other secrets (${credential:...}, ${env:...}).
// The admin commands loaded and interpolated the whole config, so they failed there (exit 1);
// they read only `server` now.
TEST(CliTest, AdminCommandsNeedOnlyTheServerSectionsSecrets) {
  TempDir dir;
  DaemonProcess daemon(dir.path());
  daemon.Start(
      "server:\n  listen: 127.0.0.1:0\n  admin_listen: 127.0.0.1:0\n"
      "  admin_token: ${env:ADMIN_TOKEN}\nstorage:\n  path: " +
          dir.path() +
          "/var\n"
          "sinks:\n  ops:\n    type: http\n    url: http://127.0.0.1:1/\n"
          "    headers: {Authorization: \"Bearer ${env:SINK_TOKEN}\"}\n",
      {"ADMIN_TOKEN=admin-s3cret", "SINK_TOKEN=sink-s3cret"});
  const std::string admin = "127.0.0.1:" + std::to_string(daemon.admin_port());
  auto r = RunCli({"queue", "-c", daemon.config_path(), "--admin", admin}, std::chrono::seconds(30),
                  {"ADMIN_TOKEN=admin-s3cret"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("ops"), std::string::npos) << r.out;
  // `server` itself is still read in full: its token must resolve.
  r = RunCli({"queue", "-c", daemon.config_path(), "--admin", admin});
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_NE(r.err.find("ADMIN_TOKEN"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace switchyard::testing

namespace switchyard::testing {
namespace {

TEST(SendTestTest, PostsASignedSampleThatTheDaemonAcceptsAndRoutes) {
  TempDir dir;
  DaemonProcess daemon(dir.path());
  daemon.Start("server:\n  listen: 127.0.0.1:0\n  admin_listen: 127.0.0.1:0\nstorage:\n  path: " +
               dir.path() +
               "/var\nsources:\n  sentry:\n    type: sentry\n    client_secret: st-secret\n"
               "sinks:\n  archive:\n    type: file\n    path: " +
               dir.path() +
               "/events.jsonl\n"
               "routes:\n  - name: all\n    to: [archive]\n");
  const std::string url = "http://127.0.0.1:" + std::to_string(daemon.port()) + "/hooks/sentry";
  for (int i = 0; i < 2; ++i) {  // twice: a repeated test is not taken for a duplicate
    auto r =
        RunCli({"send-test", "-c", daemon.config_path(), "sentry", "issue.resolved", "--url", url});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_NE(r.out.find("-> 202"), std::string::npos) << r.out;
  }
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  std::string lines;
  while (std::chrono::steady_clock::now() < deadline) {
    lines = ReadFile(dir.path() + "/events.jsonl");
    if (std::count(lines.begin(), lines.end(), '\n') >= 2) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));  // polling the sink's file
  }
  EXPECT_EQ(std::count(lines.begin(), lines.end(), '\n'), 2);
  EXPECT_NE(lines.find("\"resource\":\"issue\",\"action\":\"resolved\""), std::string::npos)
      << lines;
}

TEST(SendTestTest, UnknownResourceOrSourceIsAUserError) {
  TempDir dir;
  dir.Write("c.yaml", "sources:\n  sentry:\n    type: sentry\n    client_secret: x\n");
  auto r = RunCli({"send-test", "-c", dir.File("c.yaml"), "sentry", "nothing.created", "--url",
                   "http://127.0.0.1:9/hooks/sentry"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("known: installation, issue"), std::string::npos) << r.err;
  auto s = RunCli({"send-test", "-c", dir.File("c.yaml"), "other", "issue.created"});
  EXPECT_EQ(s.exit_code, 1);
}

}  // namespace
}  // namespace switchyard::testing

namespace switchyard::testing {
namespace {

TEST(ManifestTest, DerivesUrlsSubscriptionsAlertActionAndPermissionsFromTheConfig) {
  TempDir dir;
  dir.Write("c.yaml",
            "server:\n  public_url: https://hooks.example.com/\n"
            "sources:\n  sentry:\n    type: sentry\n    client_secret: x\n"
            "  internal:\n    type: sentry\n    client_secret: y\n    token: t0ken\n    org: acme\n"
            "sinks:\n  a:\n    type: file\n    path: /dev/null\n"
            "routes:\n"
            "  - name: issues\n    source: sentry\n    resource: [issue, comment]\n    to: [a]\n"
            "  - name: alerts\n    source: sentry\n    resource: event_alert\n    enrich: [issue]\n"
            "    match: ['$issue.project.slug = \"backend\"']\n    to: [a]\n"
            "  - name: internal-errors\n    source: internal\n    resource: error\n    to: [a]\n");
  auto r = RunCli({"manifest", "-c", dir.File("c.yaml")});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(r.err.empty()) << r.err;
  auto v = boost::json::parse(r.out).as_object();
  auto& sentry = v.at("sources").at("sentry").as_object();
  EXPECT_EQ(sentry.at("webhook_url").as_string(), "https://hooks.example.com/hooks/sentry");
  EXPECT_EQ(sentry.at("redirect_url").as_string(), "https://hooks.example.com/setup/sentry");
  EXPECT_EQ(boost::json::serialize(sentry.at("webhooks")), "[\"comment\",\"issue\"]");
  EXPECT_TRUE(sentry.at("alert_rule_action").as_bool());
  EXPECT_EQ(sentry.at("permissions").at("Issue & Event").as_string(), "Read");
  auto& internal = v.at("sources").at("internal").as_object();
  EXPECT_FALSE(internal.contains("redirect_url"));
  EXPECT_EQ(boost::json::serialize(internal.at("webhooks")), "[\"error\"]");
  EXPECT_FALSE(internal.at("alert_rule_action").as_bool());
  EXPECT_EQ(r.out.find("t0ken"), std::string::npos);  // never a secret
}

TEST(ManifestTest, WarnsWhenPublicUrlIsNotSet) {
  TempDir dir;
  dir.Write("c.yaml", "sources:\n  sentry:\n    type: sentry\n");
  auto r = RunCli({"manifest", "-c", dir.File("c.yaml")});
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_NE(r.err.find("public_url"), std::string::npos);
  EXPECT_NE(r.out.find("http://127.0.0.1:8080/hooks/sentry"), std::string::npos) << r.out;
}

TEST(ManifestTest, AWildcardListenAddressIsShownAsThisMachinesName) {
  TempDir dir;
  char host[256] = {};
  ASSERT_EQ(gethostname(host, sizeof host - 1), 0);
  for (const char* listen : {"'*:9000'", "':9000'", "'0.0.0.0:9000'", "'[::]:9000'"}) {
    dir.Write("c.yaml", std::string("server:\n  listen: ") + listen +
                            "\nsources:\n  sentry:\n    type: sentry\n");
    auto r = RunCli({"manifest", "-c", dir.File("c.yaml")});
    EXPECT_EQ(r.exit_code, 0) << listen << r.err;
    EXPECT_NE(r.out.find("\"http://" + std::string(host) + ":9000/hooks/sentry\""),
              std::string::npos)
        << listen << r.out;
  }
}

}  // namespace
}  // namespace switchyard::testing
