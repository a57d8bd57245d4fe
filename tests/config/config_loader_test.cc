#include <gtest/gtest.h>

#include <fstream>
#include <string>

#include "config/config.h"
#include "config/interpolate.h"
#include "config_test_util.h"

namespace switchyard::config {
namespace {

using std::chrono::hours;
using std::chrono::milliseconds;
using std::chrono::minutes;
using std::chrono::seconds;
using testing::Dump;
using testing::ExpectOneError;
using testing::Load;
using testing::ScopedEnv;
using testing::TempDir;

// The example of CONTRACT.md §3, verbatim.
constexpr std::string_view kContractExample = R"yaml(server:
  listen: 127.0.0.1:8080          # webhooks, OAuth redirect
  admin_listen: 127.0.0.1:9090    # /metrics, /healthz, /readyz, /admin/*
  admin_token: ""                 # when set, /admin/* requires "Authorization: Bearer <token>"
  threads: 0                      # 0 = number of cores
  max_body_bytes: 1048576
  header_timeout: 10s             # whole request head must arrive within this
  idle_timeout: 60s               # keep-alive connections idle longer are closed
  public_url: ""                  # e.g. https://hooks.example.com — used by `manifest`
  shutdown_timeout: 15s

storage:
  path: ./var                     # RocksDB and key file live here
  sync: true                      # true: 2xx only after the write is fsync'd (group commit)
  dedupe_window: 1h               # same source + identical body within the window = duplicate; 0 = off
  dlq_retention: 7d

sources:
  sentry:                         # the name; webhooks at /hooks/sentry, OAuth redirect at /setup/sentry
    type: sentry
    client_id: ${env:SENTRY_CLIENT_ID:-}
    client_secret: ${env:SENTRY_CLIENT_SECRET:-}
    api_url: https://sentry.io    # base of /api/0/...; tests point it at a fake
    verify_install: true          # PUT status=installed after the token exchange
    token: ""                     # set for an INTERNAL integration: static token, no OAuth
    org: ""                       # internal integration: the organization slug (for API paths)
    refresh_before: 1h            # refresh a token this long before it expires
    after_install_url: https://sentry.io/settings/   # where /setup sends the browser on success
    max_clock_skew: 0             # 0 = do not check Sentry-Hook-Timestamp (Sentry does not sign it)

sinks:
  phone:
    type: pushover
    token: ${env:PUSHOVER_TOKEN:-}
    user: ${env:PUSHOVER_USER:-}
    api_url: https://api.pushover.net/1/messages.json
    rate: 2/s                     # token bucket per sink (any sink type)
    concurrency: 2                # in-flight deliveries per sink (any sink type)
  ops:
    type: http
    url: https://ops.example.com/ingest
    method: POST
    headers: {Authorization: "Bearer ${env:OPS_TOKEN:-}"}
    timeout: 5s
    concurrency: 16
    retry: {max_attempts: 5}      # per-sink override of the retry block below
  archive:
    type: file
    path: ./var/events.jsonl

retry:                            # defaults for every sink
  initial: 1s
  multiplier: 2
  max_delay: 10m
  jitter: 0.2
  max_attempts: 12
  max_age: 24h

routes:                           # in order; EVERY matching route delivers, unless one says stop: true
  - name: backend-issues-to-phone
    source: sentry
    resource: issue               # the Sentry-Hook-Resource header; a string or a list
    action: created               # the payload's "action"; a string or a list
    match:                        # all must hold
      - 'data.issue.project.name = "Backend"'
    to:
      - sink: phone
        title: '{{ data.issue.title }}'
        message: '{{ data.issue.culprit }}'
        url: '{{ data.issue.web_url }}'
        url_title: Issue Details
        priority: 0
  - name: alerts-for-backend
    source: sentry
    resource: event_alert
    enrich: [issue]               # fetch the issue from the Sentry API with the installation's token
    match:
      - '$issue.project.slug = "backend"'
    to: [ops]
  - name: archive-everything
    to: [archive]
)yaml";

// A minimal valid config to append routes to (sinks on lines 2-7).
constexpr std::string_view kSinks = R"yaml(sinks:
  phone:
    type: pushover
  archive:
    type: file
    path: ./x.jsonl
  ops: {type: http, url: "http://127.0.0.1:1/"}
sources:
  sentry: {type: sentry}
)yaml";

class ConfigLoaderTest : public ::testing::Test {
 protected:
  // The variables the examples read with :- defaults, unset for every test.
  ScopedEnv sentry_id_{"SENTRY_CLIENT_ID", nullptr};
  ScopedEnv sentry_secret_{"SENTRY_CLIENT_SECRET", nullptr};
  ScopedEnv pushover_token_{"PUSHOVER_TOKEN", nullptr};
  ScopedEnv pushover_user_{"PUSHOVER_USER", nullptr};
  ScopedEnv ops_token_{"OPS_TOKEN", nullptr};
};

TEST_F(ConfigLoaderTest, LoadsTheContractExampleIntoEveryField) {
  LoadResult r = LoadConfigFromString(std::string(kContractExample), "routes.yaml");
  ASSERT_TRUE(r.errors.empty()) << Dump(r);
  ASSERT_NE(r.config, nullptr);
  const Config& c = *r.config;
  EXPECT_EQ(c.file, "routes.yaml");

  EXPECT_EQ(c.server.listen, "127.0.0.1:8080");
  EXPECT_EQ(c.server.admin_listen, "127.0.0.1:9090");
  EXPECT_EQ(c.server.admin_token, "");
  EXPECT_EQ(c.server.threads, 0);
  EXPECT_EQ(c.server.max_body_bytes, 1048576u);
  EXPECT_EQ(c.server.header_timeout, seconds(10));
  EXPECT_EQ(c.server.idle_timeout, seconds(60));
  EXPECT_EQ(c.server.public_url, "");
  EXPECT_EQ(c.server.shutdown_timeout, seconds(15));

  EXPECT_EQ(c.storage.path, "./var");
  EXPECT_TRUE(c.storage.sync);
  EXPECT_EQ(c.storage.dedupe_window, hours(1));
  EXPECT_EQ(c.storage.dlq_retention, hours(24 * 7));

  ASSERT_EQ(c.sources.size(), 1u);
  const SourceConfig& s = c.sources[0];
  EXPECT_EQ(s.name, "sentry");
  EXPECT_EQ(s.type, "sentry");
  EXPECT_EQ(s.client_id, "");
  EXPECT_EQ(s.client_secret, "");
  EXPECT_EQ(s.api_url, "https://sentry.io");
  EXPECT_TRUE(s.verify_install);
  EXPECT_EQ(s.token, "");
  EXPECT_EQ(s.org, "");
  EXPECT_EQ(s.refresh_before, hours(1));
  EXPECT_EQ(s.after_install_url, "https://sentry.io/settings/");
  EXPECT_EQ(s.max_clock_skew, milliseconds(0));
  EXPECT_EQ(c.FindSource("sentry"), &c.sources[0]);
  EXPECT_EQ(c.FindSource("nope"), nullptr);

  ASSERT_EQ(c.sinks.size(), 3u);
  const SinkConfig* phone = c.FindSink("phone");
  ASSERT_NE(phone, nullptr);
  EXPECT_EQ(phone->type, "pushover");
  EXPECT_EQ(phone->line, 32);
  EXPECT_DOUBLE_EQ(phone->rate.per_second, 2);
  EXPECT_DOUBLE_EQ(phone->rate.burst, 2);
  EXPECT_EQ(phone->concurrency, 2u);
  const auto& pushover = std::get<PushoverSinkConfig>(phone->settings);
  EXPECT_EQ(pushover.token, "");
  EXPECT_EQ(pushover.user, "");
  EXPECT_EQ(pushover.api_url, "https://api.pushover.net/1/messages.json");

  const SinkConfig* ops = c.FindSink("ops");
  ASSERT_NE(ops, nullptr);
  EXPECT_EQ(ops->type, "http");
  EXPECT_DOUBLE_EQ(ops->rate.per_second, 0);  // unlimited
  EXPECT_EQ(ops->concurrency, 16u);
  EXPECT_EQ(ops->retry.max_attempts, 5u);
  EXPECT_FALSE(ops->retry.initial.has_value());
  const auto& http = std::get<HttpSinkConfig>(ops->settings);
  EXPECT_EQ(http.url, "https://ops.example.com/ingest");
  EXPECT_EQ(http.method, "POST");
  ASSERT_EQ(http.headers.size(), 1u);
  EXPECT_EQ(http.headers[0].first, "Authorization");
  EXPECT_EQ(http.headers[0].second, "Bearer ");
  EXPECT_EQ(http.timeout, seconds(5));

  const SinkConfig* archive = c.FindSink("archive");
  ASSERT_NE(archive, nullptr);
  EXPECT_EQ(archive->type, "file");
  EXPECT_EQ(archive->concurrency, 64u);  // a file sink's default (kFileDefaultConcurrency)
  EXPECT_EQ(std::get<FileSinkConfig>(archive->settings).path, "./var/events.jsonl");

  EXPECT_EQ(c.retry.initial, seconds(1));
  EXPECT_DOUBLE_EQ(c.retry.multiplier, 2);
  EXPECT_EQ(c.retry.max_delay, minutes(10));
  EXPECT_DOUBLE_EQ(c.retry.jitter, 0.2);
  EXPECT_EQ(c.retry.max_attempts, 12u);
  EXPECT_EQ(c.retry.max_age, hours(24));
  RetryConfig ops_retry = ops->retry.ApplyTo(c.retry);
  EXPECT_EQ(ops_retry.max_attempts, 5u);
  EXPECT_EQ(ops_retry.max_delay, minutes(10));

  ASSERT_EQ(c.routes.size(), 3u);
  const RouteConfig& r0 = c.routes[0];
  EXPECT_EQ(r0.name, "backend-issues-to-phone");
  EXPECT_EQ(r0.line, 60);
  EXPECT_EQ(r0.source, "sentry");
  EXPECT_EQ(r0.resources, std::vector<std::string>{"issue"});
  EXPECT_EQ(r0.actions, std::vector<std::string>{"created"});
  ASSERT_EQ(r0.match.size(), 1u);
  EXPECT_EQ(r0.match[0].text(), "data.issue.project.name = \"Backend\"");
  EXPECT_TRUE(r0.match_any.empty());
  EXPECT_TRUE(r0.enrich.empty());
  EXPECT_FALSE(r0.stop);
  ASSERT_EQ(r0.to.size(), 1u);
  EXPECT_EQ(r0.to[0].sink, "phone");
  ASSERT_EQ(r0.to[0].fields.size(), 5u);
  EXPECT_EQ(r0.to[0].fields.at("title").text(), "{{ data.issue.title }}");
  EXPECT_EQ(r0.to[0].fields.at("message").text(), "{{ data.issue.culprit }}");
  EXPECT_EQ(r0.to[0].fields.at("url").text(), "{{ data.issue.web_url }}");
  EXPECT_EQ(r0.to[0].fields.at("url_title").text(), "Issue Details");
  EXPECT_TRUE(r0.to[0].fields.at("url_title").IsLiteral());
  EXPECT_EQ(r0.to[0].fields.at("priority").text(), "0");

  const RouteConfig& r1 = c.routes[1];
  EXPECT_EQ(r1.name, "alerts-for-backend");
  EXPECT_EQ(r1.resources, std::vector<std::string>{"event_alert"});
  EXPECT_TRUE(r1.actions.empty());
  EXPECT_EQ(r1.enrich, std::vector<std::string>{"issue"});
  ASSERT_EQ(r1.match.size(), 1u);
  EXPECT_TRUE(r1.match[0].path().NeedsIssue());
  ASSERT_EQ(r1.to.size(), 1u);
  EXPECT_EQ(r1.to[0].sink, "ops");
  EXPECT_TRUE(r1.to[0].fields.empty());

  const RouteConfig& r2 = c.routes[2];
  EXPECT_EQ(r2.name, "archive-everything");
  EXPECT_FALSE(r2.source.has_value());
  ASSERT_EQ(r2.to.size(), 1u);
  EXPECT_EQ(r2.to[0].sink, "archive");
}

