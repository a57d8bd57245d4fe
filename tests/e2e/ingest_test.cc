// End-to-end tests of the ingest path: the real daemon binary, real sockets, real RocksDB.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/mount.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <thread>

#include "fakes/recording_receiver.h"
#include "support/daemon_process.h"
#include "support/http_client.h"
#include "support/sentry.h"
#include "support/temp_dir.h"

namespace switchyard::testing {
namespace {

constexpr char kSecret[] = "e2e-client-secret-0123456789";

struct Options {
  std::string storage_path;  // default: <dir>/var
  std::string server_extra;  // more keys under server:
  std::string storage_extra;
  std::string source_extra;
  std::string tail;  // sinks:, routes:, ...
};

std::string ConfigYaml(const std::string& dir, const Options& o = {}) {
  return "server:\n"
         "  listen: 127.0.0.1:0\n"
         "  admin_listen: 127.0.0.1:0\n"
         "  threads: 2\n" +
         o.server_extra +
         "storage:\n"
         "  path: " +
         (o.storage_path.empty() ? dir + "/var" : o.storage_path) + "\n" + o.storage_extra +
         "sources:\n"
         "  sentry:\n"
         "    type: sentry\n"
         "    client_secret: " +
         kSecret + "\n" + o.source_extra + o.tail;
}

class IngestTest : public ::testing::Test {
 protected:
  void StartDaemon(const Options& o = {}) { daemon_.Start(ConfigYaml(dir_.path(), o)); }

  std::optional<HttpResponse> Post(const std::string& body, const std::string& resource = "issue",
                                   std::string signature = "") {
    if (signature.empty()) signature = SentrySignature(kSecret, body);
    return Fetch(daemon_.port(), "POST", "/hooks/sentry", SentryHeaders(resource, signature), body);
  }

  TempDir dir_;
  DaemonProcess daemon_{dir_.path()};
};

TEST_F(IngestTest, AcceptsEverySignedSentryPayloadWith202AndAnId) {
  StartDaemon();
  auto files = WebhookPayloadFiles();
  ASSERT_GE(files.size(), 10u);
  for (const auto& file : files) {
    std::string resource = file.substr(0, file.find('.'));
    auto r = Post(CompactPayload(file), resource);
    ASSERT_TRUE(r) << file;
    EXPECT_EQ(r->status, 202) << file << ": " << r->body;
    EXPECT_NE(r->body.find("{\"id\":\""), std::string::npos) << r->body;
    EXPECT_EQ(r->Header("Content-Type"), "application/json");
  }
}

TEST_F(IngestTest, AcceptsAppSignatureHeaderUsedByUiComponents) {
  StartDaemon();
  std::string body = CompactPayload("issue.created.json");
  auto r = Fetch(
      daemon_.port(), "POST", "/hooks/sentry",
      {{"Sentry-Hook-Resource", "issue"}, {"Sentry-App-Signature", SentrySignature(kSecret, body)}},
      body);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 202) << r->body;
}

TEST_F(IngestTest, VerifiesSignatureOverRawBytesWithUnicodeEscapes) {
  StartDaemon();
  // Sentry sends ensure_ascii JSON: non-ASCII as \uXXXX escapes, including surrogate pairs.
  std::string body =
      R"({"action":"created","installation":{"uuid":"u-1"},"data":{"issue":{"title":)"
      R"("Caf\u00e9 \u65e5\u672c \ud83d\ude00 \"q\" \\ \/"}},"actor":{"type":"application"}})";
  auto r = Post(body);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 202) << r->body;
  // The same payload re-serialized with raw UTF-8 has a different signature: it must not pass
  // when signed over other bytes.
  auto wrong = Post(body, "issue", SentrySignature(kSecret, body + " "));
  ASSERT_TRUE(wrong);
  EXPECT_EQ(wrong->status, 401);
}

TEST_F(IngestTest, IdenticalBodyIsADuplicateWith200AndTheFirstId) {
  StartDaemon();
  std::string body = CompactPayload("issue.created.json");
  auto first = Post(body);
  auto second = Post(body);  // Sentry's retry: new Request-ID, same body
  ASSERT_TRUE(first && second);
  EXPECT_EQ(first->status, 202);
  EXPECT_EQ(second->status, 200);
  std::string id = first->body.substr(7, 26);
  EXPECT_EQ(second->body, "{\"id\":\"" + id + "\",\"duplicate\":true}");
}

