// End-to-end tests of hostile input on both listeners, beyond what ingest_test.cc covers (one
// slowloris head, one stalled body, one oversized header, garbage request line, shallow nesting,
// one invalid UTF-8 string): mass slowloris, trickled bodies, header floods, ambiguous framing
// (request smuggling), bad chunk sizes, obs-fold, deep nesting, invalid UTF-8 in all its forms,
// huge numbers, template text inside payloads, path tricks and admin tokens. Each gets a precise
// answer, and the daemon stays healthy after each.
#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <memory>
#include <set>
#include <thread>
#include <tuple>

#include "fakes/recording_receiver.h"
#include "support/daemon_process.h"
#include "support/http_client.h"
#include "support/metrics_text.h"
#include "support/sentry.h"
#include "support/temp_dir.h"

namespace switchyard::testing {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr char kSecret[] = "hostile-input-secret";
constexpr char kAdminToken[] = "admin-token-0123456789";
constexpr auto kWait = seconds(20);

using Headers = std::vector<std::pair<std::string, std::string>>;

// A correctly signed webhook request, as wire bytes.
std::string Signed(const std::string& body, const std::string& target = "/hooks/sentry") {
  return BuildRequest("POST", target, SentryHeaders("issue", SentrySignature(kSecret, body)), body);
}

class HostileInputTest : public ::testing::Test {
 protected:
  // Every webhook goes to two http sinks: "rcv" gets the route's rendered body template, "raw"
  // the original payload.
  void StartDaemon(const std::string& server_extra = "") {
    daemon_.Start(
        "server:\n  listen: 127.0.0.1:0\n  admin_listen: 127.0.0.1:0\n  threads: 2\n"
        "  admin_token: " +
        std::string(kAdminToken) + "\n" + server_extra + "storage:\n  path: " + dir_.path() +
        "/var\n"
        "sources:\n  sentry:\n    type: sentry\n    client_secret: " +
        kSecret +
        "\n"
        "sinks:\n  rcv:\n    type: http\n    url: " +
        receiver_.url("/in") +
        "\n"
        "  raw:\n    type: http\n    url: " +
        raw_.url("/raw") +
        "\n"
        "retry:\n  initial: 50ms\n  max_delay: 100ms\n  jitter: 0\n"
        "routes:\n"
        "  - name: render\n    to:\n      - sink: rcv\n"
        "        body: '{\"title\":{{ data.issue.title | json }},"
        "\"culprit\":\"{{ data.issue.culprit }}\"}'\n"
        "  - name: original\n    to: [raw]\n");
  }

  int Post(const std::string& body, const std::string& target = "/hooks/sentry") {
    auto r = Fetch(daemon_.port(), "POST", target,
                   SentryHeaders("issue", SentrySignature(kSecret, body)), body);
    return r ? r->status : 0;
  }

  // Sends raw bytes on a fresh connection and reads one response.
  std::optional<HttpResponse> Raw(const std::string& bytes) {
    RawConnection c(daemon_.port());
    if (!c.Send(bytes)) return std::nullopt;
    return c.Read();
  }

  std::optional<HttpResponse> Admin(const std::string& method, const std::string& target,
                                    const std::string& authorization = "",
                                    const std::string& body = "") {
    Headers h = {{"Content-Type", "application/json"}};
    if (!authorization.empty()) h.emplace_back("Authorization", authorization);
    return Fetch(daemon_.admin_port(), method, target, h, body);
  }

  // Both listeners still answer: the process survived and is not wedged.
  void ExpectHealthy(const std::string& after) {
    auto health = Fetch(daemon_.admin_port(), "GET", "/healthz");
    ASSERT_TRUE(health) << "after " << after;
    EXPECT_EQ(health->status, 200) << "after " << after;
    auto pub = Fetch(daemon_.port(), "GET", "/nothing-here");
    ASSERT_TRUE(pub) << "after " << after;
    EXPECT_EQ(pub->status, 404) << "after " << after;
  }

  // The dedupe index as an oracle: true if `body` was never stored (a fresh post is a 202, not a
  // 200 duplicate). Stores it as a side effect.
  bool NeverStored(const std::string& body) { return Post(body) == 202; }