TEST_F(ConfigLoaderTest, EmptyFileIsAValidConfigWithDefaults) {
  for (std::string_view text : {"", "# only a comment\n", "~\n", "server:\nroutes:\n"}) {
    LoadResult r = Load(text);
    ASSERT_TRUE(r.errors.empty()) << Dump(r);
    ASSERT_NE(r.config, nullptr);
    EXPECT_TRUE(r.config->sources.empty());
    EXPECT_TRUE(r.config->sinks.empty());
    EXPECT_TRUE(r.config->routes.empty());
    EXPECT_EQ(r.config->server.listen, "127.0.0.1:8080");
    EXPECT_EQ(r.config->server.max_header_bytes, 16384u);
    EXPECT_EQ(r.config->server.body_timeout, seconds(30));
    EXPECT_EQ(r.config->server.max_connections, 10000u);
    EXPECT_EQ(r.config->server.max_json_depth, 128u);
    EXPECT_EQ(r.config->retry.max_attempts, 12u);
  }
}

TEST_F(ConfigLoaderTest, LoadsTheAdditionalServerKeys) {
  LoadResult r = Load(
      "server:\n  listen: '[::1]:0'\n  admin_listen: localhost:0\n  max_header_bytes: 8192\n"
      "  body_timeout: 1m30s\n  max_connections: 50\n  max_json_depth: 32\n  threads: 3\n");
  ASSERT_TRUE(r.errors.empty()) << Dump(r);
  EXPECT_EQ(r.config->server.listen, "[::1]:0");
  EXPECT_EQ(r.config->server.admin_listen, "localhost:0");
  EXPECT_EQ(r.config->server.max_header_bytes, 8192u);
  EXPECT_EQ(r.config->server.body_timeout, seconds(90));
  EXPECT_EQ(r.config->server.max_connections, 50u);
  EXPECT_EQ(r.config->server.max_json_depth, 32u);
  EXPECT_EQ(r.config->server.threads, 3);
}

// The listener binds literal addresses only, so `check` must refuse what `run` would (a host
// name among them) with the value's position, instead of passing it to fail at startup.
TEST_F(ConfigLoaderTest, ListenAcceptsExactlyTheAddressesTheListenerBinds) {
  for (const char* ok : {"127.0.0.1:0", "localhost:1", "'*:2'", "':3'", "0.0.0.0:4", "'[::]:5'",
                         "'[::1]:6'", "'[::ffff:127.0.0.1]:7'", "127.0.0.1:65535"}) {
    LoadResult r = Load(std::string("server:\n  listen: ") + ok + "\n");
    EXPECT_TRUE(r.errors.empty()) << ok << "\n" << Dump(r);
  }
  ExpectOneError(Load("server:\n  listen: example.com:8080\n"), 2, 11,
                 "server.listen: expected IPV4:PORT, [IPV6]:PORT, localhost:PORT or *:PORT with "
                 "PORT in 0..65535, got \"example.com:8080\": the host is not an IP address "
                 "(host names are not resolved");
  ExpectOneError(Load("server:\n  admin_listen: my-host:9090\n"), 2, 17,
                 "server.admin_listen: expected IPV4:PORT");
  ExpectOneError(Load("server:\n  listen: 127.1:80\n"), 2, 11, "the host is not an IP address");
  ExpectOneError(Load("server:\n  listen: '[127.0.0.1]:80'\n"), 2, 11,
                 "the host in brackets is not an IPv6 address");
  ExpectOneError(Load("server:\n  listen: '[fe80::1%lo]:80'\n"), 2, 11,
                 "the host in brackets is not an IPv6 address");
  ExpectOneError(Load("server:\n  listen: 127.0.0.1\n"), 2, 11, "no \":PORT\"");
  ExpectOneError(Load("server:\n  listen: 127.0.0.1:+80\n"), 2, 11, "the port is not in 0..65535");
  ExpectOneError(Load("server:\n  listen: 127.0.0.1:080000\n"), 2, 11,
                 "the port is not in 0..65535");
}

// Pushover allows at most 2 concurrent connections: that is a pushover sink's default. A file
// sink's lines in flight share one fdatasync: it defaults to 64. Others default to 4, and an
// explicit value always wins.
TEST_F(ConfigLoaderTest, ConcurrencyDefaultsFollowTheSinkType) {
  LoadResult r = Load(
      "sinks:\n  phone: {type: pushover}\n  pager: {type: pushover, concurrency: 3}\n"
      "  ops: {type: http, url: 'http://127.0.0.1:1/'}\n  archive: {type: file, path: x}\n"
      "  slow: {type: file, path: y, concurrency: 1}\n");
  ASSERT_TRUE(r.errors.empty()) << Dump(r);
  EXPECT_EQ(r.config->FindSink("phone")->concurrency, 2u);
  EXPECT_EQ(r.config->FindSink("pager")->concurrency, 3u);
  EXPECT_EQ(r.config->FindSink("ops")->concurrency, 4u);
  EXPECT_EQ(r.config->FindSink("archive")->concurrency, 64u);
  EXPECT_EQ(r.config->FindSink("slow")->concurrency, 1u);
}

TEST_F(ConfigLoaderTest, LoadsTheAdditionalStorageKeys) {
  LoadResult defaults = Load("");
  ASSERT_TRUE(defaults.errors.empty()) << Dump(defaults);
  EXPECT_EQ(defaults.config->storage.min_free_bytes, 128u << 20);
  EXPECT_EQ(defaults.config->storage.max_disk_bytes, 0u);  // unlimited
  LoadResult r = Load("storage:\n  min_free_bytes: 0\n  max_disk_bytes: 10737418240\n");
  ASSERT_TRUE(r.errors.empty()) << Dump(r);
  EXPECT_EQ(r.config->storage.min_free_bytes, 0u);
  EXPECT_EQ(r.config->storage.max_disk_bytes, 10737418240u);
  ExpectOneError(Load("storage:\n  max_disk_bytes: -1\n"), 2, 19, "storage.max_disk_bytes");
  ExpectOneError(Load("storage:\n  max_disk_bytes: 10GB\n"), 2, 19, "storage.max_disk_bytes");
}

