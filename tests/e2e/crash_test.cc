// Crash safety, end to end: SIGKILL at seeded random moments while webhooks arrive concurrently
// and deliveries flow to a flaky receiver, during a SIGHUP storm, and during a large DLQ replay.
// After each restart on the same store, every acknowledged webhook (202, or 200 duplicate) must
// reach the receiver at least once, the queue counts must agree with the queue, and no delivery
// may be both a dead letter and delivered. Duplicates are allowed (at-least-once) and reported.
//
// delivery_test.cc has the single-kill smoke test; these add seeds, several kills per run, kills
// during start-up/recovery, receiver failures (so kills land mid-retry), unacknowledged posts
// retried by the sender as Sentry does, reloads and replays.
#include <gtest/gtest.h>
#include <signal.h>

#include <atomic>
#include <boost/json.hpp>
#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <thread>

#include "fakes/test_http_server.h"
#include "support/daemon_process.h"
#include "support/http_client.h"
#include "support/metrics_text.h"
#include "support/sentry.h"
#include "support/temp_dir.h"

namespace switchyard::testing {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr char kSecret[] = "crash-e2e-secret";
constexpr auto kDrain = seconds(60);

std::string Body(const std::string& marker) {
  return "{\"action\":\"created\",\"marker\":\"" + marker + "\"}";
}

std::string MarkerOf(const std::string& body) {
  try {
    return std::string(boost::json::parse(body).at("marker").as_string());
  } catch (const std::exception&) {
    return "";
  }
}

// A receiver that fails a seeded fraction of requests (503, a dropped connection, or a slow 200)
// and records what it took (answered 200): marker → times, delivery id (Idempotency-Key) → times.
class FlakyReceiver {
 public:
  FlakyReceiver(uint64_t seed, double failure_rate)
      : rng_(seed),
        failure_rate_(failure_rate),
        server_([this](const ReceivedRequest& r) { return Handle(r); }) {}

  std::string url() const { return "http://127.0.0.1:" + std::to_string(server_.port()) + "/in"; }
  // false: every request fails with 400 (to fill the DLQ); true: the seeded mix.
  void SetAccepting(bool accepting) {
    std::lock_guard lock(mu_);
    accepting_ = accepting;
  }
  std::map<std::string, int> markers() const {
    std::lock_guard lock(mu_);
    return markers_;
  }
  std::map<std::string, int> delivery_ids() const {
    std::lock_guard lock(mu_);
    return delivery_ids_;
  }
  size_t taken() const {
    std::lock_guard lock(mu_);
    return taken_;
  }

 private:
  ServerReply Handle(const ReceivedRequest& r) {
    std::lock_guard lock(mu_);
    if (!accepting_) return ServerReply{400, {}, "not now"};
    const double u = std::uniform_real_distribution<double>(0, 1)(rng_);
    if (u < failure_rate_ / 2) return ServerReply{503, {}, "busy"};
    if (u < failure_rate_) return ServerReply{.close = true};
    ++markers_[MarkerOf(r.body)];
    ++delivery_ids_[r.Header("Idempotency-Key")];
    ++taken_;
    ServerReply ok{200, {}, "ok"};
    if (u > 0.97) ok.delay = milliseconds(20);  // a slow one now and then: kills land mid-reply
    return ok;
  }

  mutable std::mutex mu_;
  std::mt19937_64 rng_;  // GUARDED_BY(mu_)
  double failure_rate_;
  bool accepting_ = true;                    // GUARDED_BY(mu_)
  std::map<std::string, int> markers_;       // GUARDED_BY(mu_)
  std::map<std::string, int> delivery_ids_;  // GUARDED_BY(mu_)
  size_t taken_ = 0;                         // GUARDED_BY(mu_)
  TestHttpServer server_;                    // last: its thread calls Handle
};

// Senders posting unique webhooks on several threads, as Sentry would: an answer other than
// 2xx (no answer, connection refused, 503) is retried with the same body until acknowledged.
class Senders {
 public:
  Senders(const std::string& prefix, int threads, std::atomic<uint16_t>& port) : port_(port) {
    for (int t = 0; t < threads; ++t) {
      threads_.emplace_back([this, prefix, t] { Run(prefix + "-" + std::to_string(t) + "-"); });
    }
  }
  ~Senders() { Stop(); }