  TempDir dir_;
  RecordingReceiver receiver_;
  RecordingReceiver raw_;
  DaemonProcess daemon_{dir_.path()};
};

// ---- slow clients ----

TEST_F(HostileInputTest, HundredsOfSlowlorisConnectionsDoNotStarveARealSender) {
  StartDaemon("  header_timeout: 1s\n");
  std::vector<std::unique_ptr<RawConnection>> slow;
  for (int i = 0; i < 300; ++i) {
    slow.push_back(std::make_unique<RawConnection>(daemon_.port()));
    ASSERT_TRUE(slow.back()->Send("POST /hooks/sentry HTTP/1.1\r\nHost: x\r\nX-Slow: "));
  }
  // While they all hold a connection with half a head, a real webhook is answered.
  EXPECT_EQ(Post("{\"action\":\"created\",\"during\":\"slowloris\"}"), 202);
  // Then every one of them is cut off at the head deadline.
  for (auto& c : slow) EXPECT_TRUE(c->WaitClosed(seconds(10)));
  ExpectHealthy("slowloris");
}

TEST_F(HostileInputTest, BodyTrickledFasterThanAnyIdleTimeoutIsStillCutAtBodyTimeout) {
  StartDaemon("  body_timeout: 500ms\n");
  RawConnection c(daemon_.port());
  ASSERT_TRUE(
      c.Send("POST /hooks/sentry HTTP/1.1\r\nHost: x\r\nSentry-Hook-Resource: issue\r\n"
             "Content-Length: 400\r\n\r\n"));
  // One byte every 25 ms would take 10 s; body_timeout bounds the whole body, not each read.
  bool closed = false;
  for (int i = 0; i < 400 && !closed; ++i) {
    if (!c.Send("x")) break;
    closed = c.WaitClosed(milliseconds(25));
  }
  EXPECT_TRUE(closed || !c.Send("x"));
  ExpectHealthy("slow body");
}

// ---- oversized and flooded heads ----

TEST_F(HostileInputTest, HeaderFloodAndHugeRequestLineAre431) {
  StartDaemon();
  Headers flood;
  for (int i = 0; i < 5000; ++i) flood.emplace_back("X-F" + std::to_string(i), "v");
  auto r = Raw(BuildRequest("GET", "/hooks/sentry", flood, ""));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 431);
  auto line = Raw(BuildRequest("GET", "/hooks/" + std::string(20000, 'a'), {}, ""));
  ASSERT_TRUE(line);
  EXPECT_EQ(line->status, 431);
  ExpectHealthy("header flood");
}

// A client that sends its whole request before reading (most do) must get the 413, not a reset:
// closing with its body unread in the receive queue made the kernel answer with a RST.
TEST_F(HostileInputTest, ABodyOverTheLimitIsAnswered413WhileTheClientIsStillSendingIt) {
  StartDaemon("  max_body_bytes: 65536\n");
  const std::string body(4 << 20, 'x');
  RawConnection c(daemon_.port());
  ASSERT_TRUE(c.Send("POST /hooks/sentry HTTP/1.1\r\nHost: x\r\nSentry-Hook-Resource: issue\r\n"
                     "Content-Length: " +
                     std::to_string(body.size()) + "\r\n\r\n"));
  EXPECT_TRUE(c.Send(body)) << "the connection was reset while the body was being sent";
  auto r = c.Read();
  ASSERT_TRUE(r) << "no answer read";
  EXPECT_EQ(r->status, 413);
  EXPECT_TRUE(c.WaitClosed(seconds(10)));
  ExpectHealthy("an oversized body");
}

// ---- framing: request smuggling ----

// A complete, correctly signed webhook, to hide inside another request's body.
std::string HiddenRequest(const std::string& body) { return Signed(body); }

struct Smuggle {
  const char* name;
  int status;  // the one answer on the connection
  std::string (*wire)(const std::string& hidden);
};

void PrintTo(const Smuggle& s, std::ostream* os) { *os << s.name; }

class SmugglingTest : public HostileInputTest, public ::testing::WithParamInterface<Smuggle> {};