TEST_F(ConfigLoaderTest, ReportsUnknownKeyAtItsLineAndColumn) {
  LoadResult r = Load("server:\n  listen: 127.0.0.1:1\n  listn: 127.0.0.1:2\n");
  ExpectOneError(r, 3, 3, "unknown key \"listn\" in server (known: listen, admin_listen, ");
  EXPECT_EQ(r.errors[0].ToString().rfind("test.yaml:3:3: unknown key", 0), 0u);
}

TEST_F(ConfigLoaderTest, ReportsUnknownTopLevelAndNestedKeys) {
  ExpectOneError(Load("servers: {}\n"), 1, 1, "unknown key \"servers\" at top level");
  ExpectOneError(Load("sinks:\n  a:\n    type: file\n    path: x\n    url: http://x/\n"), 5, 5,
                 "unknown key \"url\" in sinks.a (known for type file: type, rate, concurrency, "
                 "retry, path)");
  ExpectOneError(Load("retry:\n  tries: 3\n"), 2, 3, "unknown key \"tries\" in retry");
  ExpectOneError(Load("sinks:\n  a: {type: file, path: x, retry: {max: 1}}\n"), 2, 36,
                 "unknown key \"max\" in sinks.a.retry");
}

TEST_F(ConfigLoaderTest, ReportsDuplicateKeyAtTheSecondWithTheFirstLine) {
  LoadResult r = Load(
      "sinks:\n"
      "  phone:\n"
      "    type: pushover\n"
      "  phone:\n"
      "    type: file\n");
  ExpectOneError(r, 4, 3, "sinks: duplicate key \"phone\" (first at line 2)");
  ExpectOneError(Load("server:\n  threads: 1\n  threads: 2\n"), 3, 3,
                 "duplicate key \"threads\" (first at line 2)");
  ExpectOneError(Load("storage: {}\nstorage: {}\n"), 2, 1,
                 "duplicate key \"storage\" (first at line 1)");
}

// Each limit has a ceiling the code can honour: Beast's head limit is 32 bits (4 GiB truncated to
// 0, and every request got 431), a body is one in-memory string and one RocksDB value, and
// simdjson allocates its depth stacks up front.
TEST_F(ConfigLoaderTest, ServerLimitsHaveCeilings) {
  ExpectOneError(Load("server:\n  max_header_bytes: 4294967296\n"), 2, 21,
                 "server.max_header_bytes: expected an integer in 1..1048576, got \"4294967296\"");
  ExpectOneError(Load("server:\n  max_body_bytes: 268435457\n"), 2, 19,
                 "server.max_body_bytes: expected an integer in 1..268435456, got \"268435457\"");
  ExpectOneError(Load("server:\n  max_json_depth: 1025\n"), 2, 19,
                 "server.max_json_depth: expected an integer in 1..1024, got \"1025\"");
  LoadResult r = Load(
      "server:\n  max_header_bytes: 1048576\n  max_body_bytes: 268435456\n"
      "  max_json_depth: 1024\n");
  ASSERT_NE(r.config, nullptr) << r.errors.at(0).message;
  EXPECT_EQ(r.config->server.max_header_bytes, 1048576u);
  EXPECT_EQ(r.config->server.max_body_bytes, 268435456u);
  EXPECT_EQ(r.config->server.max_json_depth, 1024u);
}

TEST_F(ConfigLoaderTest, ReportsWrongTypesAtTheValue) {
  ExpectOneError(Load("server:\n  listen: {a: 1}\n"), 2, 11,
                 "server.listen: expected IPV4:PORT, [IPV6]:PORT, localhost:PORT or *:PORT with "
                 "PORT in 0..65535, got a map");
  ExpectOneError(Load("server:\n  threads: abc\n"), 2, 12,
                 "server.threads: expected an integer in 0..4096, got \"abc\"");
  ExpectOneError(Load("server:\n  max_connections: -1\n"), 2, 20,
                 "server.max_connections: expected an integer in 1..4294967295, got \"-1\"");
  ExpectOneError(Load("server:\n  max_body_bytes: 0\n"), 2, 19,
                 "server.max_body_bytes: expected an integer in 1..268435456, got \"0\"");
  ExpectOneError(Load("storage:\n  sync: yes\n"), 2, 9,
                 "storage.sync: expected true or false, got \"yes\"");
  ExpectOneError(Load("storage:\n  path: [a]\n"), 2, 9,
                 "storage.path: expected a non-empty "
                 "string, got a list");
  ExpectOneError(Load("server:\n  admin_token:\n"), 2, 3,
                 "server.admin_token: expected a string, got nothing (null)");
  ExpectOneError(Load("retry:\n  jitter: 1.5\n"), 2, 11,
                 "retry.jitter: expected a number in [0, 1], got \"1.5\"");
  ExpectOneError(Load("retry:\n  multiplier: 0.5\n"), 2, 15,
                 "retry.multiplier: expected a number >= 1, got \"0.5\"");
  ExpectOneError(Load("sources: [a, b]\n"), 1, 10, "sources: expected a map, got a list");
  ExpectOneError(Load("- a\n"), 1, 1, "expected a map at top level, got a list");
}

TEST_F(ConfigLoaderTest, ReportsBadDurationWithTheAcceptedForms) {
  LoadResult r = Load("server:\n  header_timeout: 10 sec\n");
  ExpectOneError(r, 2, 19,
                 "server.header_timeout: expected a duration like 250ms, 5s, 10m, 8h, 7d or 1h30m, "
                 "got \"10 sec\"");
  ExpectOneError(Load("retry:\n  initial: 0\n"), 2, 12, "retry.initial: must be greater than 0");
  ExpectOneError(Load("storage:\n  dedupe_window: 5\n"), 2, 18, "(or 0), got \"5\"");
  ExpectOneError(Load("retry:\n  max_age: 36501d\n"), 2, 12,
                 "retry.max_age: must be at most 36500d (100 years), got \"36501d\"");
  ExpectOneError(Load("retry:\n  max_age: 106751991167d\n"), 2, 12, "must be at most 36500d");
  EXPECT_TRUE(Load("retry:\n  max_age: 36500d\n").config) << "the bound itself is allowed";
}

TEST_F(ConfigLoaderTest, ReportsBadRate) {
  LoadResult r = Load("sinks:\n  phone:\n    type: pushover\n    rate: fast\n");
  ExpectOneError(r, 4, 11, "sinks.phone.rate: expected a rate like \"2/s\", got \"fast\"");
  ExpectOneError(Load("sinks:\n  a: {type: file, path: x, rate: 0/s}\n"), 2, 34,
                 "expected a rate like");
  // Positive, but it rounds to 0 (a subnormal), which would read as unlimited.
  ExpectOneError(Load("sinks:\n  a: {type: file, path: x, rate: 1e-321/h}\n"), 2, 34,
                 "expected a rate like");
}

TEST_F(ConfigLoaderTest, ComputesRateAndBurst) {
  LoadResult r = Load(
      "sinks:\n"
      "  a: {type: file, path: x, rate: 30/m}\n"
      "  b: {type: file, path: y, rate: 2.5/s}\n"
      "  c: {type: file, path: z, rate: 7200/h}\n");
  ASSERT_TRUE(r.errors.empty()) << Dump(r);
  EXPECT_DOUBLE_EQ(r.config->sinks[0].rate.per_second, 0.5);
  EXPECT_DOUBLE_EQ(r.config->sinks[0].rate.burst, 1);
  EXPECT_DOUBLE_EQ(r.config->sinks[1].rate.per_second, 2.5);
  EXPECT_DOUBLE_EQ(r.config->sinks[1].rate.burst, 3);
  EXPECT_DOUBLE_EQ(r.config->sinks[2].rate.per_second, 2);
}

TEST_F(ConfigLoaderTest, ReportsDanglingSinkReference) {
  std::string yaml = std::string(kSinks) +
                     "routes:\n"
                     "  - name: r\n"
                     "    to:\n"
                     "      - sink: pager\n";
  ExpectOneError(Load(yaml), 13, 15, "routes[0].to[0].sink: unknown sink \"pager\"");
  yaml = std::string(kSinks) + "routes:\n  - name: r\n    to: [archive, pager]\n";
  ExpectOneError(Load(yaml), 12, 19, "routes[0].to[1]: unknown sink \"pager\"");
}

TEST_F(ConfigLoaderTest, ReportsDanglingSourceReference) {
  std::string yaml =
      std::string(kSinks) + "routes:\n  - name: r\n    source: github\n    to: [ops]\n";
  ExpectOneError(Load(yaml), 12, 13, "routes[0].source: unknown source \"github\"");
}