TEST_F(IngestTest, DuplicateDetectionSurvivesARestart) {
  StartDaemon();
  std::string body = CompactPayload("error.created.json");
  auto first = Post(body, "error");
  ASSERT_TRUE(first);
  ASSERT_EQ(first->status, 202);
  ASSERT_EQ(daemon_.Terminate(), 0);
  daemon_.Restart();
  auto again = Post(body, "error");
  ASSERT_TRUE(again);
  EXPECT_EQ(again->status, 200);
  EXPECT_NE(again->body.find(first->body.substr(7, 26)), std::string::npos);
}

TEST_F(IngestTest, DuplicateDetectionSurvivesSigkill) {
  StartDaemon();
  std::string body = CompactPayload("comment.created.json");
  auto first = Post(body, "comment");
  ASSERT_TRUE(first);
  ASSERT_EQ(first->status, 202);
  daemon_.Kill();  // no clean shutdown: the acknowledged write must already be durable
  daemon_.Restart();
  auto again = Post(body, "comment");
  ASSERT_TRUE(again);
  EXPECT_EQ(again->status, 200) << again->body;
}

TEST_F(IngestTest, DedupeWindowZeroStoresEveryCopy) {
  StartDaemon({.storage_extra = "  dedupe_window: 0\n"});
  std::string body = CompactPayload("issue.created.json");
  auto a = Post(body), b = Post(body);
  ASSERT_TRUE(a && b);
  EXPECT_EQ(a->status, 202);
  EXPECT_EQ(b->status, 202);
  EXPECT_NE(a->body, b->body);
}

TEST_F(IngestTest, SameBodyFromAnotherSourceIsNotADuplicate) {
  StartDaemon({.source_extra = "  other:\n    type: sentry\n    client_secret: " +
                               std::string(kSecret) + "\n"});
  std::string body = CompactPayload("issue.created.json");
  auto a = Post(body);
  auto b = Fetch(daemon_.port(), "POST", "/hooks/other",
                 SentryHeaders("issue", SentrySignature(kSecret, body)), body);
  ASSERT_TRUE(a && b);
  EXPECT_EQ(a->status, 202);
  EXPECT_EQ(b->status, 202);
}

TEST_F(IngestTest, WrongSignatureIs401AndNeverEchoesTheExpectedOne) {
  StartDaemon();
  std::string body = CompactPayload("issue.created.json");
  std::string expected = SentrySignature(kSecret, body);
  std::string wrong = expected;
  wrong[10] = wrong[10] == 'a' ? 'b' : 'a';
  auto r = Post(body, "issue", wrong);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 401);
  EXPECT_EQ(r->body.find(expected), std::string::npos);
  EXPECT_EQ(r->body.find(kSecret), std::string::npos);
  EXPECT_NE(r->body.find("\"error\""), std::string::npos);
  EXPECT_EQ(daemon_.Log().find(expected), std::string::npos);
  EXPECT_EQ(daemon_.Log().find(kSecret), std::string::npos);
}

TEST_F(IngestTest, MissingSignatureIs401) {
  StartDaemon();
  std::string body = CompactPayload("issue.created.json");
  auto r =
      Fetch(daemon_.port(), "POST", "/hooks/sentry", {{"Sentry-Hook-Resource", "issue"}}, body);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 401);
  EXPECT_NE(r->body.find("missing"), std::string::npos);
}

TEST_F(IngestTest, SourceWithoutClientSecretRejectsEverythingWith401) {
  daemon_.Start("server:\n  listen: 127.0.0.1:0\n  admin_listen: 127.0.0.1:0\nstorage:\n  path: " +
                dir_.path() + "/var\nsources:\n  sentry:\n    type: sentry\n");
  std::string body = CompactPayload("issue.created.json");
  auto r = Post(body, "issue", SentrySignature("", body));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 401);
}