// The hidden request is never processed: exactly one answer (the precise 4xx/5xx), the connection
// is closed, and the hidden webhook was never stored.
TEST_P(SmugglingTest, HiddenRequestIsNeverProcessed) {
  StartDaemon();
  const std::string hidden_body =
      std::string("{\"action\":\"created\",\"smuggled\":\"") + GetParam().name + "\"}";
  RawConnection c(daemon_.port());
  ASSERT_TRUE(c.Send(GetParam().wire(HiddenRequest(hidden_body))));
  auto r = c.Read();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, GetParam().status) << r->body;
  EXPECT_EQ(r->Header("Connection"), "close");
  EXPECT_TRUE(c.WaitClosed(seconds(5)));  // no second answer: the connection just ends
  EXPECT_TRUE(NeverStored(hidden_body));
  ExpectHealthy(GetParam().name);
}

const std::string kHead =
    "POST /hooks/sentry HTTP/1.1\r\nHost: x\r\nSentry-Hook-Resource: issue\r\n"
    "Sentry-Hook-Signature: 00\r\n";

std::string Chunk(const std::string& data) {
  char size[32];
  snprintf(size, sizeof size, "%zx\r\n", data.size());
  return size + data + "\r\n";
}

INSTANTIATE_TEST_SUITE_P(
    Framing, SmugglingTest,
    ::testing::Values(
        // Beast would read no body for a non-chunked Transfer-Encoding and take the body for the
        // next request (RFC 9112 §6.1: 400 and close).
        Smuggle{
            "TransferEncodingIdentity", 400,
            [](const std::string& h) { return kHead + "Transfer-Encoding: identity\r\n\r\n" + h; }},
        Smuggle{"TransferEncodingGzipOnly", 400,
                [](const std::string& h) { return kHead + "Transfer-Encoding: gzip\r\n\r\n" + h; }},
        Smuggle{
            "TransferEncodingNotAToken", 400,
            [](const std::string& h) { return kHead + "Transfer-Encoding: xchunked\r\n\r\n" + h; }},
        Smuggle{"TransferEncodingIdentityWithContentLength", 400,
                [](const std::string& h) {
                  return kHead + "Transfer-Encoding: identity\r\nContent-Length: " +
                         std::to_string(h.size()) + "\r\n\r\n" + h;
                }},
        Smuggle{"ChunkedThenContentLength", 400,
                [](const std::string& h) {
                  std::string body = "0\r\n\r\n" + h;
                  return kHead + "Transfer-Encoding: chunked\r\nContent-Length: " +
                         std::to_string(body.size()) + "\r\n\r\n" + body;
                }},
        Smuggle{"ContentLengthThenChunked", 400,
                [](const std::string& h) {
                  std::string body = "0\r\n\r\n" + h;
                  return kHead + "Content-Length: " + std::to_string(body.size()) +
                         "\r\nTransfer-Encoding: chunked\r\n\r\n" + body;
                }},
        Smuggle{"TwoTransferEncodingFields", 400,
                [](const std::string& h) {
                  return kHead +
                         "Transfer-Encoding: identity\r\nTransfer-Encoding: chunked\r\n\r\n" +
                         Chunk(h) + "0\r\n\r\n";
                }},
        Smuggle{"ChunkedAppliedTwice", 400,
                [](const std::string& h) {
                  return kHead + "Transfer-Encoding: chunked, chunked\r\n\r\n" + Chunk(h) +
                         "0\r\n\r\n";
                }},
        Smuggle{"UnsupportedCodingBeforeChunked", 501,
                [](const std::string& h) {
                  return kHead + "Transfer-Encoding: gzip, chunked\r\n\r\n" + Chunk(h) +
                         "0\r\n\r\n";
                }},
        Smuggle{"TransferEncodingInHttp10", 400,
                [](const std::string& h) {
                  std::string head = kHead;
                  head.replace(head.find("HTTP/1.1"), 8, "HTTP/1.0");
                  return head + "Transfer-Encoding: chunked\r\n\r\n" + Chunk(h) + "0\r\n\r\n";
                }},
        Smuggle{"DifferentContentLengths", 400,
                [](const std::string& h) {
                  return kHead +
                         "Content-Length: 0\r\nContent-Length: " + std::to_string(h.size()) +
                         "\r\n\r\n" + h;
                }},
        Smuggle{"ContentLengthList", 400,
                [](const std::string& h) {
                  return kHead + "Content-Length: 0, " + std::to_string(h.size()) + "\r\n\r\n" + h;
                }},
        Smuggle{"SpaceBeforeColon", 400,
                [](const std::string& h) {
                  return kHead + "Transfer-Encoding : chunked\r\nContent-Length: 0\r\n\r\n" + h;
                }}),
    [](const ::testing::TestParamInfo<Smuggle>& info) { return std::string(info.param.name); });