// An internal integration's token without its org built /api/0/organizations//issues/<id>/:
// every enrichment was a 404 and a dead letter.
TEST_F(ConfigLoaderTest, AnInternalIntegrationTokenNeedsItsOrg) {
  ExpectOneError(Load("sources:\n  internal:\n    type: sentry\n    token: t0ken\n"), 2, 3,
                 "sources.internal: \"token\" (an internal integration) needs \"org\", the "
                 "organization slug its API calls name");
  LoadResult ok =
      Load("sources:\n  internal:\n    type: sentry\n    token: t0ken\n    org: acme\n");
  EXPECT_TRUE(ok.errors.empty()) << Dump(ok);
}

TEST_F(ConfigLoaderTest, ReportsBadMatcherAtTheFaultInTheScalar) {
  // Plain, single-quoted and double-quoted scalars: the column points into the scalar.
  std::string yaml = std::string(kSinks) +
                     "routes:\n"
                     "  - name: r\n"
                     "    match:\n"
                     "      - data.x BAD \"y\"\n"
                     "      - 'data.x BAD \"y\"'\n"
                     "      - \"data.x BAD \\\"y\\\"\"\n"
                     "    to: [ops]\n";
  LoadResult r = Load(yaml);
  ASSERT_EQ(r.errors.size(), 3u) << Dump(r);
  EXPECT_EQ(r.errors[0].line, 13);
  EXPECT_EQ(r.errors[0].column, 16);
  EXPECT_EQ(r.errors[1].line, 14);
  EXPECT_EQ(r.errors[1].column, 17);
  EXPECT_EQ(r.errors[2].line, 15);
  EXPECT_EQ(r.errors[2].column, 17);
  for (const ConfigError& e : r.errors) {
    EXPECT_NE(e.message.find("invalid matcher: "), std::string::npos) << e.ToString();
  }
  EXPECT_EQ(r.errors[1].message.rfind("routes[0].match[1]: invalid matcher: ", 0), 0u);
}

TEST_F(ConfigLoaderTest, ReportsBadTemplateAtTheFaultInTheScalar) {
  std::string yaml = std::string(kSinks) +
                     "routes:\n"
                     "  - name: r\n"
                     "    to:\n"
                     "      - sink: phone\n"
                     "        title: '{{ data.x | BAD }}'\n";
  ExpectOneError(Load(yaml), 14, 29, "routes[0].to[0].title: invalid template: ");
  yaml = std::string(kSinks) +
         "routes:\n"
         "  - name: r\n"
         "    to:\n"
         "      - sink: ops\n"
         "        body: |\n"
         "          {{ data.x | BAD }}\n";
  // A block scalar: at the fault, inside the block.
  ExpectOneError(Load(yaml), 15, 23, "routes[0].to[0].body: invalid template: ");
  yaml = std::string(kSinks) +
         "routes:\n"
         "  - name: r\n"
         "    to:\n"
         "      - sink: ops\n"
         "        body: >-\n"
         "          first line\n"
         "\n"
         "            {{ data.ok }} then\n"
         "          {{ data.x | BAD }}\n";
  ExpectOneError(Load(yaml), 18, 23, "routes[0].to[0].body: invalid template: ");
}

// CONTRACT.md §3 lists `body` among an http sink's own settings: the default body template of
// its route targets, compiled at load like theirs.
TEST_F(ConfigLoaderTest, AnHttpSinkTakesItsOwnBodyTemplate) {
  LoadResult r = Load(
      "sinks:\n"
      "  ops:\n"
      "    type: http\n"
      "    url: http://127.0.0.1:1/\n"
      "    body: '{\"title\": {{ data.issue.title | json }}, \"env\": \"{{ $header.x-env }}\"}'\n"
      "routes:\n"
      "  - {name: r, to: [ops]}\n");
  ASSERT_TRUE(r.errors.empty()) << Dump(r);
  const auto& http = std::get<HttpSinkConfig>(r.config->FindSink("ops")->settings);
  ASSERT_TRUE(http.body.has_value());
  EXPECT_EQ(http.body->text(),
            "{\"title\": {{ data.issue.title | json }}, \"env\": \"{{ $header.x-env }}\"}");
  EXPECT_EQ(r.config->kept_headers.back(), "x-env") << "the header it reads is stored";
  EXPECT_FALSE(
      std::get<HttpSinkConfig>(
          Load("sinks:\n  ops: {type: http, url: 'http://h/'}\n").config->FindSink("ops")->settings)
          .body.has_value());

  ExpectOneError(Load("sinks:\n  ops:\n    type: http\n    url: http://h/\n"
                      "    body: '{{ data.x | BAD }}'\n"),
                 5, 24, "sinks.ops.body: invalid template: ");
  ExpectOneError(Load("sinks:\n  ops:\n    type: http\n    url: http://h/\n"
                      "    body: '{{ $issue.title }}'\n"),
                 5, 11, "sinks.ops.body: reads $issue.* but a sink's own templates cannot");
  ExpectOneError(Load("sinks:\n  ops:\n    type: http\n    url: http://h/\n"
                      "    body: '{{ $header.authorization }}'\n"),
                 5, 11, "a credential");
  ExpectOneError(Load("sinks:\n  a: {type: file, path: x, body: 'x'}\n"), 2, 28,
                 "unknown key \"body\" in sinks.a");
}

// An http sink's url and header values may be templates (CONTRACT.md §3 "Templates"): compiled
// at load with errors at their position; the scheme and host stay literal.
TEST_F(ConfigLoaderTest, AnHttpSinksUrlAndHeaderValuesMayBeTemplates) {
  LoadResult r = Load(
      "sinks:\n"
      "  ops:\n"
      "    type: http\n"
      "    url: 'http://h/ok/{{ data.issue.id }}?team={{ $header.x-team | urlencode }}'\n"
      "    headers: {X-Issue: 'id {{ data.issue.id }}', X-Team: backend}\n");
  ASSERT_TRUE(r.errors.empty()) << Dump(r);
  const auto& http = std::get<HttpSinkConfig>(r.config->FindSink("ops")->settings);
  EXPECT_EQ(http.url, "http://h/ok/{{ data.issue.id }}?team={{ $header.x-team | urlencode }}");
  ASSERT_TRUE(http.url_template.has_value());
  EXPECT_EQ(http.url_template->text(), http.url);
  ASSERT_EQ(http.header_templates.size(), 1u);
  EXPECT_EQ(http.header_templates.at("X-Issue").text(), "id {{ data.issue.id }}");
  ASSERT_EQ(http.headers.size(), 2u);
  EXPECT_EQ(http.headers[1], (std::pair<std::string, std::string>{"X-Team", "backend"}));
  EXPECT_EQ(r.config->kept_headers.back(), "x-team");
  LoadResult literal = Load("sinks:\n  ops: {type: http, url: 'http://h/plain'}\n");
  ASSERT_TRUE(literal.errors.empty()) << Dump(literal);
  EXPECT_FALSE(std::get<HttpSinkConfig>(literal.config->FindSink("ops")->settings).url_template);

  const std::string head = "sinks:\n  ops:\n    type: http\n";
  ExpectOneError(Load(head + "    url: 'http://h/ok/{{ data.issue.id | BAD }}'\n"), 4, 42,
                 "sinks.ops.url: invalid template: ");
  ExpectOneError(Load(head + "    url: 'http://{{ data.host }}/x'\n"), 4, 18,
                 "sinks.ops.url: a placeholder in the scheme or host; templates may only fill in "
                 "the path, query or fragment");
  ExpectOneError(Load(head + "    url: 'http://h:80{{ data.port }}/x'\n"), 4, 22,
                 "a placeholder in the scheme or host");
  ExpectOneError(Load(head + "    url: '{{ data.url }}'\n"), 4, 11,
                 "a placeholder in the scheme or host");
  ExpectOneError(Load(head + "    url: 'http://h/{{ $issue.id }}'\n"), 4, 10,
                 "sinks.ops.url: reads $issue.* but a sink's own templates cannot");
  ExpectOneError(Load(head + "    url: 'http://h/x y/{{ data.id }}'\n"), 4, 10,
                 "sinks.ops.url: expected an http:// or https:// URL");
  ExpectOneError(Load(head + "    url: 'http://u:p@h/{{ data.id }}'\n"), 4, 10,
                 "sinks.ops.url: invalid URL: userinfo is not supported");
  ExpectOneError(Load(head + "    url: http://h/\n    headers: {X-Id: '{{ data.id | BAD }}'}\n"), 5,
                 35, "sinks.ops.headers.X-Id: invalid template: ");
}

