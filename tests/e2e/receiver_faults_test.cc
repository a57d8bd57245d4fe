// End-to-end tests of receivers that misbehave: slow, hanging after the head, never answering,
// resetting, answering garbage, redirecting, sending huge bodies or heads, or presenting a TLS
// certificate nobody trusts. Each attempt must end within the sink's timeout, be counted in
// switchyard_deliveries_total, and be retried or dead-lettered per the contract ("Retries and
// dead letters": 2xx delivered; timeouts, connection and protocol errors retry; 3xx and other 4xx
// are permanent); and while it happens, webhooks are still answered without waiting.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <boost/json.hpp>
#include <ostream>
#include <thread>
#include <vector>

#include "fakes/evil_receiver.h"
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

constexpr char kSecret[] = "receiver-faults-secret";
constexpr auto kWait = seconds(30);

class ReceiverFaultsTest : public ::testing::Test {
 protected:
  // One http sink "rcv" at `url`; every webhook is routed to it. Retries are quick and end in a
  // dead letter after `max_attempts`.
  void StartDaemon(const std::string& url, const std::string& timeout = "300ms",
                   int max_attempts = 3, int concurrency = 4) {
    daemon_.Start(
        "server:\n  listen: 127.0.0.1:0\n  admin_listen: 127.0.0.1:0\n  threads: 2\n"
        "storage:\n  path: " +
        dir_.path() +
        "/var\n"
        "sources:\n  sentry:\n    type: sentry\n    client_secret: " +
        kSecret +
        "\n"
        "sinks:\n  rcv:\n    type: http\n    url: " +
        url + "\n    timeout: " + timeout + "\n    concurrency: " + std::to_string(concurrency) +
        "\n"
        "retry:\n  initial: 50ms\n  max_delay: 200ms\n  jitter: 0\n  max_attempts: " +
        std::to_string(max_attempts) +
        "\n"
        "routes:\n  - name: to-rcv\n    to: [rcv]\n");
  }

  // Posts a signed webhook with a unique marker; returns the HTTP status (0: no answer).
  int Post(const std::string& marker) {
    std::string body = "{\"action\":\"created\",\"marker\":\"" + marker + "\"}";
    auto r = Fetch(daemon_.port(), "POST", "/hooks/sentry",
                   SentryHeaders("issue", SentrySignature(kSecret, body)), body);
    return r ? r->status : 0;
  }

  std::optional<HttpResponse> Admin(const std::string& method, const std::string& target,
                                    const std::string& body = "") {
    return Fetch(daemon_.admin_port(), method, target, {{"Content-Type", "application/json"}},
                 body);
  }

  std::string Metrics() {
    auto m = Fetch(daemon_.admin_port(), "GET", "/metrics");
    return m ? m->body : "";
  }

  double Deliveries(const std::string& outcome) {
    return DeliveriesTotal(Metrics(), "rcv", outcome);
  }

  // Waits until /admin/queue reports exactly `pending` and `dead`.
  bool WaitQueue(int pending, int dead) {
    const std::string want =
        "{\"pending\":" + std::to_string(pending) + ",\"dead\":" + std::to_string(dead);
    auto deadline = std::chrono::steady_clock::now() + kWait;
    while (std::chrono::steady_clock::now() < deadline) {
      auto q = Admin("GET", "/admin/queue");
      if (q && q->body.starts_with(want)) return true;
      std::this_thread::sleep_for(milliseconds(20));  // polling the daemon's state
    }
    return false;
  }

  boost::json::array Dlq() {
    auto r = Admin("GET", "/admin/dlq");
    if (!r || r->status != 200) return {};
    return boost::json::parse(r->body).as_array();
  }

  TempDir dir_;
  DaemonProcess daemon_{dir_.path()};
};

// A transport-level failure: what the receiver does, and what the dead letter must say.
struct TransportFault {
  const char* name;
  Behavior behavior;
  const char* error;  // substring of last_error
};

void PrintTo(const TransportFault& fault, std::ostream* os) { *os << fault.name; }

class TransportFaultTest : public ReceiverFaultsTest,
                           public ::testing::WithParamInterface<TransportFault> {};