TEST_F(IngestTest, StaleTimestampIs401WhenMaxClockSkewIsSet) {
  StartDaemon({.source_extra = "    max_clock_skew: 5m\n"});
  std::string body = CompactPayload("issue.created.json");
  auto headers = SentryHeaders("issue", SentrySignature(kSecret, body));
  auto set_timestamp = [&headers](const std::string& ts) {
    for (auto& [k, v] : headers) {
      if (k == "Sentry-Hook-Timestamp") v = ts;
    }
  };
  set_timestamp(std::to_string(time(nullptr) - 3600));
  auto stale = Fetch(daemon_.port(), "POST", "/hooks/sentry", headers, body);
  ASSERT_TRUE(stale);
  EXPECT_EQ(stale->status, 401);
  // Values no clock reads, including ones whose milliseconds overflow int64 (the fuzzer found
  // 3225492126871584768; the sanitized daemon aborted on it).
  for (const char* ts : {"3225492126871584768", "9223372036854775807", "-9223372036854775808",
                         "-1", "1e9", "", "17000000000000000000000"}) {
    set_timestamp(ts);
    auto r = Fetch(daemon_.port(), "POST", "/hooks/sentry", headers, body);
    ASSERT_TRUE(r) << ts;
    EXPECT_EQ(r->status, 401) << ts;
    EXPECT_NE(r->body.find("Sentry-Hook-Timestamp"), std::string::npos) << r->body;
  }
  auto fresh = Post(body);
  ASSERT_TRUE(fresh);
  EXPECT_EQ(fresh->status, 202);
}

TEST_F(IngestTest, MissingResourceHeaderIs400) {
  StartDaemon();
  std::string body = CompactPayload("issue.created.json");
  auto r = Fetch(daemon_.port(), "POST", "/hooks/sentry",
                 {{"Sentry-Hook-Signature", SentrySignature(kSecret, body)}}, body);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 400);
  EXPECT_NE(r->body.find("Sentry-Hook-Resource"), std::string::npos);
}

TEST_F(IngestTest, MalformedJsonIs400WithAReason) {
  StartDaemon();
  for (std::string body :
       {std::string("{\"action\":"), std::string("[1,2]"), std::string("{\"a\":1} trailing"),
        std::string("\"just a string\""), std::string("{\"bad\":\"\xff\xfe\"}")}) {
    auto r = Post(body);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 400) << body;
    EXPECT_NE(r->body.find("\"error\""), std::string::npos);
  }
}

TEST_F(IngestTest, SentryDocsInvalidSeerPayloadIs400) {
  StartDaemon();
  std::string body = ReadFile(std::string(SWITCHYARD_PAYLOADS_DIR) +
                              "/seer.solution_completed.NOT-VALID-JSON.txt");
  auto r = Post(body, "seer");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 400);
}

TEST_F(IngestTest, DeepNestingIs400) {
  StartDaemon({.server_extra = "  max_json_depth: 32\n"});
  std::string deep = "{\"a\":" + std::string(40, '[') + std::string(40, ']') + "}";
  auto r = Post(deep);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 400);
  std::string shallow = "{\"a\":" + std::string(20, '[') + std::string(20, ']') + "}";
  auto ok = Post(shallow);
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->status, 202);
}

TEST_F(IngestTest, UnknownSourceAndUnknownPathAre404) {
  StartDaemon();
  auto a = Fetch(daemon_.port(), "POST", "/hooks/nope", {}, "{}");
  auto b = Fetch(daemon_.port(), "GET", "/elsewhere");
  ASSERT_TRUE(a && b);
  EXPECT_EQ(a->status, 404);
  EXPECT_EQ(b->status, 404);
}

TEST_F(IngestTest, WrongMethodIs405WithAllow) {
  StartDaemon();
  auto r = Fetch(daemon_.port(), "GET", "/hooks/sentry");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 405);
  EXPECT_EQ(r->Header("Allow"), "POST");
}

TEST_F(IngestTest, BodyOfExactlyMaxBodyBytesIsAcceptedAndOneMoreIs413) {
  StartDaemon({.server_extra = "  max_body_bytes: 4096\n"});
  std::string prefix = "{\"action\":\"created\",\"pad\":\"";
  std::string exact = prefix + std::string(4096 - prefix.size() - 2, 'x') + "\"}";
  ASSERT_EQ(exact.size(), 4096u);
  auto ok = Post(exact);
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->status, 202) << ok->body;
  std::string over = prefix + std::string(4097 - prefix.size() - 2, 'x') + "\"}";
  auto big = Post(over);
  ASSERT_TRUE(big);
  EXPECT_EQ(big->status, 413);
}

