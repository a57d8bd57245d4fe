// RecordingReceiver: a generic HTTP endpoint on 127.0.0.1 for tests of the HTTP sink and the
// dispatcher. Records method, target, headers and raw body bytes of every request; answers from a
// script (a FIFO of replies, one per request; then the default reply, 200 "ok"). A reply may carry
// headers (e.g. Retry-After), a body, a delay, or close the connection without answering.
// SetDown(true) stops listening (connects are refused) and drops open connections;
// SetDown(false) listens again on the SAME port. Thread-safe.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "fakes/test_http_server.h"

namespace switchyard::testing {

class RecordingReceiver {
 public:
  RecordingReceiver();
  ~RecordingReceiver();
  RecordingReceiver(const RecordingReceiver&) = delete;
  RecordingReceiver& operator=(const RecordingReceiver&) = delete;

  uint16_t port() const;
  // http://127.0.0.1:<port><path>
  std::string url(const std::string& path = "/") const;

  // Appends one scripted reply (used by the next request that finds the script non-empty).
  void Enqueue(ServerReply reply);
  // Shorthand: `n` replies with `status` and, when non-empty, a Retry-After header.
  void EnqueueStatus(int status, int n = 1, const std::string& retry_after = "");
  // The reply once the script is empty.
  void SetDefault(ServerReply reply);
  // true: refuse connections and drop open ones; false: listen again on the same port.
  // Returns false if the port could not be bound again.
  bool SetDown(bool down);

  std::vector<ReceivedRequest> requests() const;  // in arrival order
  size_t count() const;
  // Waits until at least `count` requests were recorded; false on timeout.
  bool WaitFor(size_t count, std::chrono::milliseconds timeout) const;

 private:
  ServerReply Handle(const ReceivedRequest& request);

  mutable std::mutex mu_;
  mutable std::condition_variable cv_;
  std::deque<ServerReply> script_;          // guarded by mu_
  ServerReply default_reply_;               // guarded by mu_
  std::vector<ReceivedRequest> requests_;   // guarded by mu_
  std::mutex down_mu_;                      // serialises SetDown
  std::unique_ptr<TestHttpServer> server_;  // last: stopped first
};

}  // namespace switchyard::testing