TEST_F(ConfigLoaderTest, HttpSinkHeaderNamesMustBeTokens) {
  const std::string head = "sinks:\n  ops:\n    type: http\n    url: http://h/\n";
  ExpectOneError(Load(head + "    headers: {'X Team': a}\n"), 5, 15,
                 "sinks.ops.headers: invalid header name \"X Team\"");
  ExpectOneError(Load(head + "    headers: {'X:Team': a}\n"), 5, 15, "invalid header name");
  ExpectOneError(Load(head + "    headers: {'X-T\u00e9am': a}\n"), 5, 15, "invalid header name");
  LoadResult ok = Load(head + "    headers: {\"X-Az09!#$%&'*+.^_`|~\": a}\n");
  ASSERT_TRUE(ok.errors.empty()) << Dump(ok);
}

// The HTTP client sets Host from the URL and refuses a caller's: every delivery of such a sink
// was a dead letter, after `check` had said OK.
TEST_F(ConfigLoaderTest, AnHttpSinksHostHeaderIsAConfigError) {
  const std::string head = "sinks:\n  ops:\n    type: http\n    url: http://10.0.0.5/in\n";
  ExpectOneError(Load(head + "    headers: {host: ops.example.com}\n"), 5, 15,
                 "sinks.ops.headers: header \"host\" is set from the url");
}

// "At least one holds" of an empty list never holds; the router sent every event there.
TEST_F(ConfigLoaderTest, AnEmptyMatchAnyIsAConfigError) {
  const std::string head = std::string(kSinks) + "routes:\n  - name: r\n    to: [ops]\n";
  ExpectOneError(Load(head + "    match_any: []\n"), 13, 16,
                 "an empty list matches nothing; omit the key to match any");
  LoadResult ok = Load(head + "    match: []\n");  // "all of none hold": always
  ASSERT_TRUE(ok.errors.empty()) << Dump(ok);
}

// A delivery records its route and sink, not its target: two targets naming one sink both
// rendered the second's fields (both pushes to the iPad, none to the iPhone).
TEST_F(ConfigLoaderTest, ASinkNamedTwiceInOneRouteIsAConfigError) {
  ExpectOneError(
      Load(std::string(kSinks) + "routes:\n  - name: r\n    to:\n      - {sink: ops, body: a}\n"
                                 "      - {sink: ops, body: b}\n"),
      14, 9, "sink \"ops\" is already a target of this route");
}

TEST_F(ConfigLoaderTest, ReportsFieldsTheSinkTypeDoesNotTake) {
  std::string yaml = std::string(kSinks) +
                     "routes:\n"
                     "  - name: r\n"
                     "    to:\n"
                     "      - {sink: archive, title: x}\n"
                     "      - {sink: ops, title: x}\n";
  LoadResult r = Load(yaml);
  ASSERT_EQ(r.errors.size(), 2u) << Dump(r);
  EXPECT_EQ(r.errors[0].line, 13);
  EXPECT_EQ(r.errors[0].column, 25);
  EXPECT_NE(r.errors[0].message.find("file sink \"archive\" takes no fields"), std::string::npos);
  EXPECT_EQ(r.errors[1].line, 14);
  EXPECT_NE(r.errors[1].message.find("unknown key \"title\" in routes[0].to[1] (fields of http "
                                     "sink \"ops\": sink, body)"),
            std::string::npos);
}

TEST_F(ConfigLoaderTest, ReportsMissingRequiredKeys) {
  ExpectOneError(Load("sinks:\n  phone:\n    rate: 1/s\n"), 2, 3,
                 "sinks.phone: missing required key \"type\"");
  ExpectOneError(Load("sinks:\n  ops:\n    type: http\n"), 2, 3,
                 "sinks.ops: missing required key \"url\"");
  ExpectOneError(Load("sinks:\n  a:\n    type: file\n"), 2, 3,
                 "sinks.a: missing required key \"path\"");
  ExpectOneError(Load("sources:\n  s:\n    client_id: x\n"), 2, 3,
                 "sources.s: missing required key \"type\"");
  ExpectOneError(Load(std::string(kSinks) + "routes:\n  - name: r\n"), 11, 5,
                 "routes[0]: missing required key \"to\"");
  ExpectOneError(Load(std::string(kSinks) + "routes:\n  - to: [ops]\n"), 11, 5,
                 "routes[0]: missing required key \"name\"");
  ExpectOneError(Load(std::string(kSinks) + "routes:\n  - name: r\n    to: []\n"), 12, 9,
                 "routes[0].to: must list at least one sink");
  ExpectOneError(Load(std::string(kSinks) + "routes:\n  - name: r\n    to:\n      - {title: x}\n"),
                 13, 9, "routes[0].to[0]: missing required key \"sink\"");
}

TEST_F(ConfigLoaderTest, RejectsEmergencyPriorityWithoutRetryAndExpire) {
  std::string yaml = std::string(kSinks) +
                     "routes:\n"
                     "  - name: r\n"
                     "    to:\n"
                     "      - sink: phone\n"
                     "        priority: 2\n"
                     "        retry: 60\n";
  ExpectOneError(Load(yaml), 14, 19,
                 "routes[0].to[0].priority: priority 2 (emergency) requires \"expire\"");
  yaml = std::string(kSinks) + "routes:\n  - name: r\n    to: [{sink: phone, priority: 2}]\n";
  ExpectOneError(Load(yaml), 12, 34, "requires \"retry\" and \"expire\"");
  yaml = std::string(kSinks) +
         "routes:\n  - name: r\n    to: [{sink: phone, priority: 2, retry: 30, expire: 10800}]\n";
  LoadResult ok = Load(yaml);
  EXPECT_TRUE(ok.errors.empty()) << Dump(ok);
}

TEST_F(ConfigLoaderTest, ChecksLiteralPushoverNumbers) {
  std::string yaml = std::string(kSinks) +
                     "routes:\n"
                     "  - name: r\n"
                     "    to: [{sink: phone, priority: 3}]\n"
                     "  - name: s\n"
                     "    to: [{sink: phone, priority: 2, retry: 10, expire: 99999}]\n"
                     "  - name: t\n"
                     "    to: [{sink: phone, priority: '{{ data.p }}'}]\n";
  LoadResult r = Load(yaml);
  ASSERT_EQ(r.errors.size(), 3u) << Dump(r);
  EXPECT_NE(r.errors[0].message.find("routes[0].to[0].priority: expected an integer in -2..2, "
                                     "got \"3\""),
            std::string::npos);
  EXPECT_NE(r.errors[1].message.find("routes[1].to[0].retry: expected an integer >= 30"),
            std::string::npos);
  EXPECT_NE(r.errors[2].message.find("routes[1].to[0].expire: expected an integer in 1..10800"),
            std::string::npos);
}

TEST_F(ConfigLoaderTest, ReportsYamlSyntaxErrorAtItsPosition) {
  LoadResult r = Load("server:\n  listen: [127.0.0.1:1\nstorage: {}\n");
  ASSERT_EQ(r.errors.size(), 1u) << Dump(r);
  EXPECT_EQ(r.errors[0].line, 3);
  EXPECT_EQ(r.errors[0].column, 8);
  EXPECT_NE(r.errors[0].message.find("YAML syntax error: "), std::string::npos);
  EXPECT_EQ(r.config, nullptr);
}

TEST_F(ConfigLoaderTest, ReportsEveryErrorInFileOrder) {
  LoadResult r = Load(
      "routes:\n"
      "  - name: r\n"
      "    to: [nowhere]\n"
      "server:\n"
      "  threads: -1\n"
      "  bogus: 1\n"
      "sinks:\n"
      "  a: {type: smtp}\n");
  ASSERT_EQ(r.errors.size(), 4u) << Dump(r);
  EXPECT_EQ(r.errors[0].line, 3);
  EXPECT_NE(r.errors[0].message.find("unknown sink \"nowhere\""), std::string::npos);
  EXPECT_EQ(r.errors[1].line, 5);
  EXPECT_EQ(r.errors[2].line, 6);
  EXPECT_EQ(r.errors[3].line, 8);
  EXPECT_NE(r.errors[3].message.find("unknown sink type \"smtp\""), std::string::npos);
  EXPECT_EQ(r.config, nullptr);
}