TEST_F(IngestTest, A413FromTheHttpLayerCountsAsARejectedWebhook) {
  StartDaemon({.server_extra = "  max_body_bytes: 1024\n"});
  auto big = Post("{\"pad\":\"" + std::string(2000, 'x') + "\"}");
  ASSERT_TRUE(big);
  ASSERT_EQ(big->status, 413);
  auto m = Fetch(daemon_.admin_port(), "GET", "/metrics");
  ASSERT_TRUE(m);
  EXPECT_NE(m->body.find("switchyard_webhooks_rejected_total{reason=\"too_large\",source=\"sentry\"} 1"),
            std::string::npos)
      << m->body;
  EXPECT_NE(m->body.find("switchyard_webhooks_received_total{outcome=\"rejected\",resource=\"issue\","
                         "source=\"sentry\"} 1"),
            std::string::npos)
      << m->body;
}

TEST_F(IngestTest, AHeadRequestGetsTheHeadersWithoutTheBody) {
  StartDaemon();
  // Raw bytes: a client reading a body after HEAD would hang, so read to the close instead.
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(daemon_.port());
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  const std::string req = "HEAD /setup/sentry HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
  ASSERT_EQ(::write(fd, req.data(), req.size()), static_cast<ssize_t>(req.size()));
  timeval tv{10, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  std::string got;
  char buf[4096];
  for (ssize_t n; (n = ::read(fd, buf, sizeof buf)) > 0;) got.append(buf, static_cast<size_t>(n));
  ::close(fd);
  ASSERT_TRUE(got.starts_with("HTTP/1.1 400")) << got;
  EXPECT_NE(got.find("Content-Length: "), std::string::npos) << got;
  EXPECT_EQ(got.find("Content-Length: 0\r\n"), std::string::npos) << "GET's length: " << got;
  EXPECT_TRUE(got.ends_with("\r\n\r\n")) << "nothing after the head: " << got;
}

TEST_F(IngestTest, RouteMatchesCountStoredEventsNotDuplicates) {
  StartDaemon({.tail = "sinks:\n  archive: {type: file, path: " + dir_.path() +
                       "/archive.jsonl}\nroutes:\n  - name: all\n    to: [archive]\n"});
  std::string body = CompactPayload("issue.created.json");
  ASSERT_EQ(Post(body)->status, 202);
  ASSERT_EQ(Post(body)->status, 200);  // a duplicate delivers nothing more
  auto m = Fetch(daemon_.admin_port(), "GET", "/metrics");
  ASSERT_TRUE(m);
  EXPECT_NE(m->body.find("switchyard_route_matches_total{route=\"all\"} 1\n"), std::string::npos)
      << m->body;
}

TEST_F(IngestTest, AWebhookRepeatingAKeptHeaderHundredsOfTimesIsStoredReadably) {
  StartDaemon({.tail = "sinks:\n  archive: {type: file, path: " + dir_.path() +
                       "/archive.jsonl}\nroutes:\n  - name: all\n    to: [archive]\n"});
  std::string body = CompactPayload("issue.created.json");
  auto headers = SentryHeaders("issue", SentrySignature(kSecret, body));
  for (int i = 0; i < 1100; ++i) headers.emplace_back("User-Agent", "");  // ~14 KB of head
  auto r = Fetch(daemon_.port(), "POST", "/hooks/sentry", headers, body);
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 202) << r->body;
  // The stored event reads back (at most 1,024 headers), so it is delivered.
  const std::string archive = dir_.path() + "/archive.jsonl";
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (std::chrono::steady_clock::now() < deadline &&
         (!std::filesystem::exists(archive) || std::filesystem::file_size(archive) == 0)) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ASSERT_TRUE(std::filesystem::exists(archive)) << daemon_.Log();
  EXPECT_GT(std::filesystem::file_size(archive), body.size());
}

TEST_F(IngestTest, ChunkedBodyOverTheLimitIs413) {
  StartDaemon({.server_extra = "  max_body_bytes: 1024\n"});
  RawConnection c(daemon_.port());
  std::string head =
      "POST /hooks/sentry HTTP/1.1\r\nHost: x\r\nSentry-Hook-Resource: issue\r\n"
      "Sentry-Hook-Signature: 00\r\nTransfer-Encoding: chunked\r\n\r\n";
  std::string chunk(800, 'a');
  char size[16];
  snprintf(size, sizeof size, "%zx\r\n", chunk.size());
  ASSERT_TRUE(c.Send(head + size + chunk + "\r\n" + size + chunk + "\r\n0\r\n\r\n"));
  auto r = c.Read();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 413);
}