// Consistent framing whose body happens to be a request: it is a body (the signature holds over
// it, then it is not JSON: 400), the connection goes on, and the next request's answer is the
// next one on the wire.
TEST_F(HostileInputTest, RequestInsideAContentLengthBodyIsJustABody) {
  StartDaemon();
  const std::string hidden_body = "{\"action\":\"created\",\"inside\":\"content-length\"}";
  const std::string outer = HiddenRequest(hidden_body);
  RawConnection c(daemon_.port());
  ASSERT_TRUE(c.Send(Signed(outer) + BuildRequest("GET", "/after", {}, "")));
  auto first = c.Read(), second = c.Read();
  ASSERT_TRUE(first && second);
  EXPECT_EQ(first->status, 400);
  EXPECT_EQ(second->status, 404);  // the GET, not a 202 for the hidden webhook
  EXPECT_TRUE(NeverStored(hidden_body));
  ExpectHealthy("request in body");
}

TEST_F(HostileInputTest, BadChunkSizesAre400) {
  StartDaemon();
  const std::string head = kHead + "Transfer-Encoding: chunked\r\n\r\n";
  const std::vector<std::pair<std::string, std::string>> bodies = {
      {"not hex", "zz\r\nabc\r\n0\r\n\r\n"},
      {"negative", "-1\r\nabc\r\n0\r\n\r\n"},
      {"overflow", "fffffffffffffffffffffff\r\nabc\r\n0\r\n\r\n"},
      {"0x prefix", "0x3\r\nabc\r\n0\r\n\r\n"},
      {"empty size", "\r\nabc\r\n0\r\n\r\n"},
      {"data longer than size", "2\r\nabcdef\r\n0\r\n\r\n"},
      {"control byte in a chunk extension", "3;\x01\r\nabc\r\n0\r\n\r\n"},
  };
  for (const auto& [name, body] : bodies) {
    auto r = Raw(head + body);
    ASSERT_TRUE(r) << name;
    EXPECT_EQ(r->status, 400) << name << ": " << r->body;
  }
  ExpectHealthy("bad chunks");
}

// RFC 9112 3.2: an HTTP/1.1 request must carry exactly one Host. With two, a proxy in front may
// have routed by one and we would act on the other; both are refused before the body is read.
TEST_F(HostileInputTest, AnHttpOneOneRequestWithoutHostOrWithTwoIs400) {
  StartDaemon();
  const std::string body = "{\"action\":\"created\"}";
  const std::string rest =
      "Sentry-Hook-Resource: issue\r\nSentry-Hook-Signature: " + SentrySignature(kSecret, body) +
      "\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
  auto none = Raw("POST /hooks/sentry HTTP/1.1\r\n" + rest);
  ASSERT_TRUE(none);
  EXPECT_EQ(none->status, 400) << none->body;
  EXPECT_NE(none->body.find("no Host field"), std::string::npos) << none->body;
  auto two = Raw("POST /hooks/sentry HTTP/1.1\r\nHost: a\r\nHost: b\r\n" + rest);
  ASSERT_TRUE(two);
  EXPECT_EQ(two->status, 400) << two->body;
  auto one = Raw("POST /hooks/sentry HTTP/1.1\r\nHost: a\r\n" + rest);
  ASSERT_TRUE(one);
  EXPECT_EQ(one->status, 202) << one->body;  // the same request with one Host is stored
  ExpectHealthy("host fields");
}