TEST_F(ConfigLoaderTest, InterpolatesEnvironmentVariables) {
  ScopedEnv token("SWITCHYARD_TEST_TOKEN", "tok-123");
  ScopedEnv empty("SWITCHYARD_TEST_EMPTY", "");
  ScopedEnv threads("SWITCHYARD_TEST_THREADS", "7");
  ScopedEnv unset("SWITCHYARD_TEST_UNSET", nullptr);
  LoadResult r = Load(
      "server:\n"
      "  admin_token: ${env:SWITCHYARD_TEST_TOKEN}\n"
      "  threads: ${env:SWITCHYARD_TEST_THREADS}\n"
      "  public_url: \"https://${env:SWITCHYARD_TEST_UNSET:-hooks.example.com}/x\"\n"
      "sinks:\n"
      "  ops:\n"
      "    type: http\n"
      "    url: http://127.0.0.1:1/\n"
      "    headers:\n"
      "      Authorization: Bearer ${env:SWITCHYARD_TEST_TOKEN} ${env:SWITCHYARD_TEST_EMPTY:-d}\n"
      "      X-Empty: \"${env:SWITCHYARD_TEST_UNSET:-}\"\n"
      "      X-Literal: $${env:SWITCHYARD_TEST_TOKEN} costs $5\n");
  ASSERT_TRUE(r.errors.empty()) << Dump(r);
  EXPECT_EQ(r.config->server.admin_token, "tok-123");
  EXPECT_EQ(r.config->server.threads, 7);
  EXPECT_EQ(r.config->server.public_url, "https://hooks.example.com/x");
  const auto& headers = std::get<HttpSinkConfig>(r.config->sinks[0].settings).headers;
  ASSERT_EQ(headers.size(), 3u);
  EXPECT_EQ(headers[0].second, "Bearer tok-123 d");
  EXPECT_EQ(headers[1].second, "");
  EXPECT_EQ(headers[2].second, "${env:SWITCHYARD_TEST_TOKEN} costs $5");
}

// An empty admin_token turns admin authentication off: only when written so, never because a
// secret file was empty or a variable unset (the deploy/ configs read it from a file and bind
// admin_listen on every interface).
TEST_F(ConfigLoaderTest, AnAdminTokenThatExpandsToNothingIsAnErrorNotAuthenticationOff) {
  ScopedEnv unset("SWITCHYARD_TEST_UNSET", nullptr);
  ScopedEnv empty("SWITCHYARD_TEST_EMPTY", "");
  ExpectOneError(
      Load("server:\n  admin_token: ${env:SWITCHYARD_TEST_UNSET:-}\n"), 2, 16,
      "server.admin_token: expanded to an empty string (${env:SWITCHYARD_TEST_UNSET:-}), "
      "which would turn admin authentication off; write admin_token: \"\" to mean that");
  TempDir dir;
  const std::string file = dir.Write("empty-token", "\n");
  LoadResult r = Load("server:\n  admin_token: ${file:" + file + "}\n");
  ASSERT_EQ(r.errors.size(), 1u) << Dump(r);
  EXPECT_NE(r.errors[0].message.find("expanded to an empty string"), std::string::npos);
  LoadResult off = Load("server:\n  admin_token: \"\"\n");
  ASSERT_TRUE(off.errors.empty()) << Dump(off);
  EXPECT_EQ(off.config->server.admin_token, "");
  ExpectOneError(Load("server:\n  admin_token: \"tok \"\n"), 2, 16,
                 "server.admin_token: must not start or end with a space or hold control "
                 "characters");
  LoadResult words = Load("server:\n  admin_token: \"correct horse battery\"\n");
  ASSERT_TRUE(words.errors.empty()) << Dump(words);
  EXPECT_EQ(words.config->server.admin_token, "correct horse battery");
  ScopedEnv newline("SWITCHYARD_TEST_NL", "tok-456\n");  // set from a file by a shell
  LoadResult nl = Load("server:\n  admin_token: ${env:SWITCHYARD_TEST_NL}\n");
  ASSERT_TRUE(nl.errors.empty()) << Dump(nl);
  EXPECT_EQ(nl.config->server.admin_token, "tok-456");
  ScopedEnv spaced("SWITCHYARD_TEST_TOKEN", "tok\tx");
  LoadResult tab = Load("server:\n  admin_token: ${env:SWITCHYARD_TEST_TOKEN}\n");
  ASSERT_EQ(tab.errors.size(), 1u) << Dump(tab);
  EXPECT_NE(tab.errors[0].message.find("(${env:SWITCHYARD_TEST_TOKEN})"), std::string::npos);
  EXPECT_EQ(tab.errors[0].message.find("tok\tx"), std::string::npos) << "the value is secret";
}

// A source's or Pushover's api_url that the HTTP client refuses failed every call (token
// exchange, refresh, enrichment; every notification) although `check` passed.
TEST_F(ConfigLoaderTest, ApiUrlsTheHttpClientWouldRefuseAreConfigErrors) {
  auto source = [](const std::string& url) {
    return "sources:\n  sentry:\n    type: sentry\n    client_secret: s\n    api_url: " + url +
           "\n";
  };
  for (const std::string url :
       {"https://u:p@sentry.io", "https://sentry.io:0", "https://sentry.io:70000"}) {
    LoadResult r = Load(source(url));
    ASSERT_EQ(r.errors.size(), 1u) << url << Dump(r);
    EXPECT_NE(r.errors[0].message.find("invalid URL"), std::string::npos) << r.errors[0].message;
    EXPECT_EQ(r.errors[0].message.find(url), std::string::npos) << "the URL is not repeated";
  }
  ExpectOneError(Load(source("https://sentry.io?region=x")), 5, 14,
                 "sources.sentry.api_url: must be a base URL without a query or fragment (like "
                 "https://sentry.io)");
  LoadResult ok = Load(source("https://sentry.example.com/"));
  EXPECT_TRUE(ok.errors.empty()) << Dump(ok);
  LoadResult pushover = Load(
      "sinks:\n  phone:\n    type: pushover\n    token: t\n    user: u\n"
      "    api_url: https://a:b@api.pushover.net/1/messages.json\n");
  ASSERT_EQ(pushover.errors.size(), 1u) << Dump(pushover);
  EXPECT_NE(pushover.errors[0].message.find("invalid URL"), std::string::npos);
}

TEST_F(ConfigLoaderTest, ReportsUnsetVariableAndBadReferences) {
  ScopedEnv unset("SWITCHYARD_TEST_UNSET", nullptr);
  ExpectOneError(Load("server:\n  admin_token: x${env:SWITCHYARD_TEST_UNSET}\n"), 2, 17,
                 "server.admin_token: environment variable SWITCHYARD_TEST_UNSET is not set");
  ExpectOneError(Load("server:\n  admin_token: \"${env:X\"\n"), 2, 17, "unterminated \"${\"");
  ExpectOneError(Load("server:\n  admin_token: ${vault:x}\n"), 2, 16,
                 "unknown reference kind \"vault\" in \"${vault:x}\"");
  ExpectOneError(Load("server:\n  admin_token: ${nothing}\n"), 2, 16, "invalid reference");
}

TEST_F(ConfigLoaderTest, ErrorMessagesNeverContainInterpolatedSecrets) {
  TempDir dir;
  std::string secret_file = dir.Write("secret", "{{ file-secret-BAD-456\n");
  dir.Write("cred", "cred-secret-789");
  ScopedEnv env("SWITCHYARD_TEST_SECRET", "env-secret-BAD-123");
  ScopedEnv creds("CREDENTIALS_DIRECTORY", dir.path().c_str());
  LoadResult r = Load(
      "server:\n"
      "  threads: ${env:SWITCHYARD_TEST_SECRET}\n"
      "  listen: ${file:" +
      secret_file +
      "}\n"
      "  public_url: ${credential:cred}\n"
      "storage:\n"
      "  sync: ${env:SWITCHYARD_TEST_SECRET}\n"
      "  dedupe_window: x${credential:cred}\n"
      "sinks:\n"
      "  a: {type: pushover, rate: '${env:SWITCHYARD_TEST_SECRET}'}\n"
      "routes:\n"
      "  - name: r\n"
      "    match: ['${env:SWITCHYARD_TEST_SECRET}']\n"
      "    to: [{sink: a, title: '${file:" +
      secret_file + "}'}]\n");
  ASSERT_EQ(r.errors.size(), 8u) << Dump(r);
  for (const ConfigError& e : r.errors) {
    std::string s = e.ToString();
    EXPECT_EQ(s.find("secret-"), std::string::npos) << s;
  }
  EXPECT_NE(r.errors[0].message.find("got \"${env:SWITCHYARD_TEST_SECRET}\""), std::string::npos)
      << Dump(r);
}

