// switchyard_loadgen: the open-loop HTTP/1.1 load generator of bench/run (Debian has no wrk2).
//
// Rate mode (--rate R): request i is due at start + i/R whatever the server does, and its latency
// is measured from that due time, not from when it left: a server that stalls is charged for
// every request that queued behind the stall (no coordinated omission, as in wrk2). Up to N
// keep-alive connections carry at most one request each (no pipelining); they are opened when a
// request needs one, so a connection the server closes (`Connection: close`, or an error) is
// reopened for the next request and the connect counts towards that request's latency. A request
// that falls due while all N are busy waits in a FIFO for the next free connection. Requests due
// in the first --warmup seconds are sent but not recorded. Prints one JSON object: counts,
// achieved rate, latency percentiles (ms) and `late_sends`, the requests this process itself sent
// more than 1 ms after they were due (a load generator short of CPU: figures with many of those
// measure the generator).
//
// Idle mode (--idle N --hold S): opens N connections, sends the request once on each, prints
// {"open":...} once all have been answered, holds them S seconds, then prints how many the
// server closed meanwhile.
//
// Threads: one io_context on the main thread; pin the process with taskset.
#include <sys/resource.h>

#include <algorithm>
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <deque>
#include <fstream>
#include <iostream>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;
using boost::system::error_code;

struct Options {
  std::string host = "127.0.0.1";
  std::string port;
  std::string path = "/";
  std::string method;
  std::vector<std::string> headers;
  std::string body;
  double rate = 0;
  double duration = 10;
  double warmup = 1;
  double drain_timeout = 10;
  int connections = 64;
  int idle = 0;
  double hold = 5;
};

[[noreturn]] void Usage(const std::string& why) {
  std::cerr << "switchyard_loadgen: " << why << "\n"
            << "usage: switchyard_loadgen --url http://HOST:PORT/PATH [--body FILE] "
               "[--header 'K: V']... [--method M]\n"
               "         (--rate R [--duration S] [--warmup S] [--connections N] "
               "[--drain-timeout S] | --idle N [--hold S])\n";
  std::exit(1);
}

Options Parse(int argc, char** argv) {
  Options o;
  std::string url;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) Usage("missing value for " + a);
      return argv[++i];
    };
    if (a == "--url") {
      url = value();
    } else if (a == "--body") {
      std::ifstream in(value(), std::ios::binary);
      if (!in) Usage("cannot read the body file");
      std::stringstream ss;
      ss << in.rdbuf();
      o.body = ss.str();
    } else if (a == "--header") {
      o.headers.push_back(value());
    } else if (a == "--method") {
      o.method = value();
    } else if (a == "--rate") {
      o.rate = std::stod(value());
    } else if (a == "--duration") {
      o.duration = std::stod(value());
    } else if (a == "--warmup") {
      o.warmup = std::stod(value());
    } else if (a == "--drain-timeout") {
      o.drain_timeout = std::stod(value());
    } else if (a == "--connections") {
      o.connections = std::stoi(value());
    } else if (a == "--idle") {
      o.idle = std::stoi(value());
    } else if (a == "--hold") {
      o.hold = std::stod(value());
    } else {
      Usage("unknown argument " + a);
    }
  }
  const std::string scheme = "http://";
  if (url.rfind(scheme, 0) != 0) Usage("--url must start with http://");
  std::string rest = url.substr(scheme.size());
  size_t slash = rest.find('/');
  std::string authority = rest.substr(0, slash);
  o.path = slash == std::string::npos ? "/" : rest.substr(slash);
  size_t colon = authority.rfind(':');
  if (colon == std::string::npos) Usage("--url needs an explicit port");
  o.host = authority.substr(0, colon);
  o.port = authority.substr(colon + 1);
  if (o.method.empty()) o.method = o.body.empty() ? "GET" : "POST";
  if ((o.rate > 0) == (o.idle > 0)) Usage("give exactly one of --rate and --idle");
  if (o.connections < 1) Usage("--connections must be at least 1");
  return o;
}