  void Stop() {
    stop_ = true;
    for (auto& t : threads_) {
      if (t.joinable()) t.join();
    }
  }
  std::set<std::string> acknowledged() const {
    std::lock_guard lock(mu_);
    return acknowledged_;
  }
  size_t count() const {
    std::lock_guard lock(mu_);
    return acknowledged_.size();
  }
  size_t duplicates_answered() const { return duplicate_answers_; }
  // Waits until `n` webhooks are acknowledged in all; false after `timeout`.
  bool WaitFor(size_t n, std::chrono::milliseconds timeout) const {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, timeout, [&] { return acknowledged_.size() >= n; });
  }

 private:
  void Run(const std::string& prefix) {
    for (int i = 0; !stop_; ++i) {
      const std::string marker = prefix + std::to_string(i);
      const std::string body = Body(marker);
      while (!stop_) {
        std::optional<HttpResponse> r;
        try {
          r = Fetch(port_.load(), "POST", "/hooks/sentry",
                    SentryHeaders("issue", SentrySignature(kSecret, body)), body);
        } catch (const std::exception&) {  // refused: the daemon is down
        }
        if (r && (r->status == 202 || r->status == 200)) {
          if (r->status == 200) ++duplicate_answers_;  // stored before a kill ate the answer
          {
            std::lock_guard lock(mu_);
            acknowledged_.insert(marker);
          }
          cv_.notify_all();
          break;
        }
        std::this_thread::sleep_for(milliseconds(5));  // a sender's retry pause
      }
    }
  }

  std::atomic<uint16_t>& port_;
  std::atomic<bool> stop_{false};
  std::atomic<size_t> duplicate_answers_{0};
  mutable std::mutex mu_;
  mutable std::condition_variable cv_;
  std::set<std::string> acknowledged_;  // GUARDED_BY(mu_)
  std::vector<std::thread> threads_;
};

class CrashTest : public ::testing::TestWithParam<uint64_t> {
 protected:
  std::string Config(const std::string& receiver_url, const std::string& variant = "a") {
    return "server:\n  listen: 127.0.0.1:0\n  admin_listen: 127.0.0.1:0\n  threads: 2\n"
           "storage:\n  path: " +
           dir_.path() +
           "/var\n"
           "sources:\n  sentry:\n    type: sentry\n    client_secret: " +
           kSecret +
           "\n"
           "sinks:\n  rcv:\n    type: http\n    url: " +
           receiver_url +
           "\n    timeout: 2s\n    concurrency: 8\n"
           "    headers: {X-Variant: " +
           variant +
           "}\n"
           "retry:\n  initial: 20ms\n  max_delay: 200ms\n  jitter: 0.2\n  max_attempts: 100000\n"
           "routes:\n  - name: to-rcv\n    to: [rcv]\n";
  }

  void Start(const std::string& config) {
    daemon_.Start(config);
    port_ = daemon_.port();
  }
  void Restart() {
    daemon_.Restart();
    port_ = daemon_.port();
  }