TEST_F(IngestTest, ChunkedBodyIsReassembledBeforeVerification) {
  StartDaemon();
  std::string body = CompactPayload("event_alert.triggered.json");
  std::string req =
      "POST /hooks/sentry HTTP/1.1\r\nHost: x\r\nSentry-Hook-Resource: event_alert\r\n"
      "Sentry-Hook-Signature: " +
      SentrySignature(kSecret, body) + "\r\nTransfer-Encoding: chunked\r\n\r\n";
  for (size_t off = 0; off < body.size(); off += 777) {
    std::string part = body.substr(off, 777);
    char size[16];
    snprintf(size, sizeof size, "%zx\r\n", part.size());
    req += size + part + "\r\n";
  }
  req += "0\r\n\r\n";
  RawConnection c(daemon_.port());
  ASSERT_TRUE(c.Send(req));
  auto r = c.Read();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 202) << r->body;
}

TEST_F(IngestTest, PipelinedRequestsAreAnsweredInOrder) {
  StartDaemon();
  std::string a = CompactPayload("issue.created.json");
  std::string b = CompactPayload("comment.created.json");
  std::string wire = BuildRequest("POST", "/hooks/sentry",
                                  SentryHeaders("issue", SentrySignature(kSecret, a)), a) +
                     BuildRequest("POST", "/hooks/sentry",
                                  SentryHeaders("comment", SentrySignature(kSecret, b)), b) +
                     BuildRequest("POST", "/hooks/sentry",
                                  SentryHeaders("issue", SentrySignature(kSecret, a)), a) +
                     BuildRequest("GET", "/hooks/sentry", {}, "");
  RawConnection c(daemon_.port());
  ASSERT_TRUE(c.Send(wire));
  auto r1 = c.Read(), r2 = c.Read(), r3 = c.Read(), r4 = c.Read();
  ASSERT_TRUE(r1 && r2 && r3 && r4);
  EXPECT_EQ(r1->status, 202);
  EXPECT_EQ(r2->status, 202);
  EXPECT_EQ(r3->status, 200);  // duplicate of the first
  EXPECT_EQ(r3->body.substr(0, 34), r1->body.substr(0, 34));
  EXPECT_EQ(r4->status, 405);
}

TEST_F(IngestTest, ExpectContinueIsHonoured) {
  StartDaemon();
  std::string body = CompactPayload("issue.created.json");
  RawConnection c2(daemon_.port());
  std::string head =
      "POST /hooks/sentry HTTP/1.1\r\nHost: x\r\nSentry-Hook-Resource: issue\r\n"
      "Sentry-Hook-Signature: " +
      SentrySignature(kSecret, body) +
      "\r\nExpect: 100-continue\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n";
  ASSERT_TRUE(c2.Send(head));
  auto cont = c2.Read();
  ASSERT_TRUE(cont);
  EXPECT_EQ(cont->status, 100);
  ASSERT_TRUE(c2.Send(body));
  auto r = c2.Read();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 202);
}

TEST_F(IngestTest, SlowlorisHeadIsCutOffAtHeaderTimeout) {
  StartDaemon({.server_extra = "  header_timeout: 300ms\n"});
  RawConnection slow(daemon_.port());
  std::string head = "POST /hooks/sentry HTTP/1.1\r\nHost: x\r\nX-Slow: ";
  auto start = std::chrono::steady_clock::now();
  bool closed = false;
  // Trickle one byte every 50 ms for up to 5 s; the daemon must hang up long before.
  for (int i = 0; i < 100 && !closed; ++i) {
    if (!slow.Send(i < static_cast<int>(head.size()) ? head.substr(i, 1) : std::string("a"))) {
      closed = true;
      break;
    }
    closed = slow.WaitClosed(std::chrono::milliseconds(50));
  }
  EXPECT_TRUE(closed);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(3));
  // Others are still served.
  auto ok = Fetch(daemon_.port(), "GET", "/nothing");
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->status, 404);
}

TEST_F(IngestTest, SlowBodyIsCutOffAtBodyTimeout) {
  StartDaemon({.server_extra = "  body_timeout: 300ms\n"});
  RawConnection slow(daemon_.port());
  ASSERT_TRUE(slow.Send("POST /hooks/sentry HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{"));
  EXPECT_TRUE(slow.WaitClosed(std::chrono::seconds(3)));
}

TEST_F(IngestTest, IdleKeepAliveConnectionIsClosedAfterIdleTimeout) {
  StartDaemon({.server_extra = "  idle_timeout: 300ms\n"});
  RawConnection c(daemon_.port());
  ASSERT_TRUE(c.Send(BuildRequest("GET", "/x", {}, "")));
  auto r = c.Read();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 404);
  EXPECT_TRUE(c.WaitClosed(std::chrono::seconds(3)));
}