// RFC 9112 §5.2 lets a server replace obs-fold with spaces (Beast does): a folded signature
// is then a different value and fails (401), never a bypass; a folded harmless header is fine.
TEST_F(HostileInputTest, ObsFoldIsUnfoldedAndCannotSmuggleASignature) {
  StartDaemon();
  const std::string body = "{\"action\":\"created\",\"fold\":1}";
  const std::string sig = SentrySignature(kSecret, body);
  const std::string base =
      "POST /hooks/sentry HTTP/1.1\r\nHost: x\r\nSentry-Hook-Resource: issue\r\n"
      "Content-Length: " +
      std::to_string(body.size()) + "\r\n";
  auto folded_sig = Raw(base + "Sentry-Hook-Signature: " + sig.substr(0, 20) + "\r\n " +
                        sig.substr(20) + "\r\n\r\n" + body);
  ASSERT_TRUE(folded_sig);
  EXPECT_EQ(folded_sig->status, 401);
  auto folded_other =
      Raw(base + "Sentry-Hook-Signature: " + sig + "\r\nX-Note: one\r\n\ttwo\r\n\r\n" + body);
  ASSERT_TRUE(folded_other);
  EXPECT_EQ(folded_other->status, 202) << folded_other->body;
  ExpectHealthy("obs-fold");
}

// ---- payloads ----

TEST_F(HostileInputTest, PathologicalNestingIs400WithoutHarm) {
  StartDaemon();  // default max_json_depth: 128
  const std::vector<std::pair<std::string, std::string>> bodies = {
      {"arrays", "{\"a\":" + std::string(500000, '[') + std::string(500000, ']') + "}"},
      {"unclosed", "{\"a\":" + std::string(900000, '[')},
      {"objects",
       [] {
         std::string s;
         for (int i = 0; i < 100000; ++i) s += "{\"a\":";
         s += "1";
         s += std::string(100000, '}');
         return s;
       }()},
      // The object and 128 arrays: 129 nested containers.
      {"one over", "{\"a\":" + std::string(128, '[') + "1" + std::string(128, ']') + "}"},
  };
  for (const auto& [name, body] : bodies) {
    EXPECT_EQ(Post(body), 400) << name;
  }
  EXPECT_EQ(Post("{\"a\":" + std::string(127, '[') + "1" + std::string(127, ']') + "}"), 202);
  ExpectHealthy("deep nesting");
}

TEST_F(HostileInputTest, EveryKindOfInvalidUtf8Is400) {
  StartDaemon();
  const std::vector<std::pair<std::string, std::string>> bad = {
      {"overlong slash", "\xc0\xaf"},
      {"overlong NUL", "\xc0\x80"},
      {"UTF-16 surrogate as UTF-8", "\xed\xa0\x80"},
      {"truncated sequence", "\xe6\x97"},
      {"five-byte form", "\xf8\x88\x80\x80\x80"},
      {"above U+10FFFF", "\xf4\x90\x80\x80"},
      {"lone continuation", "\x80"},
  };
  for (const auto& [name, bytes] : bad) {
    EXPECT_EQ(Post("{\"action\":\"created\",\"v\":\"" + bytes + "\"}"), 400)
        << name << " in a value";
    EXPECT_EQ(Post("{\"action\":\"created\",\"" + bytes + "\":1}"), 400) << name << " in a key";
  }
  // Escapes that name no character: unpaired UTF-16 surrogates.
  for (const std::string escape : {"\\ud800", "\\udc00", "\\ud800\\u0041"}) {
    EXPECT_EQ(Post("{\"action\":\"created\",\"v\":\"" + escape + "\"}"), 400) << escape;
  }
  ExpectHealthy("invalid UTF-8");
}

// Numbers are validated as simdjson reads them: integers must fit in int64 or uint64 and
// decimals must be finite doubles; others get 400 with the reason (a documented limit, not a
// crash). Accepted ones are stored and delivered byte for byte, never re-serialized.
TEST_F(HostileInputTest, HugeNumbersGetAPreciseAnswerAndAcceptedOnesArriveByteForByte) {
  StartDaemon();
  const std::vector<std::pair<std::string, int>> numbers = {
      {"18446744073709551615", 202},  // uint64 max
      {"-9223372036854775808", 202},  // int64 min
      {"1e308", 202},
      {"1e-400", 202},                          // underflows to 0: still a finite double
      {"0.1000000000000000000000000001", 202},  // more digits than a double holds
      {"-0", 202},
      {"18446744073709551616", 400},  // uint64 max + 1
      {"-9223372036854775809", 400},  // int64 min - 1
      {"123456789012345678901234567890", 400},
      {"1e400", 400},
      {"-1e400", 400},
  };
  std::vector<std::string> accepted;
  for (const auto& [n, want] : numbers) {
    const std::string body = "{\"action\":\"created\",\"n\":" + n + "}";
    auto r = Fetch(daemon_.port(), "POST", "/hooks/sentry",
                   SentryHeaders("issue", SentrySignature(kSecret, body)), body);
    ASSERT_TRUE(r) << n;
    EXPECT_EQ(r->status, want) << n << ": " << r->body;
    if (want == 400) {
      EXPECT_NE(r->body.find("number out of range"), std::string::npos) << r->body;
    }
    if (r->status == 202) accepted.push_back(body);
  }
  ASSERT_TRUE(raw_.WaitFor(accepted.size(), kWait));
  std::multiset<std::string> delivered;
  for (const auto& req : raw_.requests()) delivered.insert(req.body);
  EXPECT_EQ(delivered, std::multiset<std::string>(accepted.begin(), accepted.end()));
  ExpectHealthy("huge numbers");
}