// Found by fuzz/fuzz_config ("source: se${credential:token}issue" printed the credential in
// "unknown source"): messages about names, types and methods show the text as written.
TEST_F(ConfigLoaderTest, UnknownNamesAndTypesNeverShowInterpolatedSecrets) {
  TempDir dir;
  dir.Write("cred", "cred-secret-789");
  ScopedEnv env("SWITCHYARD_TEST_SECRET", "env-secret-BAD-123");
  ScopedEnv creds("CREDENTIALS_DIRECTORY", dir.path().c_str());
  LoadResult r = Load(
      "sources:\n"
      "  s: {type: '${env:SWITCHYARD_TEST_SECRET}'}\n"
      "  ok: {type: sentry}\n"
      "sinks:\n"
      "  a: {type: '${env:SWITCHYARD_TEST_SECRET}'}\n"
      "  h: {type: http, url: 'http://127.0.0.1:1/', method: '${env:SWITCHYARD_TEST_SECRET}'}\n"
      "  f: {type: file, path: ./x.jsonl}\n"
      "routes:\n"
      "  - name: '${env:SWITCHYARD_TEST_SECRET}'\n"
      "    source: se${credential:cred}issue\n"
      "    enrich: ['${env:SWITCHYARD_TEST_SECRET}']\n"
      "    to: ['${env:SWITCHYARD_TEST_SECRET}', {sink: 'x${credential:cred}'}]\n"
      "  - name: '${env:SWITCHYARD_TEST_SECRET}'\n"
      "    to: [f]\n");
  const std::string all = Dump(r);
  EXPECT_EQ(all.find("secret-"), std::string::npos) << all;
  for (const char* expected :
       {"unknown source type \"${env:SWITCHYARD_TEST_SECRET}\"",
        "unknown sink type \"${env:SWITCHYARD_TEST_SECRET}\"",
        "got \"${env:SWITCHYARD_TEST_SECRET}\"", "unknown source \"se${credential:cred}issue\"",
        "unknown enrichment \"${env:SWITCHYARD_TEST_SECRET}\"",
        "unknown sink \"${env:SWITCHYARD_TEST_SECRET}\"", "unknown sink \"x${credential:cred}\"",
        "duplicate route name \"${env:SWITCHYARD_TEST_SECRET}\""}) {
    EXPECT_NE(all.find(expected), std::string::npos) << expected << "\n" << all;
  }
}

TEST_F(ConfigLoaderTest, InterpolatesFilesAndCredentials) {
  TempDir dir;
  std::string file = dir.Write("token", "from-file\n");
  dir.Write("pushover-user", "from-credential\r\n");
  dir.Write("two-lines", "a\nb\n\n");
  ScopedEnv creds("CREDENTIALS_DIRECTORY", dir.path().c_str());
  LoadResult r = Load(
      "sinks:\n"
      "  phone:\n"
      "    type: pushover\n"
      "    token: ${file:" +
      file +
      "}\n"
      "    user: ${credential:pushover-user}\n"
      "  other:\n"
      "    type: pushover\n"
      "    token: '${file:" +
      dir.path() + "/two-lines}'\n");
  ASSERT_TRUE(r.errors.empty()) << Dump(r);
  const auto& pushover = std::get<PushoverSinkConfig>(r.config->FindSink("phone")->settings);
  EXPECT_EQ(pushover.token, "from-file");
  EXPECT_EQ(pushover.user, "from-credential");
  EXPECT_EQ(std::get<PushoverSinkConfig>(r.config->FindSink("other")->settings).token, "a\nb\n");
}

TEST_F(ConfigLoaderTest, ReportsUnreadableFilesAndBadCredentials) {
  TempDir dir;
  ExpectOneError(Load("server:\n  admin_token: ${file:" + dir.path() + "/missing}\n"), 2, 16,
                 "cannot read \"${file:" + dir.path() + "/missing}\": No such file or directory");
  ExpectOneError(Load("server:\n  admin_token: ${file:" + dir.path() + "}\n"), 2, 16,
                 "not a regular file");
  dir.Write("big", std::string(kMaxInterpolatedFileBytes + 1, 'x'));
  ExpectOneError(Load("server:\n  admin_token: ${file:" + dir.path() + "/big}\n"), 2, 16,
                 "larger than 1 MiB");
  {
    ScopedEnv unset("CREDENTIALS_DIRECTORY", nullptr);
    ExpectOneError(Load("server:\n  admin_token: ${credential:x}\n"), 2, 16,
                   "CREDENTIALS_DIRECTORY is not set");
  }
  ScopedEnv creds("CREDENTIALS_DIRECTORY", dir.path().c_str());
  for (const char* name : {"../x", "..", ".", "a/b", ""}) {
    ExpectOneError(Load(std::string("server:\n  admin_token: ${credential:") + name + "}\n"), 2, 16,
                   "invalid credential name");
  }
  ExpectOneError(Load("server:\n  admin_token: ${credential:missing}\n"), 2, 16,
                 "cannot read \"${credential:missing}\"");
}

TEST_F(ConfigLoaderTest, ValidatesNamesUrlsAndAddresses) {
  ExpectOneError(Load("sources:\n  Sentry: {type: sentry}\n"), 2, 3,
                 "sources: invalid source name \"Sentry\"");
  ExpectOneError(Load("sinks:\n  _x: {type: file, path: x}\n"), 2, 3, "invalid sink name \"_x\"");
  ExpectOneError(Load("sources:\n  s: {type: sentry, api_url: sentry.io}\n"), 2, 30,
                 "sources.s.api_url: expected an http:// or https:// URL, got \"sentry.io\"");
  ExpectOneError(Load("sources:\n  s: {type: gitlab}\n"), 2, 13, "unknown source type \"gitlab\"");
  ExpectOneError(Load("sinks:\n  h: {type: http, url: 'ftp://x/'}\n"), 2, 24,
                 "sinks.h.url: expected an http:// or https:// URL");
  ExpectOneError(Load("sinks:\n  h: {type: http, url: 'http://x/', method: post}\n"), 2, 45,
                 "expected one of GET, POST, PUT, PATCH, DELETE, got \"post\"");
  ExpectOneError(Load("server:\n  listen: 127.0.0.1:65536\n"), 2, 11, "got \"127.0.0.1:65536\"");
  ExpectOneError(Load("server:\n  listen: ::1:80\n"), 2, 11,
                 "server.listen: expected IPV4:PORT, [IPV6]:PORT, localhost:PORT or *:PORT with "
                 "PORT in 0..65535, got \"::1:80\": an IPv6 address must be in brackets");
  ExpectOneError(Load("server:\n  admin_listen: 127.0.0.1:8080\n"), 2, 17,
                 "server.admin_listen: must differ from server.listen");
  ExpectOneError(Load("server:\n  listen: '*:8080'\n  admin_listen: ':8080'\n"), 3, 17,
                 "server.admin_listen: must differ from server.listen");
  ExpectOneError(Load("server:\n  admin_listen: localhost:8080\n"), 2, 17,
                 "server.admin_listen: must differ from server.listen");
  // A wildcard covers the addresses of its family ([::] every address): run could not bind both.
  ExpectOneError(Load("server:\n  listen: '0.0.0.0:8080'\n  admin_listen: 127.0.0.1:8080\n"), 3, 17,
                 "server.admin_listen: must differ from server.listen");
  ExpectOneError(Load("server:\n  listen: '127.0.0.1:9000'\n  admin_listen: '*:9000'\n"), 3, 17,
                 "server.admin_listen: must differ from server.listen");
  ExpectOneError(Load("server:\n  listen: '[::]:9000'\n  admin_listen: 127.0.0.1:9000\n"), 3, 17,
                 "server.admin_listen: must differ from server.listen");
  ExpectOneError(Load("server:\n  listen: '[::ffff:127.0.0.1]:9000'\n  admin_listen: "
                      "127.0.0.1:9000\n"),
                 3, 17, "server.admin_listen: must differ from server.listen");
  for (const char* ok : {"server:\n  listen: '0.0.0.0:8080'\n  admin_listen: '[::1]:8080'\n",
                         "server:\n  listen: '127.0.0.1:8080'\n  admin_listen: 127.0.0.2:8080\n",
                         "server:\n  listen: '*:8080'\n  admin_listen: 127.0.0.1:9090\n",
                         "server:\n  listen: '*:0'\n  admin_listen: 127.0.0.1:0\n"}) {
    LoadResult r = Load(ok);
    EXPECT_TRUE(r.errors.empty()) << ok << Dump(r);
  }
  LoadResult r = Load("sources:\n  s: {type: sentry, client_secret: ''}\n");
  EXPECT_TRUE(r.errors.empty()) << Dump(r);  // an empty secret is allowed (startup warns)
}

TEST_F(ConfigLoaderTest, ReadsRouteFiltersAndLists) {
  std::string yaml = std::string(kSinks) +
                     "routes:\n"
                     "  - name: r\n"
                     "    resource: [issue, event_alert]\n"
                     "    action: [created, resolved]\n"
                     "    match_any: ['data.a = \"1\"', 'data.b = \"2\"']\n"
                     "    stop: true\n"
                     "    to:\n"
                     "      - archive\n"
                     "      - {sink: ops, body: '{{ data | json }}'}\n";
  LoadResult r = Load(yaml);
  ASSERT_TRUE(r.errors.empty()) << Dump(r);
  const RouteConfig& route = r.config->routes[0];
  EXPECT_EQ(route.resources, (std::vector<std::string>{"issue", "event_alert"}));
  EXPECT_EQ(route.actions, (std::vector<std::string>{"created", "resolved"}));
  EXPECT_EQ(route.match_any.size(), 2u);
  EXPECT_TRUE(route.stop);
  ASSERT_EQ(route.to.size(), 2u);
  EXPECT_TRUE(route.to[0].fields.empty());
  EXPECT_EQ(route.to[1].fields.at("body").text(), "{{ data | json }}");

  ExpectOneError(Load(std::string(kSinks) + "routes:\n  - name: r\n    stop: yes\n    to: [ops]\n"),
                 12, 11, "routes[0].stop: expected true or false, got \"yes\"");
  ExpectOneError(
      Load(std::string(kSinks) + "routes:\n  - name: r\n    resource: []\n    to: [ops]\n"), 12, 15,
      "routes[0].resource: an empty list matches nothing");
  ExpectOneError(
      Load(std::string(kSinks) + "routes:\n  - {name: r, to: [ops]}\n  - {name: r, to: [ops]}\n"),
      12, 12, "routes[1].name: duplicate route name \"r\" (first at line 11)");
}