// The whole request, serialized once; every send writes these same bytes.
std::string BuildRequest(const Options& o) {
  std::string r = o.method + " " + o.path + " HTTP/1.1\r\nHost: " + o.host + ":" + o.port + "\r\n";
  for (const std::string& h : o.headers) r += h + "\r\n";
  if (!o.body.empty() || o.method == "POST") {
    r += "Content-Length: " + std::to_string(o.body.size()) + "\r\n";
  }
  r += "\r\n";
  r += o.body;
  return r;
}

void RaiseFileLimit() {
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
}

struct Conn {
  explicit Conn(asio::io_context& io) : sock(io), retry(io) {}
  tcp::socket sock;
  asio::steady_timer retry;
  beast::flat_buffer buf;
  std::optional<http::response_parser<http::string_body>> parser;
  Clock::time_point due;
  char probe = 0;
};

// Rate mode. All members are touched only from the io_context's thread.
class RateRun {
 public:
  RateRun(asio::io_context& io, const Options& o, tcp::endpoint ep)
      : io_(io), o_(o), ep_(ep), request_(BuildRequest(o)), pacer_(io), deadline_(io) {
    for (int i = 0; i < o.connections; ++i) {
      conns_.push_back(std::make_unique<Conn>(io));
      closed_.push_back(conns_.back().get());
    }
    latencies_.reserve(static_cast<size_t>(o.rate * o.duration * 1.1) + 16);
  }

  void Start() { Begin(); }

  void Report() const {
    std::vector<int64_t> v = latencies_;
    std::sort(v.begin(), v.end());
    auto pct = [&](double q) -> double {
      if (v.empty()) return 0;
      size_t idx = static_cast<size_t>(std::ceil(q * static_cast<double>(v.size())));
      idx = std::min(v.size() - 1, idx == 0 ? 0 : idx - 1);
      return static_cast<double>(v[idx]) / 1e6;
    };
    double mean = 0;
    for (int64_t x : v) mean += static_cast<double>(x);
    if (!v.empty()) mean /= static_cast<double>(v.size()) * 1e6;
    std::printf(
        "{\"mode\":\"rate\",\"target_rate\":%.1f,\"duration_s\":%.3f,\"connections\":%d,"
        "\"sent\":%llu,\"ok\":%llu,\"non2xx\":%llu,\"errors\":%llu,\"connect_errors\":%llu,"
        "\"unfinished\":%llu,\"late_sends\":%llu,\"connects\":%llu,\"achieved_rate\":%.1f,"
        "\"mean_ms\":%.3f,\"p50_ms\":%.3f,\"p90_ms\":%.3f,\"p99_ms\":%.3f,\"p999_ms\":%.3f,"
        "\"max_ms\":%.3f,\"first_non2xx\":%d}\n",
        o_.rate, o_.duration, o_.connections, ull(sent_), ull(ok_), ull(non2xx_), ull(errors_),
        ull(connect_errors_), ull(unfinished_), ull(late_sends_), ull(connects_),
        static_cast<double>(ok_ + non2xx_) / o_.duration, mean, pct(0.50), pct(0.90), pct(0.99),
        pct(0.999), v.empty() ? 0.0 : static_cast<double>(v.back()) / 1e6, first_non2xx_);
  }

 private:
  static unsigned long long ull(uint64_t x) { return static_cast<unsigned long long>(x); }

  void Begin() {
    started_ = true;
    start_ = Clock::now() + std::chrono::milliseconds(10);
    window_begin_ = start_ + ToDur(o_.warmup);
    total_ = static_cast<uint64_t>(std::llround(o_.rate * (o_.warmup + o_.duration)));
    next_ = 0;
    pacer_.expires_at(start_);
    pacer_.async_wait([this](error_code ec) {
      if (!ec) Tick();
    });
  }

  static Clock::duration ToDur(double seconds) {
    return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
  }

  Clock::time_point Due(uint64_t i) const {
    return start_ + std::chrono::duration_cast<Clock::duration>(
                        std::chrono::duration<double>(static_cast<double>(i) / o_.rate));
  }