// A new connection that never sends a byte is cut at header_timeout: its wait for the first
// byte is part of the first request's head, not an idle keep-alive wait.
TEST_F(IngestTest, SilentNewConnectionIsClosedAtHeaderTimeoutNotIdleTimeout) {
  StartDaemon({.server_extra = "  header_timeout: 300ms\n  idle_timeout: 60s\n"});
  RawConnection silent(daemon_.port());
  auto start = std::chrono::steady_clock::now();
  EXPECT_TRUE(silent.WaitClosed(std::chrono::seconds(5)));
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
}

// A body far larger than the first read (16 KiB), whose head arrives alone and whose body
// arrives in pieces, is read whole and verified; the connection then carries another request.
TEST_F(IngestTest, LargeBodyArrivingInPiecesAfterTheHeadIsReadWholeOnAKeepAliveConnection) {
  StartDaemon();
  std::string prefix = "{\"action\":\"created\",\"pad\":\"";
  std::string body = prefix + std::string(200000, 'p') + "\"}";
  std::string wire = BuildRequest("POST", "/hooks/sentry",
                                  SentryHeaders("issue", SentrySignature(kSecret, body)), body);
  const size_t head_end = wire.find("\r\n\r\n") + 4;
  RawConnection c(daemon_.port());
  ASSERT_TRUE(c.Send(wire.substr(0, head_end)));
  std::this_thread::sleep_for(std::chrono::milliseconds(50));  // the head is read on its own
  const size_t third = (wire.size() - head_end) / 3;
  ASSERT_TRUE(c.Send(wire.substr(head_end, third)));
  ASSERT_TRUE(c.Send(wire.substr(head_end + third, third)));
  ASSERT_TRUE(c.Send(wire.substr(head_end + 2 * third)));
  auto r = c.Read();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 202) << r->body;
  // The same connection, after going idle, serves the next webhook.
  std::string small = CompactPayload("issue.created.json");
  ASSERT_TRUE(c.Send(BuildRequest("POST", "/hooks/sentry",
                                  SentryHeaders("issue", SentrySignature(kSecret, small)), small)));
  auto r2 = c.Read();
  ASSERT_TRUE(r2);
  EXPECT_EQ(r2->status, 202) << r2->body;
}

TEST_F(IngestTest, OversizedHeadIs431) {
  StartDaemon({.server_extra = "  max_header_bytes: 2048\n"});
  auto r = Fetch(daemon_.port(), "GET", "/hooks/sentry", {{"X-Big", std::string(4096, 'h')}});
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 431);
}

TEST_F(IngestTest, GarbageRequestLineIs400) {
  StartDaemon();
  RawConnection c(daemon_.port());
  ASSERT_TRUE(c.Send("NOT HTTP AT ALL\r\n\r\n"));
  auto r = c.Read();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 400);
}

TEST_F(IngestTest, HundredsOfConcurrentKeepAliveConnectionsAreAllServed) {
  StartDaemon({.storage_extra = "  dedupe_window: 0\n"});
  constexpr int kConnections = 300;
  constexpr int kRequestsEach = 3;
  std::vector<std::unique_ptr<RawConnection>> conns;
  for (int i = 0; i < kConnections; ++i)
    conns.push_back(std::make_unique<RawConnection>(daemon_.port()));
  std::string body = CompactPayload("issue.created.json");
  std::string req = BuildRequest("POST", "/hooks/sentry",
                                 SentryHeaders("issue", SentrySignature(kSecret, body)), body);
  int accepted = 0;
  for (int round = 0; round < kRequestsEach; ++round) {
    for (auto& c : conns) ASSERT_TRUE(c->Send(req));  // all in flight at once
    for (auto& c : conns) {
      auto r = c->Read(std::chrono::seconds(30));
      ASSERT_TRUE(r);
      accepted += r->status == 202;
    }
  }
  EXPECT_EQ(accepted, kConnections * kRequestsEach);
}

TEST_F(IngestTest, SigtermExitsZeroAndReadyzTurnsUnready) {
  StartDaemon();
  auto ready = Fetch(daemon_.admin_port(), "GET", "/readyz");
  ASSERT_TRUE(ready);
  EXPECT_EQ(ready->status, 200);
  EXPECT_EQ(daemon_.Terminate(), 0);
  EXPECT_NE(daemon_.Log().find("stopped"), std::string::npos);
}