// Each fault ends the attempt (within the sink timeout), counts it as a retry, dead-letters the
// delivery after max_attempts with the reason, and the delivery goes through once the receiver
// behaves and the dead letter is replayed.
TEST_P(TransportFaultTest, IsRetriedThenDeadLetteredWithTheReasonAndReplayDeliversIt) {
  EvilReceiver evil(GetParam().behavior);
  StartDaemon(evil.url("/hook"));
  ASSERT_EQ(Post("m-1"), 202);
  ASSERT_TRUE(WaitQueue(0, 1)) << daemon_.Log();
  EXPECT_EQ(evil.requests(), 3u);  // max_attempts, no more
  EXPECT_EQ(Deliveries("retry"), 2);
  EXPECT_EQ(Deliveries("dead"), 1);
  EXPECT_EQ(Deliveries("success"), 0);
  auto dlq = Dlq();
  ASSERT_EQ(dlq.size(), 1u);
  const std::string error(dlq[0].at("last_error").as_string());
  EXPECT_NE(error.find(GetParam().error), std::string::npos) << error;
  EXPECT_NE(error.find("max_attempts reached"), std::string::npos) << error;
  EXPECT_EQ(dlq[0].at("attempts").as_int64(), 3);
  // The daemon hung up on every misbehaving connection: nothing is left half-open on its side.
  EXPECT_TRUE(evil.WaitForNoOpenConnections(kWait)) << evil.open_connections() << " still open";

  evil.Set(Behavior{});  // behaves again
  auto replay = Admin("POST", "/admin/dlq/replay", "{\"all\":true}");
  ASSERT_TRUE(replay);
  EXPECT_EQ(replay->body, "{\"replayed\":1}");
  ASSERT_TRUE(WaitQueue(0, 0));
  EXPECT_EQ(Deliveries("success"), 1);
  // Every attempt carried the same Idempotency-Key.
  auto keys = evil.idempotency_keys();
  ASSERT_EQ(keys.size(), 4u);
  EXPECT_TRUE(std::all_of(keys.begin(), keys.end(), [&](const auto& k) { return k == keys[0]; }));
  EXPECT_EQ(Fetch(daemon_.admin_port(), "GET", "/healthz")->status, 200);
}

INSTANTIATE_TEST_SUITE_P(
    Receivers, TransportFaultTest,
    ::testing::Values(
        TransportFault{"HangsAfterTheHead", {.kind = Misbehavior::kHangAfterHeaders}, "timeout"},
        TransportFault{"NeverAnswers", {.kind = Misbehavior::kNeverAnswer}, "timeout"},
        TransportFault{
            "SlowerThanTheTimeout", {.kind = Misbehavior::kSlow, .delay = seconds(60)}, "timeout"},
        TransportFault{"ResetsTheConnection", {.kind = Misbehavior::kReset}, "connection error"},
        TransportFault{"AnswersGarbage", {.kind = Misbehavior::kGarbage}, "protocol error"},
        TransportFault{"SendsAHugeHead", {.kind = Misbehavior::kHugeHead}, "response too large"},
        TransportFault{"Sends503WithAHugeBody",
                       {.kind = Misbehavior::kHugeBody, .status = 503, .body_bytes = 1ull << 30},
                       "HTTP 503"}),
    [](const ::testing::TestParamInfo<TransportFault>& info) { return info.param.name; });

TEST_F(ReceiverFaultsTest, SlowReceiverWithinTheTimeoutIsADelivery) {
  EvilReceiver evil({.kind = Misbehavior::kSlow, .delay = milliseconds(300)});
  StartDaemon(evil.url(), "10s");
  ASSERT_EQ(Post("m-1"), 202);
  ASSERT_TRUE(WaitQueue(0, 0));
  EXPECT_EQ(evil.requests(), 1u);
  EXPECT_EQ(Deliveries("success"), 1);
  EXPECT_EQ(Deliveries("retry"), 0);
}

// 3xx is not followed and is permanent (other 4xx too): dead at the first attempt, and the
// Location is never contacted.
TEST_F(ReceiverFaultsTest, RedirectsAreNotFollowedAndArePermanent) {
  RecordingReceiver elsewhere;
  EvilReceiver evil({});
  StartDaemon(evil.url());
  const int statuses[] = {301, 302, 303, 307, 308};
  int dead = 0;
  for (int status : statuses) {
    evil.Set({.kind = Misbehavior::kRedirect, .status = status, .location = elsewhere.url("/x")});
    ASSERT_EQ(Post("m-" + std::to_string(status)), 202);
    ASSERT_TRUE(WaitQueue(0, ++dead)) << status;
  }
  EXPECT_EQ(evil.requests(), std::size(statuses));  // one attempt each
  EXPECT_EQ(elsewhere.count(), 0u);
  EXPECT_EQ(Deliveries("dead"), 5);
  EXPECT_EQ(Deliveries("retry"), 0);
  std::vector<std::string> errors;
  for (const auto& d : Dlq()) {
    errors.emplace_back(d.at("last_error").as_string());
    EXPECT_EQ(d.at("attempts").as_int64(), 1);
  }
  std::sort(errors.begin(), errors.end());
  EXPECT_EQ(errors,
            (std::vector<std::string>{"HTTP 301", "HTTP 302", "HTTP 303", "HTTP 307", "HTTP 308"}));
}