  std::optional<HttpResponse> Admin(const std::string& method, const std::string& target,
                                    const std::string& body = "") {
    return Fetch(daemon_.admin_port(), method, target, {{"Content-Type", "application/json"}},
                 body);
  }
  boost::json::object Queue() {
    auto q = Admin("GET", "/admin/queue");
    return q ? boost::json::parse(q->body).as_object() : boost::json::object{};
  }
  bool WaitQueue(int64_t pending, int64_t dead, std::chrono::milliseconds timeout = kDrain) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      auto q = Queue();
      if (q.contains("pending") && q.at("pending").as_int64() == pending &&
          q.at("dead").as_int64() == dead) {
        return true;
      }
      std::this_thread::sleep_for(milliseconds(20));  // polling the daemon's state
    }
    return false;
  }
  std::set<std::string> DeadIds() {
    std::set<std::string> ids;
    auto r = Admin("GET", "/admin/dlq");
    if (!r) return ids;
    const boost::json::value list = boost::json::parse(r->body);
    for (const auto& d : list.as_array()) {
      ids.emplace(d.at("id").as_string());
    }
    return ids;
  }

  // Waits until the receiver took every acknowledged marker; returns how many are missing then.
  size_t WaitAllDelivered(const FlakyReceiver& receiver, const std::set<std::string>& acked) {
    auto deadline = std::chrono::steady_clock::now() + kDrain;
    for (;;) {
      auto got = receiver.markers();
      size_t missing = 0;
      for (const auto& m : acked) missing += !got.count(m);
      if (missing == 0 || std::chrono::steady_clock::now() > deadline) return missing;
      std::this_thread::sleep_for(milliseconds(20));  // waiting for (re)delivery
    }
  }

  static size_t Duplicates(const std::map<std::string, int>& counts) {
    size_t n = 0;
    for (const auto& [k, c] : counts) n += static_cast<size_t>(c - 1);
    return n;
  }

  // The counters agree with the queue: what /admin/queue says is what the DLQ lists, and the
  // gauges say the same.
  void ExpectCountsConsistent(const std::string& when) {
    auto q = Queue();
    ASSERT_TRUE(q.contains("dead")) << when;
    EXPECT_EQ(static_cast<size_t>(q.at("dead").as_int64()), DeadIds().size()) << when;
    const auto& rcv = q.at("sinks").as_object();
    if (rcv.contains("rcv")) {
      EXPECT_EQ(rcv.at("rcv").at("pending").as_int64(), q.at("pending").as_int64()) << when;
      EXPECT_EQ(rcv.at("rcv").at("dead").as_int64(), q.at("dead").as_int64()) << when;
    }
  }

  TempDir dir_;
  DaemonProcess daemon_{dir_.path()};
  std::atomic<uint16_t> port_{0};
  std::set<std::string> acked_;
};

// Several SIGKILLs per run at seeded moments: after a random number of acknowledgements, after a
// random number of deliveries, or right after a restart (during recovery).
TEST_P(CrashTest, SigkillAtRandomMomentsLosesNoAcknowledgedWebhook) {
  const uint64_t seed = GetParam();
  std::mt19937_64 rng(seed);
  FlakyReceiver receiver(seed, /*failure_rate=*/0.15);
  Start(Config(receiver.url()));
  Senders senders("s" + std::to_string(seed), /*threads=*/6, port_);
  constexpr int kKills = 6;
  std::string moments;
  for (int k = 0; k < kKills; ++k) {
    const int kind = std::uniform_int_distribution<int>(0, 2)(rng);
    if (kind == 0) {
      const size_t more = std::uniform_int_distribution<size_t>(20, 400)(rng);
      ASSERT_TRUE(senders.WaitFor(senders.count() + more, kDrain));
      moments += "after " + std::to_string(more) + " acks; ";
    } else if (kind == 1) {
      const size_t more = std::uniform_int_distribution<size_t>(20, 400)(rng);
      const size_t target = receiver.taken() + more;
      auto deadline = std::chrono::steady_clock::now() + kDrain;
      while (receiver.taken() < target) {
        ASSERT_LT(std::chrono::steady_clock::now(), deadline);
        std::this_thread::sleep_for(milliseconds(1));  // polling the receiver
      }
      moments += "after " + std::to_string(more) + " deliveries; ";
    } else {
      // Right after the restart just before (the first run: right after the first start):
      // the dispatcher is picking up what the killed process left.
      moments += "right after start; ";
    }
    daemon_.Kill();
    Restart();
  }
  ASSERT_TRUE(senders.WaitFor(senders.count() + 200, kDrain));  // the last run takes load too
  senders.Stop();
  const std::set<std::string> acked = senders.acknowledged();
  const size_t missing = WaitAllDelivered(receiver, acked);
  EXPECT_EQ(missing, 0u) << "acknowledged but never delivered (lost)";
  ASSERT_TRUE(WaitQueue(0, 0)) << boost::json::serialize(Queue());
  ExpectCountsConsistent("after the drain");
  const auto markers = receiver.markers();
  const size_t duplicates = Duplicates(markers);
  RecordProperty("seed", std::to_string(seed));
  RecordProperty("acknowledged", std::to_string(acked.size()));
  RecordProperty("lost", std::to_string(missing));
  RecordProperty("duplicates", std::to_string(duplicates));
  printf(
      "[ crash    ] seed=%llu kills=%d acknowledged=%zu (200-duplicate answers %zu) lost=%zu "
      "delivered_unique=%zu duplicates=%zu moments: %s\n",
      static_cast<unsigned long long>(seed), kKills, acked.size(), senders.duplicates_answered(),
      missing, markers.size(), duplicates, moments.c_str());
}