TEST_F(ConfigLoaderTest, EnrichNeedsASourceUnlessThereIsOnlyOne) {
  // One source defined: a route without `source` may enrich.
  std::string yaml = std::string(kSinks) +
                     "routes:\n  - name: r\n    enrich: [issue]\n"
                     "    match: ['$issue.project.slug = \"backend\"']\n    to: [ops]\n";
  LoadResult r = Load(yaml);
  ASSERT_TRUE(r.errors.empty()) << Dump(r);
  EXPECT_EQ(r.config->routes[0].enrich, std::vector<std::string>{"issue"});

  // Two sources: the route must say which.
  yaml = std::string(kSinks) +
         "  other: {type: sentry}\n"
         "routes:\n  - name: r\n    enrich: [issue]\n    to: [ops]\n";
  ExpectOneError(Load(yaml), 13, 13,
                 "routes[0].enrich: enrich: [issue] needs the route's "
                 "\"source\" to be set (2 sources are defined)");

  ExpectOneError(
      Load(std::string(kSinks) +
           "routes:\n  - name: r\n    source: sentry\n    enrich: [user]\n    to: [ops]\n"),
      13, 14, "routes[0].enrich[0]: unknown enrichment \"user\" (known: issue)");
}

TEST_F(ConfigLoaderTest, RejectsIssuePathsWithoutEnrich) {
  std::string yaml = std::string(kSinks) +
                     "routes:\n  - name: r\n    match: ['$issue.project.slug = \"backend\"']\n"
                     "    to: [{sink: phone, title: '{{ $issue.title }}'}]\n";
  LoadResult r = Load(yaml);
  ASSERT_EQ(r.errors.size(), 2u) << Dump(r);
  EXPECT_NE(r.errors[0].message.find("routes[0].match[0]: reads $issue.* but the route has no "
                                     "\"enrich: [issue]\""),
            std::string::npos);
  EXPECT_NE(r.errors[1].message.find("routes[0].to[0].title: reads $issue.*"), std::string::npos);
}

TEST_F(ConfigLoaderTest, AnUnclosedQuoteIsASyntaxErrorNotTheRestOfTheFile) {
  // yaml-cpp 0.7 takes everything to the end of the file as the string.
  ExpectOneError(Load("sinks:\n  a:\n    type: file\n    path: '/tmp/x.jsonl\n"), 4, 11,
                 "YAML syntax error: unclosed quote: this single-quoted string has no closing '");
  LoadResult r = Load("sinks:\n  a:\n    type: file\n    path: \"/tmp/x.jsonl\n");
  ASSERT_FALSE(r.errors.empty());
  EXPECT_NE(Dump(r).find("double-quoted string has no closing"), std::string::npos) << Dump(r);
  // Escaped quotes inside are not the closing one; a multi-line quoted string is fine.
  LoadResult ok = Load("sinks:\n  a:\n    type: file\n    path: 'it''s\n      here'\n");
  EXPECT_TRUE(ok.errors.empty()) << Dump(ok);
}

TEST_F(ConfigLoaderTest, KeepsTheHeadersRoutesReadAndNotesInstallationOrg) {
  LoadResult r =
      Load(std::string(kSinks) +
           "routes:\n  - name: r\n    match: ['$header.x-team = \"payments\"']\n"
           "    to: [{sink: phone, title: '{{ $installation.org }} {{ $header.x-env }}'}]\n");
  ASSERT_TRUE(r.errors.empty()) << Dump(r);
  EXPECT_EQ(r.config->kept_headers,
            (std::vector<std::string>{"request-id", "sentry-hook-resource", "sentry-hook-timestamp",
                                      "content-type", "user-agent", "x-team", "x-env"}));
  EXPECT_TRUE(r.config->reads_installation_org);

  LoadResult plain = Load(std::string(kSinks) + "routes:\n  - name: r\n    to: [phone]\n");
  ASSERT_TRUE(plain.errors.empty()) << Dump(plain);
  EXPECT_FALSE(plain.config->reads_installation_org);
  EXPECT_EQ(plain.config->kept_headers.size(), 5u);
}

TEST_F(ConfigLoaderTest, RejectsRoutesThatReadCredentialHeaders) {
  LoadResult r = Load(std::string(kSinks) +
                      "routes:\n  - name: r\n    match: ['$header.authorization != \"\"']\n"
                      "    to: [{sink: phone, title: '{{ $header.sentry-hook-signature }}'}]\n");
  ASSERT_EQ(r.errors.size(), 2u) << Dump(r);
  EXPECT_NE(r.errors[0].message.find("reads $header.authorization, a credential"),
            std::string::npos)
      << Dump(r);
  EXPECT_NE(r.errors[1].message.find("reads $header.sentry-hook-signature, a credential"),
            std::string::npos)
      << Dump(r);
}

TEST_F(ConfigLoaderTest, LoadsFromAFileAndNamesItInErrors) {
  TempDir dir;
  std::string path = dir.Write("routes.yaml", "server:\n  threads: 2\n");
  LoadResult r = LoadConfig(path);
  ASSERT_TRUE(r.errors.empty()) << Dump(r);
  EXPECT_EQ(r.config->file, path);
  EXPECT_EQ(r.config->server.threads, 2);

  path = dir.Write("bad.yaml", "server:\n  thread: 2\n");
  r = LoadConfig(path);
  ASSERT_EQ(r.errors.size(), 1u) << Dump(r);
  EXPECT_EQ(r.errors[0].ToString().rfind(path + ":2:3: unknown key \"thread\" in server", 0), 0u);

  r = LoadConfig(dir.path() + "/missing.yaml");
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_EQ(r.errors[0].file, dir.path() + "/missing.yaml");
  EXPECT_NE(r.errors[0].message.find("cannot read the config file"), std::string::npos);
  EXPECT_EQ(r.config, nullptr);
}

TEST_F(ConfigLoaderTest, RejectsMoreThanOneDocument) {
  ExpectOneError(Load("server: {}\n---\nstorage: {}\n"), 3, 1, "more than one YAML document");
  ExpectOneError(Load("server: {}\n---\n"), 3, 1, "more than one YAML document");
  EXPECT_TRUE(Load("---\nserver: {}\n...\n").errors.empty());
  EXPECT_TRUE(Load("# nothing\n").errors.empty());
}

// Found by fuzz/fuzz_config: yaml-cpp 0.7's LoadAll never returned on these (it allocated an
// empty document per round until memory ran out).
TEST_F(ConfigLoaderTest, StrayCommaWhereADocumentStartsIsASyntaxError) {
  ExpectOneError(Load(",in  :\n  ry}\n"), 1, 1, "YAML syntax error: unexpected \",\"");
  ExpectOneError(Load(","), 1, 1, "YAML syntax error");
  ExpectOneError(Load("server: {}\n---\n,\n"), 3, 1, "more than one YAML document");
}

TEST(RepoRoutesYamlTest, LoadsWithNoEnvironment) {
  ScopedEnv a("SENTRY_CLIENT_ID", nullptr);
  ScopedEnv b("SENTRY_CLIENT_SECRET", nullptr);
  ScopedEnv c("PUSHOVER_TOKEN", nullptr);
  ScopedEnv d("PUSHOVER_USER", nullptr);
  LoadResult r = LoadConfig(SWITCHYARD_SOURCE_DIR "/routes.yaml");
  ASSERT_TRUE(r.errors.empty()) << Dump(r);
  const Config& c0 = *r.config;
  EXPECT_EQ(c0.server.listen, "127.0.0.1:8080");
  EXPECT_EQ(c0.server.admin_listen, "127.0.0.1:9090");
  EXPECT_EQ(c0.storage.path, "./var");
  ASSERT_NE(c0.FindSource("sentry"), nullptr);
  ASSERT_NE(c0.FindSink("phone"), nullptr);
  ASSERT_NE(c0.FindSink("archive"), nullptr);
  EXPECT_EQ(std::get<FileSinkConfig>(c0.FindSink("archive")->settings).path, "./var/events.jsonl");
  ASSERT_EQ(c0.routes.size(), 2u);
  EXPECT_EQ(c0.routes[0].name, "backend-issues-to-phone");
  EXPECT_EQ(c0.routes[0].to[0].fields.at("url_title").text(), "Issue Details");
  EXPECT_EQ(c0.routes[1].name, "archive-everything");
}

}  // namespace
}  // namespace switchyard::config
