#include "httpclient/host_resolver.h"

#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <deque>
#include <exception>
#include <mutex>
#include <system_error>
#include <thread>
#include <unordered_map>
#include <utility>

#include "common/log.h"
#include "common/thread_name.h"

namespace switchyard::httpclient {

Result<std::vector<std::string>> SystemLookup(const std::string& host) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_ADDRCONFIG;
  addrinfo* list = nullptr;
  const int rc = ::getaddrinfo(host.c_str(), nullptr, &hints, &list);
  if (rc != 0) {
    const char* why = rc == EAI_SYSTEM ? std::strerror(errno) : ::gai_strerror(rc);
    return Unavailable(why);
  }
  std::vector<std::string> addresses;
  char text[NI_MAXHOST];
  for (const addrinfo* a = list; a != nullptr; a = a->ai_next) {
    if (a->ai_family != AF_INET && a->ai_family != AF_INET6) continue;
    // getnameinfo, not inet_ntop: a link-local IPv6 answer keeps its scope ("fe80::1%eth0").
    if (::getnameinfo(a->ai_addr, a->ai_addrlen, text, sizeof text, nullptr, 0, NI_NUMERICHOST) ==
        0) {
      addresses.emplace_back(text);
    }
  }
  ::freeaddrinfo(list);
  if (addresses.empty()) return Unavailable("no address");
  return addresses;
}

struct HostResolver::State {
  explicit State(HostResolverOptions o)
      : options(std::move(o)), clock(options.clock ? *options.clock : SystemClock()) {}

  struct Cached {
    std::vector<std::string> addresses;
    std::chrono::steady_clock::time_point expires;
  };

  const HostResolverOptions options;
  const Clock& clock;
  std::mutex mu;
  bool stopped = false;                                            // GUARDED_BY(mu)
  int threads = 0;                                                 // GUARDED_BY(mu)
  std::deque<std::string> queue;                                   // GUARDED_BY(mu)
  std::unordered_map<std::string, std::vector<Callback>> waiting;  // GUARDED_BY(mu)
  std::unordered_map<std::string, Cached> cache;                   // GUARDED_BY(mu)

  // Resolver thread: looks up queued hosts until none is left. `self` keeps the state alive
  // past the resolver's destruction (a lookup can outlive it).
  static void Run(std::shared_ptr<State> self) {
    NameThisThread("sy-dns");
    std::unique_lock lock(self->mu);
    while (!self->stopped && !self->queue.empty()) {
      std::string host = std::move(self->queue.front());
      self->queue.pop_front();
      lock.unlock();
      Result<std::vector<std::string>> answer = Unavailable("lookup failed");
      try {
        answer = self->options.lookup(host);
      } catch (const std::exception& e) {
        answer = Unavailable(std::string("lookup failed: ") + e.what());
      } catch (...) {
        answer = Unavailable("lookup failed");
      }
      lock.lock();
      if (self->stopped) break;  // Shutdown has answered the waiters
      if (answer.ok()) self->Remember(host, *answer);
      self->Answer(host, answer);
    }
    --self->threads;
  }

  // With mu held: the waiters for `host` get `answer`.
  void Answer(const std::string& host, const Result<std::vector<std::string>>& answer) {
    auto it = waiting.find(host);
    if (it == waiting.end()) return;
    std::vector<Callback> callbacks = std::move(it->second);
    waiting.erase(it);
    for (auto& done : callbacks) Call(done, answer);
  }

  void Remember(const std::string& host, const std::vector<std::string>& addresses) {
    if (options.ttl.count() <= 0 || options.max_cached_hosts == 0) return;
    const auto now = clock.SteadyNow();
    if (cache.size() >= options.max_cached_hosts) {
      std::erase_if(cache, [&](const auto& entry) { return entry.second.expires <= now; });
      if (cache.size() >= options.max_cached_hosts) cache.clear();
    }
    cache[host] = Cached{addresses, now + options.ttl};
  }

  static void Call(Callback& done, Result<std::vector<std::string>> answer) {
    try {
      done(std::move(answer));
    } catch (...) {
      log::Error("http client: resolver callback threw");
    }
  }
};

HostResolver::HostResolver(HostResolverOptions options)
    : state_(std::make_shared<State>(std::move(options))) {}

HostResolver::~HostResolver() { Shutdown(); }

void HostResolver::Resolve(const std::string& host, Callback done) {
  State& s = *state_;
  std::unique_lock lock(s.mu);
  if (s.stopped) {
    lock.unlock();
    State::Call(done, Unavailable("client shutting down"));
    return;
  }
  if (auto it = s.cache.find(host); it != s.cache.end()) {
    if (it->second.expires > s.clock.SteadyNow()) {
      std::vector<std::string> addresses = it->second.addresses;
      lock.unlock();
      State::Call(done, std::move(addresses));
      return;
    }
    s.cache.erase(it);
  }
  auto [it, first] = s.waiting.try_emplace(host);
  it->second.push_back(std::move(done));
  if (!first) return;  // that host's lookup is already queued or running
  s.queue.push_back(host);
  if (s.threads >= std::max(1, s.options.max_threads)) return;  // a running thread takes it
  ++s.threads;
  try {
    std::thread(State::Run, state_).detach();
  } catch (const std::system_error& e) {
    --s.threads;
    if (s.threads > 0) return;  // a running thread will take it
    log::Error("http client: cannot start a DNS thread", {{"error", e.what()}});
    s.queue.clear();
    for (auto& [name, callbacks] : s.waiting) {
      for (auto& cb : callbacks) State::Call(cb, Unavailable("cannot start a DNS thread"));
    }
    s.waiting.clear();
  }
}

void HostResolver::Shutdown() {
  std::unordered_map<std::string, std::vector<Callback>> waiting;
  {
    std::lock_guard lock(state_->mu);
    if (state_->stopped) return;
    state_->stopped = true;
    state_->queue.clear();
    waiting.swap(state_->waiting);
  }
  for (auto& [host, callbacks] : waiting) {
    for (auto& done : callbacks) State::Call(done, Unavailable("client shutting down"));
  }
}

}  // namespace switchyard::httpclient