  void Tick() {
    Clock::time_point now = Clock::now();
    while (next_ < total_) {
      Clock::time_point due = Due(next_);
      if (due > now) break;
      if (now - due > std::chrono::milliseconds(1)) ++late_sends_;
      ++next_;
      Dispatch(due);
    }
    if (next_ < total_) {
      pacer_.expires_at(Due(next_));
      pacer_.async_wait([this](error_code ec) {
        if (!ec) Tick();
      });
      return;
    }
    // Everything is sent or queued: give the stragglers drain_timeout, then stop.
    deadline_.expires_after(ToDur(o_.drain_timeout));
    deadline_.async_wait([this](error_code ec) {
      if (ec) return;
      unfinished_ = in_flight_ + backlog_.size();
      io_.stop();
    });
    MaybeFinish();
  }

  // A due request goes to an idle open connection, else to a closed one (connect, then send),
  // else waits in the backlog for the first connection to free up.
  void Dispatch(Clock::time_point due) {
    if (!idle_.empty()) {
      Conn* c = idle_.back();
      idle_.pop_back();
      return Send(c, due, false);
    }
    if (!closed_.empty()) {
      Conn* c = closed_.back();
      closed_.pop_back();
      return Send(c, due, true);
    }
    backlog_.push_back(due);
  }

  void Send(Conn* c, Clock::time_point due, bool connect) {
    c->due = due;
    ++in_flight_;
    ++sent_;
    if (connect) return Connect(c);
    Write(c);
  }

  // Connections are opened only when a request needs one: a server with one-connection-at-a-time
  // workers (gunicorn's sync workers) would otherwise sit blocked on connections that carry
  // nothing yet.
  void Connect(Conn* c) {
    ++connects_;
    c->sock.async_connect(ep_, [this, c](error_code ec) {
      if (ec) {
        ++connect_errors_;
        error_code ignored;
        c->sock.close(ignored);
        c->retry.expires_after(std::chrono::milliseconds(10));
        c->retry.async_wait([this, c](error_code) { Connect(c); });
        return;
      }
      c->sock.set_option(tcp::no_delay(true), ec);
      c->buf.clear();
      Write(c);
    });
  }

  void Write(Conn* c) {
    asio::async_write(c->sock, asio::buffer(request_), [this, c](error_code ec, size_t) {
      if (ec) return Failed(c);
      c->parser.emplace();
      c->parser->body_limit(16 << 20);
      http::async_read(c->sock, c->buf, *c->parser,
                       [this, c](error_code ec2, size_t) { OnResponse(c, ec2); });
    });
  }

  void OnResponse(Conn* c, error_code ec) {
    if (ec) return Failed(c);
    Clock::time_point now = Clock::now();
    --in_flight_;
    const auto& res = c->parser->get();
    if (c->due >= window_begin_) {
      unsigned status = res.result_int();
      if (status >= 200 && status < 300) {
        ++ok_;
        latencies_.push_back(
            std::chrono::duration_cast<std::chrono::nanoseconds>(now - c->due).count());
      } else {
        ++non2xx_;
        if (first_non2xx_ == 0) first_non2xx_ = static_cast<int>(status);
      }
    }
    if (res.keep_alive()) {
      Release(c);
    } else {
      Close(c);
    }
    MaybeFinish();
  }

  void Failed(Conn* c) {
    --in_flight_;
    if (c->due >= window_begin_) ++errors_;
    Close(c);
    MaybeFinish();
  }

  void Close(Conn* c) {
    error_code ignored;
    c->sock.close(ignored);
    if (!backlog_.empty()) {
      Clock::time_point due = backlog_.front();
      backlog_.pop_front();
      return Send(c, due, true);
    }
    closed_.push_back(c);
  }

  void Release(Conn* c) {
    if (!backlog_.empty()) {
      Clock::time_point due = backlog_.front();
      backlog_.pop_front();
      return Send(c, due, false);
    }
    idle_.push_back(c);
  }

  void MaybeFinish() {
    if (started_ && next_ >= total_ && in_flight_ == 0 && backlog_.empty()) io_.stop();
  }