// A SIGHUP storm (the config alternating between two valid variants) with SIGKILLs in it.
TEST_P(CrashTest, SigkillDuringASighupStormLosesNothing) {
  const uint64_t seed = GetParam();
  std::mt19937_64 rng(seed * 7919);
  FlakyReceiver receiver(seed, /*failure_rate=*/0.1);
  Start(Config(receiver.url()));
  Senders senders("h" + std::to_string(seed), /*threads=*/4, port_);
  int reloads_sent = 0;
  for (int k = 0; k < 3; ++k) {
    const int storm = std::uniform_int_distribution<int>(10, 60)(rng);
    for (int i = 0; i < storm; ++i) {
      // Written atomically (rename), as an editor or a config manager would.
      {
        std::ofstream(daemon_.config_path() + ".tmp") << Config(receiver.url(), i % 2 ? "b" : "a");
      }
      std::filesystem::rename(daemon_.config_path() + ".tmp", daemon_.config_path());
      daemon_.Signal(SIGHUP);
      ++reloads_sent;
      // The storm's pacing (0–5 ms between signals), not a wait for something.
      std::this_thread::sleep_for(
          std::chrono::microseconds(std::uniform_int_distribution<int>(0, 5000)(rng)));
    }
    daemon_.Kill();
    Restart();
  }
  ASSERT_TRUE(senders.WaitFor(senders.count() + 50, kDrain));
  senders.Stop();
  const std::set<std::string> acked = senders.acknowledged();
  const size_t missing = WaitAllDelivered(receiver, acked);
  EXPECT_EQ(missing, 0u) << "acknowledged but never delivered (lost)";
  ASSERT_TRUE(WaitQueue(0, 0)) << boost::json::serialize(Queue());
  ExpectCountsConsistent("after the storm");
  // The last written config is the one running and reloading still works.
  auto reload = Admin("POST", "/admin/reload");
  ASSERT_TRUE(reload);
  EXPECT_EQ(reload->status, 200) << reload->body;
  const size_t duplicates = Duplicates(receiver.markers());
  RecordProperty("acknowledged", std::to_string(acked.size()));
  RecordProperty("duplicates", std::to_string(duplicates));
  printf("[ sighup   ] seed=%llu sighups=%d kills=3 acknowledged=%zu lost=%zu duplicates=%zu\n",
         static_cast<unsigned long long>(seed), reloads_sent, acked.size(), missing, duplicates);
}