// Values are inserted, never evaluated: "{{ … }}" in a payload arrives literally.
TEST_F(HostileInputTest, TemplateTextInsidePayloadValuesIsDeliveredLiterally) {
  StartDaemon();
  boost::json::object issue{{"title", "{{ data.secret }}"}, {"culprit", "{{ data.issue.title }}"}};
  boost::json::object data{{"issue", issue}, {"secret", "MUST-NOT-APPEAR"}};
  const std::string body =
      boost::json::serialize(boost::json::object{{"action", "created"}, {"data", data}});
  ASSERT_EQ(Post(body), 202);
  ASSERT_TRUE(receiver_.WaitFor(1, kWait));
  const std::string got = receiver_.requests().at(0).body;
  EXPECT_EQ(got, "{\"title\":\"{{ data.secret }}\",\"culprit\":\"{{ data.issue.title }}\"}");
  EXPECT_EQ(got.find("MUST-NOT-APPEAR"), std::string::npos);
  ExpectHealthy("template text");
}

// ---- paths ----

TEST_F(HostileInputTest, PathTricksOnThePublicListenerAre404) {
  StartDaemon();
  const std::string body = "{\"action\":\"created\",\"path\":\"trick\"}";
  for (const std::string target :
       {"/hooks/../hooks/sentry", "/hooks/./sentry", "/hooks/sentry/../sentry", "/hooks//sentry",
        "//hooks/sentry", "/hooks/%2e%2e/hooks/sentry", "/hooks/sentry%2f..%2fsentry",
        "/hooks/%73entry", "/HOOKS/sentry", "/hooks/sentry/", "/hooks/sentry%00",
        "/hooks/..%2fadmin/queue", "/admin/queue", "/../admin/queue", "/metrics",
        "/setup/../hooks/sentry"}) {
    auto r = Raw(Signed(body, target));
    ASSERT_TRUE(r) << target;
    EXPECT_EQ(r->status, 404) << target << ": " << r->body;
    EXPECT_EQ(r->body.find("pending"), std::string::npos) << target;
  }
  EXPECT_TRUE(NeverStored(body));  // none of them reached the store
  // A query string does not change where a webhook goes.
  EXPECT_EQ(Post("{\"action\":\"created\",\"q\":1}", "/hooks/sentry?x=../../admin"), 202);
  ExpectHealthy("path tricks");
}

TEST_F(HostileInputTest, PathTricksOnTheAdminListenerNeverReachAdminData) {
  StartDaemon();
  const std::string bearer = std::string("Bearer ") + kAdminToken;
  for (const std::string target :
       {"/healthz/../admin/queue", "//admin/queue", "/admin%2fqueue", "/%61dmin/queue",
        "/Admin/queue", "/metrics/../admin/dlq", "/readyz/../admin/dlq"}) {
    auto r = Admin("GET", target);
    ASSERT_TRUE(r) << target;
    EXPECT_EQ(r->status, 404) << target;
    EXPECT_EQ(r->body.find("pending"), std::string::npos) << target;
  }
  // Under /admin/ the token is checked first, whatever follows.
  for (const std::string target : {"/admin/../metrics", "/admin/queue/", "/admin/%2e%2e/queue"}) {
    auto r = Admin("GET", target);
    ASSERT_TRUE(r) << target;
    EXPECT_EQ(r->status, 401) << target;
    auto with = Admin("GET", target, bearer);
    ASSERT_TRUE(with) << target;
    EXPECT_EQ(with->status, 404) << target;
  }
  ExpectHealthy("admin path tricks");
}