TEST_F(IngestTest, SigtermFinishesAnInFlightRequestWhileReadyzSays503) {
  StartDaemon({.server_extra = "  body_timeout: 10s\n"});
  std::string body = CompactPayload("issue.created.json");
  std::string req = BuildRequest("POST", "/hooks/sentry",
                                 SentryHeaders("issue", SentrySignature(kSecret, body)), body);
  RawConnection c(daemon_.port());
  // Send all but the last byte, stop the daemon, then complete the request.
  ASSERT_TRUE(c.Send(req.substr(0, req.size() - 1)));
  ASSERT_TRUE(daemon_.WaitForLog("switchyard started"));
  daemon_.Signal(SIGTERM);
  ASSERT_TRUE(daemon_.WaitForLog("stopping"));
  // Draining: the admin listener still answers, and says not ready; no new webhook connection.
  auto ready = Fetch(daemon_.admin_port(), "GET", "/readyz");
  ASSERT_TRUE(ready);
  EXPECT_EQ(ready->status, 503);
  bool refused = false;
  try {
    refused = !Fetch(daemon_.port(), "POST", "/hooks/sentry", {}, "{}");
  } catch (const std::exception&) {
    refused = true;  // connection refused
  }
  EXPECT_TRUE(refused) << "the public listener accepts nothing new";
  ASSERT_TRUE(c.Send(req.substr(req.size() - 1)));
  auto r = c.Read();
  ASSERT_TRUE(r);
  // A request in flight at SIGTERM is finished: stored and acknowledged.
  EXPECT_EQ(r->status, 202) << r->body;
  EXPECT_EQ(r->Header("Connection"), "close");
  auto code = daemon_.WaitExit(std::chrono::seconds(20));
  ASSERT_TRUE(code);
  EXPECT_EQ(*code, 0);
  daemon_.Restart();
  auto again = Post(body);
  ASSERT_TRUE(again);
  EXPECT_EQ(again->status, 200) << "stored before the 202: a duplicate now";
}

TEST_F(IngestTest, SigtermStopsWithinShutdownTimeoutWithStuckRequestsAndDeliveries) {
  RecordingReceiver receiver;
  receiver.SetDefault({.status = 200, .delay = std::chrono::seconds(60)});  // never in time
  StartDaemon({.server_extra = "  body_timeout: 60s\n  shutdown_timeout: 4s\n",
               .tail = "sinks:\n  slow: {type: http, url: \"" + receiver.url("/") +
                       "\", timeout: 60s}\nroutes:\n  - name: all\n    to: [slow]\n"});
  ASSERT_EQ(Post(CompactPayload("issue.created.json"))->status, 202);
  ASSERT_TRUE(receiver.WaitFor(1, std::chrono::seconds(20)));  // a delivery is in flight
  RawConnection stuck(daemon_.port());
  ASSERT_TRUE(stuck.Send("POST /hooks/sentry HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"));
  ASSERT_TRUE(daemon_.WaitForLog("switchyard started"));
  const auto t0 = std::chrono::steady_clock::now();
  daemon_.Signal(SIGTERM);
  auto code = daemon_.WaitExit(std::chrono::seconds(30));
  const auto took = std::chrono::steady_clock::now() - t0;
  ASSERT_TRUE(code);
  EXPECT_EQ(*code, 0);
  // shutdown_timeout bounds the whole stop (it used to take ~1.5x it): 4 s, plus a margin for
  // process start-up noise, well under the 6 s the old sequence needed.
  EXPECT_LT(took, std::chrono::milliseconds(5500))
      << std::chrono::duration_cast<std::chrono::milliseconds>(took).count() << " ms";
}