// SIGKILL while POST /admin/dlq/replay {"all":true} moves a large DLQ back to the queue and the
// replayed deliveries are already flowing. After the restart: the counts agree with the DLQ, no
// delivery is both dead and delivered, and replaying the rest delivers every event.
TEST_P(CrashTest, SigkillDuringALargeDlqReplayLeavesEveryDeliveryDeadXorDelivered) {
  const uint64_t seed = GetParam();
  std::mt19937_64 rng(seed * 104729);
  constexpr int kEvents = 3000;
  FlakyReceiver receiver(seed, /*failure_rate=*/0.0);
  receiver.SetAccepting(false);  // 400: every delivery becomes a dead letter at once
  Start(Config(receiver.url()));
  {
    Senders senders("d" + std::to_string(seed), /*threads=*/6, port_);
    ASSERT_TRUE(senders.WaitFor(kEvents, kDrain));
    senders.Stop();
    acked_ = senders.acknowledged();
  }
  const int64_t total = static_cast<int64_t>(acked_.size());
  ASSERT_TRUE(WaitQueue(0, total)) << boost::json::serialize(Queue());

  receiver.SetAccepting(true);
  // The kill's seeded moment: once the replay (one batch per dead letter) has moved a seeded
  // number of dead letters back to the queue, while replayed deliveries are already flowing.
  const int64_t kill_after =
      std::uniform_int_distribution<int64_t>(1, static_cast<int64_t>(total * 0.8))(rng);
  std::thread replay([port = daemon_.admin_port()] {
    try {  // usually cut off by the kill: no answer expected
      Fetch(port, "POST", "/admin/dlq/replay", {{"Content-Type", "application/json"}},
            "{\"all\":true}");
    } catch (const std::exception&) {
    }
  });
  auto deadline = std::chrono::steady_clock::now() + kDrain;
  for (;;) {  // polling the queue counts as tightly as possible
    auto q = Queue();
    if (q.contains("dead") && total - q.at("dead").as_int64() >= kill_after) break;
    ASSERT_LT(std::chrono::steady_clock::now(), deadline);
  }
  daemon_.Kill();
  replay.join();
  Restart();

  // Right after the restart, before anything else changes the DLQ.
  ExpectCountsConsistent("right after the restart");
  const std::set<std::string> dead = DeadIds();
  for (const auto& [id, n] : receiver.delivery_ids()) {
    EXPECT_FALSE(dead.count(id)) << id << " is a dead letter and was delivered " << n << "x";
  }
  const size_t still_dead = dead.size();

  // Replay what is left, and kill again once replayed deliveries are flowing (attempts in
  // flight, completions being recorded).
  auto again = Admin("POST", "/admin/dlq/replay", "{\"all\":true}");
  ASSERT_TRUE(again);
  EXPECT_EQ(again->body, "{\"replayed\":" + std::to_string(still_dead) + "}");
  const size_t second_kill_after =
      receiver.taken() + std::uniform_int_distribution<size_t>(1, 300)(rng);
  deadline = std::chrono::steady_clock::now() + kDrain;
  while (receiver.taken() < second_kill_after) {
    ASSERT_LT(std::chrono::steady_clock::now(), deadline);
    std::this_thread::sleep_for(milliseconds(1));  // polling the receiver
  }
  daemon_.Kill();
  Restart();
  ExpectCountsConsistent("after the kill during delivery");
  const std::set<std::string> dead_now = DeadIds();
  for (const auto& [id, n] : receiver.delivery_ids()) {
    EXPECT_FALSE(dead_now.count(id)) << id << " is a dead letter and was delivered " << n << "x";
  }
  EXPECT_TRUE(dead_now.empty()) << dead_now.size() << " dead letters after a complete replay";

  const size_t missing = WaitAllDelivered(receiver, acked_);
  EXPECT_EQ(missing, 0u) << "events never delivered after replays";
  ASSERT_TRUE(WaitQueue(0, 0)) << boost::json::serialize(Queue());
  ExpectCountsConsistent("after the drain");
  const size_t duplicates = Duplicates(receiver.markers());
  RecordProperty("dead_letters", std::to_string(total));
  RecordProperty("still_dead_after_kill", std::to_string(still_dead));
  RecordProperty("duplicates", std::to_string(duplicates));
  printf(
      "[ replay   ] seed=%llu dead_letters=%lld kill_after_replayed=%lld "
      "still_dead_after_restart=%zu second_kill_after_deliveries=%zu lost=%zu "
      "duplicates=%zu\n",
      static_cast<unsigned long long>(seed), static_cast<long long>(total),
      static_cast<long long>(kill_after), still_dead, second_kill_after, missing, duplicates);
}

INSTANTIATE_TEST_SUITE_P(Seeds, CrashTest, ::testing::Values(1, 2, 3),
                         [](const ::testing::TestParamInfo<uint64_t>& info) {
                           return "seed" + std::to_string(info.param);
                         });

}  // namespace
}  // namespace switchyard::testing