// ---- admin token ----

TEST_F(HostileInputTest, EveryAdminEndpointRefusesMissingAndWrongTokensWithoutSideEffects) {
  receiver_.EnqueueStatus(400);  // one dead letter to replay or drop
  StartDaemon();
  ASSERT_EQ(Post("{\"action\":\"created\",\"dead\":1}"), 202);
  const std::string good = std::string("Bearer ") + kAdminToken;
  auto queue = [&] { return Admin("GET", "/admin/queue", good); };
  // Settled: the "rcv" delivery is dead, the "raw" one delivered.
  auto deadline = std::chrono::steady_clock::now() + kWait;
  while (!queue()->body.starts_with("{\"pending\":0,\"dead\":1")) {
    ASSERT_LT(std::chrono::steady_clock::now(), deadline) << queue()->body;
    std::this_thread::sleep_for(milliseconds(20));  // polling the daemon's state
  }
  auto dlq = boost::json::parse(Admin("GET", "/admin/dlq", good)->body).as_array();
  ASSERT_EQ(dlq.size(), 1u);
  const std::string id(dlq[0].at("id").as_string());
  const std::string t = kAdminToken;
  const std::vector<std::string> wrong = {
      "",                                     // none
      "Bearer wrong",                         //
      "Bearer " + t + "x",                    // longer
      "Bearer " + t.substr(0, t.size() - 1),  // prefix
      "Bearer " + t.substr(1),                // suffix
      "Basic " + t,                           // other scheme
      t,                                      // no scheme
      "Bearer  " + t,                         // extra space
      "Bearer",                               // scheme only
  };
  const std::vector<std::tuple<std::string, std::string, std::string>> endpoints = {
      {"GET", "/admin/queue", ""},
      {"GET", "/admin/dlq", ""},
      {"GET", "/admin/installations", ""},
      {"POST", "/admin/dlq/replay", "{\"all\":true}"},
      {"POST", "/admin/dlq/replay", "{\"ids\":[\"" + id + "\"]}"},
      {"POST", "/admin/dlq/drop", "{\"ids\":[\"" + id + "\"]}"},
      {"POST", "/admin/reload", ""},
  };
  const std::string metrics_before = Fetch(daemon_.admin_port(), "GET", "/metrics")->body;
  for (const auto& [method, target, body] : endpoints) {
    for (const std::string& auth : wrong) {
      auto r = Admin(method, target, auth, body);
      ASSERT_TRUE(r) << method << " " << target << " with '" << auth << "'";
      EXPECT_EQ(r->status, 401) << method << " " << target << " with '" << auth << "'";
      EXPECT_EQ(r->Header("WWW-Authenticate"), "Bearer");
      EXPECT_EQ(r->body.find(t), std::string::npos);
    }
  }
  // Nothing happened: the dead letter is still there, no reload was attempted.
  EXPECT_TRUE(queue()->body.starts_with("{\"pending\":0,\"dead\":1")) << queue()->body;
  const std::string metrics_after = Fetch(daemon_.admin_port(), "GET", "/metrics")->body;
  for (const char* outcome : {"success", "failure"}) {
    const std::string series =
        std::string("switchyard_config_reloads_total{outcome=\"") + outcome + "\"}";
    EXPECT_EQ(MetricValue(metrics_before, series), MetricValue(metrics_after, series)) << series;
  }
  EXPECT_EQ(daemon_.Log().find(t), std::string::npos);
  // The right token works, the scheme in any case (RFC 9110 11.1).
  for (const std::string scheme : {"bearer ", "BEARER "}) {
    auto r = Admin("GET", "/admin/queue", scheme + t);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200) << scheme;
  }
  auto replay = Admin("POST", "/admin/dlq/replay", good, "{\"all\":true}");
  ASSERT_TRUE(replay);
  EXPECT_EQ(replay->body, "{\"replayed\":1}");
  ExpectHealthy("admin tokens");
}

}  // namespace
}  // namespace switchyard::testing