TEST_F(IngestTest, MetricsExposeIngestCountersInTextFormat004) {
  StartDaemon();
  std::string body = CompactPayload("issue.created.json");
  ASSERT_EQ(Post(body)->status, 202);
  ASSERT_EQ(Post(body)->status, 200);
  ASSERT_EQ(Post(body, "issue", std::string(64, '0'))->status, 401);
  auto m = Fetch(daemon_.admin_port(), "GET", "/metrics");
  ASSERT_TRUE(m);
  EXPECT_EQ(m->status, 200);
  EXPECT_EQ(m->Header("Content-Type"), "text/plain; version=0.0.4; charset=utf-8");
  const std::string& t = m->body;
  EXPECT_NE(t.find("switchyard_webhooks_received_total{outcome=\"accepted\",resource=\"issue\","
                   "source=\"sentry\"} 1"),
            std::string::npos)
      << t;
  EXPECT_NE(t.find("switchyard_webhooks_received_total{outcome=\"duplicate\",resource=\"issue\","
                   "source=\"sentry\"} 1"),
            std::string::npos);
  EXPECT_NE(t.find("switchyard_webhooks_rejected_total{reason=\"signature\",source=\"sentry\"} 1"),
            std::string::npos);
  EXPECT_NE(t.find("switchyard_ingest_duration_seconds_count 2"), std::string::npos);
  EXPECT_NE(t.find("process_resident_memory_bytes"), std::string::npos);
  EXPECT_NE(t.find("process_start_time_seconds"), std::string::npos);
  EXPECT_EQ(t.back(), '\n');
}

TEST_F(IngestTest, UnknownResourceValuesDoNotCreateUnboundedMetricLabels) {
  StartDaemon();
  for (int i = 0; i < 5; ++i) {
    std::string body = "{\"action\":\"x\",\"n\":" + std::to_string(i) + "}";
    ASSERT_EQ(Post(body, "made-up-" + std::to_string(i))->status, 202);
  }
  auto m = Fetch(daemon_.admin_port(), "GET", "/metrics");
  ASSERT_TRUE(m);
  EXPECT_EQ(m->body.find("made-up"), std::string::npos);
  EXPECT_NE(m->body.find("resource=\"other\",source=\"sentry\"} 5"), std::string::npos) << m->body;
}

TEST_F(IngestTest, HealthzIsAlways200) {
  StartDaemon();
  auto r = Fetch(daemon_.admin_port(), "GET", "/healthz");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
}

// Disk full: a real small filesystem (tmpfs) under the store. Needs root for mount(2).
TEST_F(IngestTest, DiskFullAnswers503WithRetryAfterAndRecoversWhenSpaceReturns) {
  std::string mnt = dir_.File("small");
  std::filesystem::create_directories(mnt);
  if (mount("tmpfs", mnt.c_str(), "tmpfs", 0, "size=48m") != 0) {
    GTEST_SKIP() << "cannot mount a tmpfs here (needs root): " << strerror(errno);
  }
  struct Unmount {
    std::string path;
    ~Unmount() { umount2(path.c_str(), MNT_DETACH); }
  } unmount{mnt};
  StartDaemon({.storage_path = mnt + "/var",
               .storage_extra = "  dedupe_window: 0\n  min_free_bytes: 4194304\n"});
  // Leave almost no room: fill the filesystem with a ballast file.
  {
    std::ofstream ballast(mnt + "/ballast", std::ios::binary);
    std::string mb(1 << 20, 'b');
    for (int i = 0; i < 64 && ballast.write(mb.data(), mb.size()); ++i) {
    }
  }
  std::string pad(60000, 'p');
  int status = 0;
  std::optional<HttpResponse> r;
  for (int i = 0; i < 400 && status != 503; ++i) {
    std::string body =
        "{\"action\":\"created\",\"i\":" + std::to_string(i) + ",\"p\":\"" + pad + "\"}";
    r = Post(body);
    ASSERT_TRUE(r);
    status = r->status;
    ASSERT_TRUE(status == 202 || status == 503) << status << " " << r->body;
  }
  ASSERT_EQ(status, 503) << "the filesystem never filled up";
  EXPECT_FALSE(r->Header("Retry-After").empty());
  auto health = Fetch(daemon_.admin_port(), "GET", "/healthz");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 200);  // no crash
  // Space returns: the daemon accepts again without a restart.
  std::filesystem::remove(mnt + "/ballast");
  bool recovered = false;
  for (int i = 0; i < 200 && !recovered; ++i) {
    auto again = Post("{\"action\":\"created\",\"after\":" + std::to_string(i) + "}");
    ASSERT_TRUE(again);
    recovered = again->status == 202;
    if (!recovered)
      std::this_thread::sleep_for(
          std::chrono::milliseconds(50));  // RocksDB recovery is asynchronous
  }
  EXPECT_TRUE(recovered) << daemon_.Log();
  EXPECT_EQ(daemon_.Terminate(), 0);
}

}  // namespace
}  // namespace switchyard::testing