  asio::io_context& io_;
  const Options& o_;
  tcp::endpoint ep_;
  const std::string request_;
  asio::steady_timer pacer_;
  asio::steady_timer deadline_;
  std::vector<std::unique_ptr<Conn>> conns_;
  std::vector<Conn*> idle_, closed_;
  std::deque<Clock::time_point> backlog_;
  bool started_ = false;
  Clock::time_point start_, window_begin_;
  uint64_t total_ = 0, next_ = 0, in_flight_ = 0;
  uint64_t sent_ = 0, ok_ = 0, non2xx_ = 0, errors_ = 0, connect_errors_ = 0, unfinished_ = 0;
  uint64_t late_sends_ = 0, connects_ = 0;
  int first_non2xx_ = 0;
  std::vector<int64_t> latencies_;
};

// Idle mode: N connections that each carry one request, then stay open and idle.
class IdleRun {
 public:
  IdleRun(asio::io_context& io, const Options& o, tcp::endpoint ep)
      : io_(io), o_(o), ep_(ep), request_(BuildRequest(o)), hold_(io) {}

  void Start() {
    for (int i = 0; i < std::min(kParallel, o_.idle); ++i) Next();
  }

 private:
  static constexpr int kParallel = 200;  // connects in flight at once (stay under the backlog)

  void Next() {
    if (launched_ >= o_.idle) return;
    ++launched_;
    conns_.push_back(std::make_unique<Conn>(io_));
    Conn* c = conns_.back().get();
    c->sock.async_connect(ep_, [this, c](error_code ec) {
      if (ec) return Done(c, false);
      asio::async_write(c->sock, asio::buffer(request_), [this, c](error_code ec2, size_t) {
        if (ec2) return Done(c, false);
        c->parser.emplace();
        http::async_read(c->sock, c->buf, *c->parser, [this, c](error_code ec3, size_t) {
          bool ok = !ec3 && c->parser->get().result_int() < 300 && c->parser->get().keep_alive();
          Done(c, ok);
        });
      });
    });
  }

  void Done(Conn* c, bool ok) {
    if (ok) {
      ++open_;
      // A read that completes only if the server closes the connection (or sends junk).
      c->sock.async_read_some(asio::buffer(&c->probe, 1),
                              [this](error_code, size_t) { ++closed_by_server_; });
    } else {
      ++failed_;
      error_code ignored;
      c->sock.close(ignored);
    }
    if (open_ + failed_ == o_.idle) {
      std::printf("{\"mode\":\"idle\",\"open\":%d,\"failed\":%d}\n", open_, failed_);
      std::fflush(stdout);
      hold_.expires_after(
          std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(o_.hold)));
      hold_.async_wait([this](error_code) {
        std::printf("{\"mode\":\"idle\",\"closed_by_server_during_hold\":%d}\n", closed_by_server_);
        std::fflush(stdout);
        io_.stop();
      });
    } else {
      Next();
    }
  }

  asio::io_context& io_;
  const Options& o_;
  tcp::endpoint ep_;
  const std::string request_;
  asio::steady_timer hold_;
  std::vector<std::unique_ptr<Conn>> conns_;
  int launched_ = 0, open_ = 0, failed_ = 0, closed_by_server_ = 0;
};

}  // namespace

int main(int argc, char** argv) {
  Options o = Parse(argc, argv);
  RaiseFileLimit();
  asio::io_context io(1);
  error_code ec;
  tcp::resolver resolver(io);
  auto results = resolver.resolve(o.host, o.port, ec);
  if (ec || results.empty()) {
    std::cerr << "switchyard_loadgen: cannot resolve " << o.host << ":" << o.port << "\n";
    return 2;
  }
  tcp::endpoint ep = results.begin()->endpoint();
  if (o.rate > 0) {
    RateRun run(io, o, ep);
    run.Start();
    io.run();
    run.Report();
  } else {
    IdleRun run(io, o, ep);
    run.Start();
    io.run();
  }
  return 0;
}