// A receiver that took the webhook and answers 2xx with a huge page has been delivered to; the
// daemon reads at most 64 KiB of it and its memory does not follow the body's size.
TEST_F(ReceiverFaultsTest, TwoHundredWithAHugeBodyIsADeliveryAndMemoryStaysBounded) {
  constexpr uint64_t kBody = 1ull << 30;  // 1 GiB, announced or chunked
  EvilReceiver evil({.kind = Misbehavior::kHugeBody, .body_bytes = kBody});
  StartDaemon(evil.url(), "20s");
  auto rss = [&] { return MetricValue(Metrics(), "process_resident_memory_bytes").value_or(0); };
  const double rss_before = rss();
  ASSERT_GT(rss_before, 0);
  ASSERT_EQ(Post("length"), 202);
  ASSERT_TRUE(WaitQueue(0, 0));
  evil.Set({.kind = Misbehavior::kHugeBody, .body_bytes = kBody, .chunked = true});
  ASSERT_EQ(Post("chunked"), 202);
  ASSERT_TRUE(WaitQueue(0, 0));
  EXPECT_EQ(evil.requests(), 2u);  // no retries
  EXPECT_EQ(Deliveries("success"), 2);
  EXPECT_EQ(Deliveries("retry"), 0);
  // The daemon hung up early: what the receiver managed to write is socket buffers, not the body.
  EXPECT_LT(evil.body_bytes_sent(), kBody / 16);
  EXPECT_TRUE(evil.WaitForNoOpenConnections(kWait));
  const double rss_after = rss();
  RecordProperty("rss_growth_bytes", std::to_string(static_cast<int64_t>(rss_after - rss_before)));
  EXPECT_LT(rss_after - rss_before, 64.0 * (1 << 20));
}

// https to a receiver whose certificate does not verify: never delivered (no request is ever
// sent over the connection), counted, retried, dead-lettered with the reason.
TEST_F(ReceiverFaultsTest, InvalidTlsCertificateIsNeverDeliveredAndEndsInTheDlq) {
  EvilReceiver evil({}, /*tls=*/true);
  // Two attempts per try: the replay's two keep the sink under the circuit breaker's five.
  StartDaemon(evil.url("/hook"), "2s", /*max_attempts=*/2);
  ASSERT_EQ(Post("m-1"), 202);
  ASSERT_TRUE(WaitQueue(0, 1)) << daemon_.Log();
  EXPECT_EQ(evil.requests(), 0u);
  EXPECT_TRUE(evil.WaitForHandshakeFailures(2, kWait)) << evil.handshake_failures();
  EXPECT_EQ(Deliveries("retry"), 1);
  EXPECT_EQ(Deliveries("dead"), 1);
  EXPECT_EQ(Deliveries("success"), 0);
  auto dlq = Dlq();
  ASSERT_EQ(dlq.size(), 1u);
  const std::string error(dlq[0].at("last_error").as_string());
  EXPECT_NE(error.find("certificate verification failed"), std::string::npos) << error;
  // Replaying it does not make it any more trusted.
  ASSERT_EQ(Admin("POST", "/admin/dlq/replay", "{\"all\":true}")->body, "{\"replayed\":1}");
  EXPECT_TRUE(evil.WaitForHandshakeFailures(4, kWait)) << evil.handshake_failures();
  ASSERT_TRUE(WaitQueue(0, 1));
  EXPECT_EQ(evil.requests(), 0u);
  EXPECT_EQ(Deliveries("dead"), 2);
  EXPECT_EQ(Deliveries("success"), 0);
}

// While every delivery slot of a sink hangs on a receiver, webhooks are still answered: ingest
// never waits for delivery. Compared with a baseline taken in the same test with a healthy
// receiver, not with a wall-clock threshold.
// Bursts of deliveries reuse the connections the sink's concurrency opened: the client keeps
// every connection a burst used. (A pool smaller than the concurrency closed most of them after
// each burst: one new TCP connection per delivery.)
TEST_F(ReceiverFaultsTest, BurstsOfDeliveriesReuseTheSinksConnections) {
  constexpr int kConcurrency = 32;
  constexpr int kBursts = 4;
  // Slow enough that each burst's deliveries overlap and use the sink's whole concurrency.
  EvilReceiver evil({.kind = Misbehavior::kSlow, .delay = milliseconds(100)});
  StartDaemon(evil.url(), "10s", /*max_attempts=*/3, kConcurrency);
  for (int burst = 0; burst < kBursts; ++burst) {
    std::vector<std::thread> senders;
    std::atomic<int> accepted{0};
    for (int t = 0; t < 8; ++t) {
      senders.emplace_back([&, t] {
        for (int i = 0; i < kConcurrency / 8; ++i) {
          // Appended, not "b" + ...: GCC 12's -Wrestrict misfires on const char* + string&&.
          std::string marker = "b";
          marker += std::to_string(burst) + "-" + std::to_string(t) + "-" + std::to_string(i);
          if (Post(marker) == 202) ++accepted;
        }
      });
    }
    for (auto& s : senders) s.join();
    ASSERT_EQ(accepted.load(), kConcurrency);
    ASSERT_TRUE(WaitQueue(0, 0)) << "burst " << burst;
  }
  EXPECT_EQ(evil.requests(), static_cast<size_t>(kBursts * kConcurrency));
  EXPECT_LE(evil.connections(), static_cast<size_t>(kConcurrency));
}

TEST_F(ReceiverFaultsTest, WebhooksAreAnsweredWithoutWaitingWhileTheReceiverHangs) {
  constexpr int kConcurrency = 4;
  constexpr int kSamples = 60;
  EvilReceiver evil({});
  StartDaemon(evil.url(), "60s", /*max_attempts=*/1000, kConcurrency);
  auto measure = [&](const std::string& prefix) {
    std::vector<double> ms;
    for (int i = 0; i < kSamples; ++i) {
      auto start = std::chrono::steady_clock::now();
      EXPECT_EQ(Post(prefix + std::to_string(i)), 202);
      ms.push_back(
          std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
              .count());
    }
    std::sort(ms.begin(), ms.end());
    return ms;
  };
  const std::vector<double> baseline = measure("base-");
  ASSERT_TRUE(WaitQueue(0, 0));

  evil.Set({.kind = Misbehavior::kNeverAnswer});
  for (int i = 0; i < kConcurrency; ++i) ASSERT_EQ(Post("hang-" + std::to_string(i)), 202);
  ASSERT_TRUE(evil.WaitForRequests(kSamples + kConcurrency, kWait));  // every slot is stuck
  const auto hang_start = std::chrono::steady_clock::now();
  const std::vector<double> during = measure("during-");
  const auto hang_phase = std::chrono::steady_clock::now() - hang_start;
  // The receiver still holds every slot (the 60 s timeout has not fired): the hang was in effect
  // for the whole measurement, and nothing more was attempted.
  EXPECT_EQ(evil.open_connections(), static_cast<size_t>(kConcurrency));
  EXPECT_EQ(evil.requests(), static_cast<size_t>(kSamples + kConcurrency));
  EXPECT_LT(hang_phase, seconds(60));

  const double base_median = baseline[kSamples / 2], during_median = during[kSamples / 2];
  RecordProperty("ingest_median_ms_baseline", std::to_string(base_median));
  RecordProperty("ingest_median_ms_receiver_hung", std::to_string(during_median));
  printf("[ ingest   ] median %.2f ms with a healthy receiver, %.2f ms with it hung (max %.2f)\n",
         base_median, during_median, during.back());
  // Generous: ten times the healthy median (plus a millisecond, so that a sub-millisecond
  // baseline does not turn scheduler noise into a failure). Waiting for the receiver would
  // take the sink's 60 s timeout.
  EXPECT_LE(during_median, 10 * base_median + 1.0);
  auto q = Admin("GET", "/admin/queue");
  ASSERT_TRUE(q);
  EXPECT_TRUE(q->body.starts_with("{\"pending\":" + std::to_string(kSamples + kConcurrency)))
      << q->body;
}

}  // namespace
}  // namespace switchyard::testing
