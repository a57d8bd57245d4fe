// HttpClient implementation: Boost.Beast over Asio C++20 coroutines.
//
// Threads: `options.threads` workers, each one thread running its own io_context (concurrency
// hint 1) with no strands (strands + coroutines hit a heap-use-after-free in Boost 1.81, asio
// #835). A request goes to the worker chosen by hashing its (scheme, host, port), so the
// keep-alive pool of an origin lives on exactly one worker and everything about a request -- its
// coroutine, its connection, the pool -- is touched only by that worker's thread.
//
// Errors: nothing throws across an API or coroutine boundary. Asio calls use error codes
// (net::as_tuple(net::use_awaitable)); every co_spawn has a completion handler that logs an
// escaped exception and still completes the request (kInternal).
//
// Request headers: the client sets Host, Content-Length (when there is a body, and for
// POST/PUT/PATCH) and User-Agent ("switchyard/0.1", unless the caller gives one). A caller header
// named Host, Content-Length or Transfer-Encoding is rejected (kInvalidArgument), as are names
// that are not tokens and values containing CR, LF or NUL (header injection). No Content-Type is
// added: the caller sets it (RFC 9110 8.3: omit it when the media type is unknown).
//
// Lifecycle: Shutdown() completes every pending request with kUnavailable on its worker, then
// joins the workers; it must not be called from a client thread (i.e. from a callback: that would
// join itself, so it logs and terminates). After Shutdown, Send() completes inline on the calling
// thread with kUnavailable, as no client thread is left.
//
// Logging: URLs can carry secrets (webhook tokens in the path or query), so logs and error
// messages name only scheme://host:port, never the target.
#include "httpclient/http_client.h"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <cerrno>
#include <exception>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>

#include "common/ascii.h"
#include "common/log.h"
#include "common/step_aside.h"
#include "common/thread_name.h"
#include "http/head_counter.h"
#include "httpclient/host_resolver.h"
#include "httpclient/url.h"

namespace switchyard::httpclient {

std::string_view ClientResponse::Header(std::string_view lower_name) const {
  for (const auto& [name, value] : headers) {
    if (name == lower_name) return value;
  }
  return {};
}

namespace {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
namespace ssl = boost::asio::ssl;
using tcp = net::ip::tcp;
using Clock = std::chrono::steady_clock;
using boost::system::error_code;

constexpr auto kNoThrow = net::as_tuple(net::use_awaitable);
constexpr uint32_t kMaxHeaderBytes = 64 * 1024;
// The most a connection buffers unparsed: a head, or (the body is parsed eagerly) one 64 KiB
// read plus an unfinished chunk-size line or trailer, which Beast 1.81 bounds by neither
// header_limit nor body_limit. Past it the read fails with buffer_overflow.
constexpr size_t kMaxBufferedBytes = kMaxHeaderBytes + 64 * 1024;
constexpr int kMaxInterimResponses = 8;  // 1xx responses skipped before the final one
constexpr std::string_view kProxyAuthHint =
    " (proxy authentication required: check the user info of the proxy's URL)";
constexpr std::string_view kUserAgent = "switchyard/0.1";

// Beast's HTTP/1 response parser (its grammar, limits, de-chunking and keep-alive rules)
// writing straight into a ClientResponse: the status, each field with its name lower-cased
// (ASCII), and the body. Beast's response_parser would first build a fields container (an
// allocation per field) that we then copied out of, lower-casing each name again. One per
// response (interim ones included).
class ResponseParser final : public bhttp::basic_parser<false> {
 public:
  ClientResponse& response() { return response_; }
  // Hides basic_parser::header_limit: the head is also counted as parsed (http/head_counter.h),
  // and so is a chunked body's trailer, whose fields are dropped (RFC 9110 6.5.1).
  void header_limit(std::uint32_t n) {
    basic_parser::header_limit(n);
    head_.set_limit(n);
  }

 private:
  using string_view = beast::string_view;

  void on_request_impl(bhttp::verb, string_view, string_view, int, error_code&) override {}
  void on_response_impl(int status, string_view reason, int, error_code& ec) override {
    response_.status = status;
    response_.headers.reserve(16);
    head_.StartLine(reason.size() + 13);  // "HTTP/1.1 200 " and the reason
    ec = {};
  }
  void on_field_impl(bhttp::field, string_view name, string_view value, error_code& ec) override {
    bool keep = false;
    ec = head_.Field(name, value, &keep);
    if (ec || !keep) return;
    response_.headers.emplace_back(AsciiLower(name), std::string(value.data(), value.size()));
    ec = {};
  }
  void on_header_impl(error_code& ec) override { ec = {}; }
  void on_body_init_impl(const boost::optional<std::uint64_t>& content_length,
                         error_code& ec) override {
    // Beast has checked a declared length against body_limit before this.
    if (content_length) response_.body.reserve(static_cast<size_t>(*content_length));
    ec = {};
  }
  std::size_t on_body_impl(string_view body, error_code& ec) override {
    response_.body.append(body.data(), body.size());
    ec = {};
    return body.size();
  }
  void on_chunk_header_impl(std::uint64_t size, string_view, error_code& ec) override {
    if (size == 0) head_.StartTrailer();  // the last chunk
    ec = {};
  }
  std::size_t on_chunk_body_impl(std::uint64_t, string_view body, error_code& ec) override {
    return on_body_impl(body, ec);
  }
  void on_finish_impl(error_code& ec) override { ec = {}; }

  ClientResponse response_;
  http::HeadCounter head_;
};

// (Not find_first_of: libstdc++'s calls memchr over the set once per character.)
bool IsSafeFieldValue(std::string_view s) {
  for (char c : s) {
    if (c == '\r' || c == '\n' || c == '\0') return false;
  }
  return true;
}

// A request as it goes on the wire: the head (request line, fields, blank line) serialized
// once when the request is built, and the body. Every part is validated first (token method
// and names, no CR/LF/NUL in values, the target from a parsed URL), so nothing can split a
// line. (Built through Beast's message, the fields cost one allocation each and its serializer
// walked a buffer-sequence variant per write: the client's largest costs of our own.)
struct WireRequest {
  std::string head;
  std::string body;
  bool head_method = false;  // HEAD: the response has no body whatever it declares
  bool keep_alive = true;    // false when the caller sent Connection: close
};

// Fields in this order: Host, the caller's (as given), User-Agent unless the caller set one,
// Content-Length when there is a body or the method expects one.
// Through a proxy (`proxy`), an http:// request uses the absolute form and carries the proxy's
// credentials; an https:// one is unchanged (it travels inside the tunnel).
Result<WireRequest> BuildRequest(ClientRequest& in, const Target& t, const Proxy* proxy) {
  const bool forward = proxy != nullptr && !t.tls;
  if (!IsHttpToken(in.method)) return InvalidArgument("invalid method");
  WireRequest w;
  const bhttp::verb verb = bhttp::string_to_verb(in.method);
  w.head_method = verb == bhttp::verb::head;
  size_t size = in.method.size() + t.target.size() + t.host_header.size() + 64;
  for (const auto& [name, value] : in.headers) size += name.size() + value.size() + 4;
  w.head.reserve(size);
  w.head.append(in.method).push_back(' ');
  if (forward) w.head.append("http://").append(t.host_header);
  w.head.append(t.target).append(" HTTP/1.1\r\nHost: ").append(t.host_header).append("\r\n");
  if (forward && !proxy->authorization.empty()) {
    w.head.append("Proxy-Authorization: ").append(proxy->authorization).append("\r\n");
  }
  bool has_user_agent = false;
  for (const auto& [name, value] : in.headers) {
    if (!IsHttpToken(name)) return InvalidArgument("invalid header name");
    if (!IsSafeFieldValue(value)) {
      return InvalidArgument("header " + name + " has a CR, LF or NUL in its value");
    }
    const bhttp::field f = bhttp::string_to_field(name);
    if (f == bhttp::field::host || f == bhttp::field::content_length ||
        f == bhttp::field::transfer_encoding) {
      return InvalidArgument("header " + name + " is set by the client");
    }
    if (f == bhttp::field::user_agent) has_user_agent = true;
    if (f == bhttp::field::connection && bhttp::token_list(value).exists("close")) {
      w.keep_alive = false;  // RFC 9110 §7.6.1: any case, anywhere in the list
    }
    w.head.append(name).append(": ").append(value).append("\r\n");
  }
  if (!has_user_agent) w.head.append("User-Agent: ").append(kUserAgent).append("\r\n");
  if (!in.body.empty() || verb == bhttp::verb::post || verb == bhttp::verb::put ||
      verb == bhttp::verb::patch) {
    w.head.append("Content-Length: ").append(std::to_string(in.body.size())).append("\r\n");
  }
  w.head.append("\r\n");
  w.body = std::move(in.body);
  return w;
}

// True if an idle connection still looks usable: open, peer has not closed (FIN), and no
// unsolicited bytes are waiting (which would desynchronise the next response). Never blocks.
bool LooksAlive(tcp::socket& socket) {
  if (!socket.is_open()) return false;
  char c;
  ssize_t n = ::recv(socket.native_handle(), &c, 1, MSG_PEEK | MSG_DONTWAIT);
  if (n >= 0) return false;  // 0: peer closed; >0: unexpected data (or a TLS alert)
  return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
}

// One connection: plain TCP or TLS over TCP. The buffer holds bytes read past the previous
// response and must persist across requests. Owned by exactly one request or by the pool.
struct Connection {
  std::unique_ptr<beast::tcp_stream> tcp;                     // set if plain
  std::unique_ptr<beast::ssl_stream<beast::tcp_stream>> tls;  // set if TLS
  beast::flat_buffer buffer{kMaxBufferedBytes};
  Clock::time_point idle_since;

  beast::tcp_stream& lowest() { return tls ? tls->next_layer() : *tcp; }
  // Closes the socket (no TLS close_notify: peers handle a plain close). Pending operations
  // complete with operation_aborted. Idempotent.
  void Close() {
    error_code ec;
    lowest().socket().shutdown(tcp::socket::shutdown_both, ec);
    lowest().close();
  }
};

// One request. Created by Send(); after the post, touched only on its worker's thread.
struct Op {
  Op(net::io_context& ioc, Target t, WireRequest r, size_t max_bytes, Clock::time_point d,
     std::chrono::milliseconds to, ClientCallback cb)
      : target(std::move(t)),
        request(std::move(r)),
        max_response_bytes(max_bytes),
        deadline(d),
        timeout(to),
        done(std::move(cb)),
        resolve_timer(ioc) {}

  Target target;
  WireRequest request;
  size_t max_response_bytes;
  bool discard_oversized_body = false;
  Clock::time_point deadline;
  std::chrono::milliseconds timeout;
  ClientCallback done;
  bool completed = false;            // `done` has been called
  bool aborted = false;              // shutdown: stop at the next step
  std::unique_ptr<Connection> conn;  // connection in use (so Shutdown can close it)
  net::steady_timer resolve_timer;   // bounds resolve by the deadline
  // Set when the request goes through a forward proxy; points into the client's options, which
  // outlive every Op.
  const Proxy* proxy = nullptr;
};

// Calls the user's callback once; a throwing callback is logged, never propagated.
void Complete(Op& op, Result<ClientResponse> result) {
  if (op.completed) return;
  op.completed = true;
  ClientCallback done = std::move(op.done);
  try {
    done(std::move(result));
  } catch (const std::exception& e) {
    log::Error("http client callback threw", {{"error", e.what()}});
  } catch (...) {
    log::Error("http client callback threw", {{"error", "unknown exception"}});
  }
}

std::string Ms(std::chrono::milliseconds d) { return std::to_string(d.count()) + " ms"; }

// Maps an I/O error during `step` ("connect", "write", ...) to the documented status codes.
// What the client talks to for `op`: the target, or the proxy on its behalf (an error there may
// be the proxy's). Origins only: never a proxy's credentials.
std::string Peer(const Op& op) {
  if (op.proxy == nullptr) return op.target.origin;
  return "proxy " + op.proxy->server.origin + " for " + op.target.origin;
}

Status MapError(const error_code& ec, std::string_view step, const Op& op) {
  const std::string peer = Peer(op);
  const std::string where = std::string(step) + " " + peer;
  if (ec == beast::error::timeout) {
    return {StatusCode::kDeadlineExceeded,
            "timeout after " + Ms(op.timeout) + " (during " + where + ")"};
  }
  if (op.aborted || ec == net::error::operation_aborted) {
    return Unavailable("client shutting down");
  }
  if (ec == bhttp::error::body_limit) {
    return ResourceExhausted("response body from " + peer + " over " +
                             std::to_string(op.max_response_bytes) + " bytes");
  }
  if (ec == bhttp::error::header_limit) {
    return ResourceExhausted("response head from " + peer + " over " +
                             std::to_string(kMaxHeaderBytes) + " bytes");
  }
  if (ec == bhttp::error::buffer_overflow) {
    return ResourceExhausted("chunk extension or trailer from " + peer + " too long (a trailer " +
                             "over " + std::to_string(kMaxHeaderBytes) + " bytes, or more than " +
                             std::to_string(kMaxBufferedBytes) + " bytes buffered)");
  }
  if (ec == bhttp::error::end_of_stream || ec == bhttp::error::partial_message ||
      ec == net::error::eof || ec == ssl::error::stream_truncated) {
    return Unavailable(where + ": peer closed the connection early");
  }
  if (ec.category() == bhttp::make_error_code(bhttp::error::bad_version).category()) {
    return Internal("malformed response from " + peer + ": " + ec.message());
  }
  return Unavailable(where + " failed: " + ec.message());
}

// Outcome of one write+read on one connection.
struct Attempt {
  std::optional<Result<ClientResponse>> result;
  bool keep_alive = false;  // the connection may be reused
  bool stale = false;       // failed before any response byte: safe to retry on a new connection
};

// Writes op.request and reads the final response on `stream` (the TLS or TCP layer of conn).
template <class Stream>
net::awaitable<Attempt> Transfer(Stream& stream, Connection& conn, Op& op, bool reused) {
  Attempt a;
  if (op.aborted) {
    a.result = Unavailable("client shutting down");
    co_return a;
  }
  conn.lowest().expires_at(op.deadline);
  {
    // Head and body in one gathered write (a retry on a new connection sends the same bytes).
    const std::array<net::const_buffer, 2> wire = {net::buffer(op.request.head),
                                                   net::buffer(op.request.body)};
    auto [ec, n] = co_await net::async_write(stream, wire, kNoThrow);
    if (ec) {
      a.stale = reused && ec != beast::error::timeout && !op.aborted;
      a.result = MapError(ec, "write to", op);
      co_return a;
    }
  }
  const bool head = op.request.head_method;
  for (int interim = 0;; ++interim) {
    if (op.aborted) {
      a.result = Unavailable("client shutting down");
      co_return a;
    }
    ResponseParser parser;
    parser.header_limit(kMaxHeaderBytes);
    parser.body_limit(op.max_response_bytes);
    if (head) parser.skip(true);
    conn.lowest().expires_at(op.deadline);
    auto [ec, n] = co_await bhttp::async_read(stream, conn.buffer, parser, kNoThrow);
    if (ec == ssl::error::stream_truncated && parser.is_header_done() && parser.need_eof()) {
      // Body delimited by connection close, and the TLS peer skipped close_notify.
      ec = {};
      parser.put_eof(ec);
    }
    const int status = parser.response().status;
    if (ec == bhttp::error::body_limit && op.discard_oversized_body && parser.is_header_done() &&
        status >= 200) {
      // The caller wants the status only: keep it, drop the body read so far and the rest.
      ClientResponse r = std::move(parser.response());
      r.body.clear();
      r.body.shrink_to_fit();
      r.body_truncated = true;
      a.result = std::move(r);  // keep_alive stays false: the unread rest makes it unusable
      co_return a;
    }
    if (ec) {
      a.stale = reused && interim == 0 && ec != beast::error::timeout && !op.aborted &&
                !parser.got_some() && conn.buffer.size() == 0;
      a.result = MapError(ec, "read from", op);
      co_return a;
    }
    if (status >= 100 && status < 200 && status != 101) {
      if (interim + 1 >= kMaxInterimResponses) {
        a.result = Internal("too many interim responses from " + Peer(op));
        co_return a;
      }
      continue;
    }
    a.keep_alive = status != 101 && parser.keep_alive() && !parser.need_eof() &&
                   op.request.keep_alive && conn.buffer.size() == 0;
    a.result = std::move(parser.response());
    co_return a;
  }
}

// Holds the awaiting coroutine's completion handler while a resolve races the deadline timer.
template <class Handler>
struct ResolveRace {
  explicit ResolveRace(Handler h) : handler(std::move(h)) {}
  Handler handler;
  bool finished = false;  // touched only on the worker's thread
};

// Resolves `host` (the target's, or its proxy's) through `resolver` (its own threads), bounded by
// op->deadline (a
// lookup cannot be interrupted; its late answer is dropped). Completes with the endpoints, or an
// error code (beast::error::timeout, operation_aborted) or a resolver Status (kUnavailable).
//
// The timer's handler and the answer, posted back to the worker, race; the first sets
// race->finished and resumes the caller. They hold a raw Op*: the Op (owned by the awaiting
// request) lives until the caller has been resumed, and the losing handler, which may run after
// the Op is gone, reads only `race`. Capturing shared_ptr<Op> there lost a reference under g++ 12
// (the Op was freed while a handler still held it; ASan heap-use-after-free), which clang 14
// does not do with the same code.
using ResolveResult = std::tuple<error_code, Status, tcp::resolver::results_type>;
net::awaitable<ResolveResult> Resolve(Op* op, const std::string& host, uint16_t port,
                                      HostResolver& resolver, net::io_context& ioc) {
  error_code ec;
  auto address = net::ip::make_address(host, ec);
  if (!ec) {
    co_return ResolveResult(error_code{}, Status::Ok(),
                            tcp::resolver::results_type::create(tcp::endpoint(address, port), host,
                                                                std::to_string(port)));
  }
  auto result = co_await net::async_initiate<decltype(kNoThrow),
                                             void(error_code, Status, tcp::resolver::results_type)>(
      [op, &resolver, &ioc, &host, port](auto handler) {
        using Race = ResolveRace<decltype(handler)>;
        auto race = std::make_shared<Race>(std::move(handler));
        op->resolve_timer.expires_at(op->deadline);
        op->resolve_timer.async_wait([op, race](const error_code&) {
          if (race->finished) return;
          race->finished = true;
          auto h = std::move(race->handler);
          h(op->aborted ? error_code(net::error::operation_aborted)
                        : error_code(beast::error::timeout),
            Status::Ok(), tcp::resolver::results_type{});
        });
        resolver.Resolve(
            host, [op, race, &ioc, host, port](Result<std::vector<std::string>> answer) {
              net::post(ioc, [op, race, host, port, answer = std::move(answer)]() mutable {
                if (race->finished) return;
                race->finished = true;
                op->resolve_timer.cancel();
                auto h = std::move(race->handler);
                if (!answer.ok()) {
                  h(error_code{}, answer.status(), tcp::resolver::results_type{});
                  return;
                }
                std::vector<tcp::endpoint> endpoints;
                for (const std::string& a : *answer) {
                  error_code bad;
                  auto address = net::ip::make_address(a, bad);
                  if (!bad) endpoints.emplace_back(address, port);
                }
                if (endpoints.empty()) {
                  h(error_code{}, Unavailable("no usable address"), tcp::resolver::results_type{});
                  return;
                }
                h(error_code{}, Status::Ok(),
                  tcp::resolver::results_type::create(endpoints.begin(), endpoints.end(), host,
                                                      std::to_string(port)));
              });
            });
      },
      kNoThrow);
  co_return result;
}

Status TlsHandshakeError(const error_code& ec, Connection& conn, const Op& op) {
  if (ec == beast::error::timeout || op.aborted || ec == net::error::operation_aborted) {
    return MapError(ec, "TLS handshake with", op);
  }
  const long verify = SSL_get_verify_result(conn.tls->native_handle());
  const bool verify_failed =
      verify != X509_V_OK || (ec.category() == net::error::get_ssl_category() &&
                              ERR_GET_REASON(ec.value()) == SSL_R_CERTIFICATE_VERIFY_FAILED);
  if (verify_failed) {
    std::string why = verify != X509_V_OK ? X509_verify_cert_error_string(verify)
                                          : "certificate does not match host name";
    return Unavailable("TLS certificate verification failed for " + op.target.origin + ": " + why);
  }
  return Unavailable("TLS handshake with " + op.target.origin + " failed: " + ec.message());
}

// One thread, one io_context, the pool of the origins hashed to it, and its requests.
// Everything except ioc() and the constructor runs on the worker's own thread.
class Worker {
 public:
  Worker(const HttpClientOptions& options, ssl::context* ssl_ctx, const Status* tls_status,
         HostResolver* resolver)
      : options_(options),
        ssl_ctx_(ssl_ctx),
        tls_status_(tls_status),
        resolver_(resolver),
        ioc_(1),
        work_(net::make_work_guard(ioc_)),
        sweeper_(ioc_) {}

  net::io_context& ioc() { return ioc_; }

  // Runs the io_context until it runs out of work (after Stop and ReleaseWork). On the worker
  // thread.
  void Run() {
    for (;;) {
      try {
        ioc_.run();
        return;
      } catch (const std::exception& e) {  // handlers do not throw; belt and braces
        log::Error("http client worker: handler threw", {{"error", e.what()}});
      } catch (...) {
        log::Error("http client worker: handler threw", {{"error", "unknown exception"}});
      }
    }
  }

  // Any thread: lets Run() return once the queued work is done.
  void ReleaseWork() { work_.reset(); }

  // Any thread (Send, under the client's mu_): queues `op` to be started on the worker thread.
  // A drain is posted only when the inbox was empty, so a caller queuing a burst pays one post
  // and wakes the worker once.
  void Enqueue(std::shared_ptr<Op> op) {
    bool was_empty;
    {
      std::lock_guard lock(inbox_mu_);
      was_empty = inbox_.empty();
      inbox_.push_back(std::move(op));
    }
    if (was_empty) net::post(ioc_, [this] { Drain(); });
  }

  // Starts a request.
  void Start(std::shared_ptr<Op> op) {
    if (stopping_) {
      Complete(*op, Unavailable("client shutting down"));
      return;
    }
    active_.emplace(op.get(), op);
    net::co_spawn(ioc_, RunOp(op), [this, op](std::exception_ptr e) {
      log::CoroutineFailure("http client request", e);
      if (e) {
        if (op->conn) op->conn->Close();
        Complete(*op, Internal("internal error in HTTP client"));
      }
      active_.erase(op.get());
    });
  }

  // Worker thread: starts what Enqueue queued, after letting the sender (the dispatcher, in the
  // middle of a pass that queues more) finish, so that one drain starts the whole pass.
  void Drain() {
    StepAsideAfterWakeup();
    std::vector<std::shared_ptr<Op>> ops;
    {
      std::lock_guard lock(inbox_mu_);
      ops.swap(inbox_);
    }
    for (auto& op : ops) Start(std::move(op));
  }

  // Shutdown: completes every pending request with kUnavailable, closes their connections and
  // the pool, and stops the sweeper; the request coroutines then unwind on their own.
  void Stop() {
    stopping_ = true;
    sweeper_.cancel();
    for (auto& [key, conns] : idle_) {
      for (auto& c : conns) c->Close();
    }
    idle_.clear();
    std::vector<std::shared_ptr<Op>> ops;
    ops.reserve(active_.size());
    for (auto& [raw, op] : active_) ops.push_back(op);
    for (auto& op : ops) {
      op->aborted = true;
      if (op->conn) op->conn->Close();
      op->resolve_timer.cancel();
      Complete(*op, Unavailable("client shutting down"));
    }
  }

 private:
  net::awaitable<void> RunOp(std::shared_ptr<Op> op) {
    Result<ClientResponse> result = co_await Exchange(op);
    Complete(*op, std::move(result));
  }

  net::awaitable<Result<ClientResponse>> Exchange(std::shared_ptr<Op> op) {
    if (op->target.tls && !tls_status_->ok()) co_return *tls_status_;
    for (int attempt = 0;; ++attempt) {
      if (op->aborted || stopping_) co_return Unavailable("client shutting down");
      // The retry after a stale connection takes a new one: the pooled ones went idle together
      // and a peer that closed one (a restart) has usually closed them all.
      op->conn = attempt == 0 ? TakeIdle(op->target.origin) : nullptr;
      const bool reused = op->conn != nullptr;
      if (!reused) {
        Status s = co_await Connect(op);
        if (!s.ok()) {
          if (op->conn) op->conn->Close();
          op->conn.reset();
          co_return s;
        }
      }
      Connection& conn = *op->conn;
      // Not `a = tls ? co_await x : co_await y`: g++ 12 miscompiles co_await inside ?: (the
      // result was bitwise-copied and freed twice under ASan).
      Attempt a;
      if (conn.tls) {
        a = co_await Transfer(*conn.tls, conn, *op, reused);
      } else {
        a = co_await Transfer(*conn.tcp, conn, *op, reused);
      }
      if (a.result->ok() && op->proxy && !op->target.tls && (*a.result)->status == 407) {
        // A forwarded request's 407 is the proxy's own answer (RFC 9110 15.5.8), not the
        // target's: a connection error to retry, as a tunnel the proxy refuses, rather than a
        // permanent 4xx from the sink.
        a.result = Unavailable("proxy " + op->proxy->server.origin + " refused the request for " +
                               op->target.origin + ": HTTP 407" + std::string(kProxyAuthHint));
        a.keep_alive = false;
      }
      if (a.result->ok()) {
        if (a.keep_alive) {
          ReturnIdle(op->target.origin, std::move(op->conn));
        } else {
          op->conn->Close();
          op->conn.reset();
        }
        co_return std::move(*a.result);
      }
      op->conn->Close();
      op->conn.reset();
      if (a.stale && attempt == 0 && !op->aborted && Clock::now() < op->deadline) {
        // The server closed the idle keep-alive connection, almost always before it saw the
        // request (no response byte arrived): the one case where a request is sent again.
        log::Debug("http client: stale keep-alive connection, retrying on a new one",
                   {{"origin", op->target.origin}, {"error", a.result->status().message()}});
        continue;
      }
      co_return std::move(*a.result);
    }
  }

  // Resolves, connects (to the target or its proxy; through an https proxy, opens the tunnel)
  // and for https handshakes a new connection into op->conn.
  net::awaitable<Status> Connect(std::shared_ptr<Op> op) {
    const Target& peer = op->proxy ? op->proxy->server : op->target;
    // Errors name the proxy and what it was asked for, never the proxy's credentials.
    const std::string via = op->proxy ? " (proxy for " + op->target.origin + ")" : "";
    auto [rec, why, endpoints] = co_await Resolve(op.get(), peer.host, peer.port, *resolver_, ioc_);
    if (op->aborted) co_return Unavailable("client shutting down");
    if (rec == beast::error::timeout) co_return MapError(rec, "resolve", *op);
    if (rec) co_return Unavailable("cannot resolve " + peer.origin + via + ": " + rec.message());
    if (!why.ok()) {
      co_return Unavailable("cannot resolve " + peer.origin + via + ": " + why.message());
    }
    op->conn = std::make_unique<Connection>();
    Connection& conn = *op->conn;
    if (op->target.tls) {
      conn.tls = std::make_unique<beast::ssl_stream<beast::tcp_stream>>(ioc_, *ssl_ctx_);
    } else {
      conn.tcp = std::make_unique<beast::tcp_stream>(ioc_);
    }
    conn.lowest().expires_at(op->deadline);
    auto [cec, ep] = co_await conn.lowest().async_connect(endpoints, kNoThrow);
    if (cec) co_return MapError(cec, "connect to", *op);
    error_code ignored;
    conn.lowest().socket().set_option(tcp::no_delay(true), ignored);
    if (!op->target.tls) co_return Status::Ok();
    if (op->proxy) {
      Status tunnel = co_await OpenTunnel(conn, *op);
      if (!tunnel.ok()) co_return tunnel;
    }

    if (op->aborted) co_return Unavailable("client shutting down");
    SSL* ssl_handle = conn.tls->native_handle();
    error_code not_ip;
    net::ip::make_address(op->target.host, not_ip);
    // SNI carries host names only (RFC 6066 3).
    if (not_ip && !SSL_set_tlsext_host_name(ssl_handle, op->target.host.c_str())) {
      co_return Unavailable("TLS setup for " + op->target.origin + " failed: cannot set SNI");
    }
    if (options_.verify_tls) {
      conn.tls->set_verify_mode(ssl::verify_peer, ignored);
      conn.tls->set_verify_callback(ssl::host_name_verification(op->target.host), ignored);
    } else {
      conn.tls->set_verify_mode(ssl::verify_none, ignored);
    }
    conn.lowest().expires_at(op->deadline);
    auto [hec] = co_await conn.tls->async_handshake(ssl::stream_base::client, kNoThrow);
    if (hec) co_return TlsHandshakeError(hec, conn, *op);
    co_return Status::Ok();
  }

  // Asks the proxy for a tunnel to op.target (RFC 9110 9.3.6) on the connected `conn`: a CONNECT
  // request, then its answer's head, read byte-exact (the TLS handshake that follows reads the
  // socket directly, so nothing past the head may be consumed: the answer is read into a buffer
  // of its own, and bytes beyond it are an error). Bounded by the op's deadline.
  net::awaitable<Status> OpenTunnel(Connection& conn, Op& op) {
    const Target& t = op.target;
    std::string authority = t.host.find(':') != std::string::npos ? "[" + t.host + "]" : t.host;
    authority += ":" + std::to_string(t.port);
    std::string head = "CONNECT " + authority + " HTTP/1.1\r\nHost: " + authority + "\r\n";
    if (!op.proxy->authorization.empty()) {
      head += "Proxy-Authorization: " + op.proxy->authorization + "\r\n";
    }
    head.append("User-Agent: ").append(kUserAgent).append("\r\n\r\n");
    conn.lowest().expires_at(op.deadline);
    auto [wec, wn] = co_await net::async_write(conn.lowest(), net::buffer(head), kNoThrow);
    if (wec) co_return MapError(wec, "CONNECT through", op);
    ResponseParser parser;  // bounds the head as every response's is bounded
    parser.skip(true);  // a 2xx to CONNECT has no body; any other answer fails the request
    parser.header_limit(kMaxHeaderBytes);
    beast::flat_buffer buffer(kMaxHeaderBytes);
    auto [rec, rn] = co_await bhttp::async_read(conn.lowest(), buffer, parser, kNoThrow);
    if (rec) co_return MapError(rec, "CONNECT through", op);
    const int status = parser.response().status;
    if (status < 200 || status > 299) {
      std::string why = "proxy " + op.proxy->server.origin + " refused CONNECT to " + t.origin +
                        ": HTTP " + std::to_string(status);
      if (status == 407) why += kProxyAuthHint;
      co_return Unavailable(why);
    }
    if (buffer.size() != 0) {
      co_return Unavailable("proxy " + op.proxy->server.origin + " sent bytes after its CONNECT " +
                            "answer for " + t.origin);
    }
    co_return Status::Ok();
  }

  // Pops the most recently used live connection for `origin`, discarding dead or expired ones.
  std::unique_ptr<Connection> TakeIdle(const std::string& origin) {
    auto it = idle_.find(origin);
    if (it == idle_.end()) return nullptr;
    auto& conns = it->second;
    std::unique_ptr<Connection> found;
    const auto now = Clock::now();
    while (!conns.empty() && !found) {
      std::unique_ptr<Connection> c = std::move(conns.back());
      conns.pop_back();
      const auto idle = now - c->idle_since;
      if (idle < options_.idle_timeout &&
          (idle < options_.reuse_without_check ? c->lowest().socket().is_open()
                                               : LooksAlive(c->lowest().socket()))) {
        found = std::move(c);
      } else {
        c->Close();
      }
    }
    if (conns.empty()) idle_.erase(it);
    return found;
  }

  void ReturnIdle(const std::string& origin, std::unique_ptr<Connection> conn) {
    if (stopping_ || options_.max_idle_per_host == 0 || options_.idle_timeout.count() <= 0) {
      conn->Close();
      return;
    }
    auto& conns = idle_[origin];
    while (conns.size() >= options_.max_idle_per_host) {  // evict the oldest
      conns.front()->Close();
      conns.erase(conns.begin());
    }
    conn->idle_since = Clock::now();
    conns.push_back(std::move(conn));
    ArmSweeper();
  }

  // Closes pooled connections idle for idle_timeout or closed by the peer. Armed only while the
  // pool is non-empty, for the earliest expiry.
  void ArmSweeper() {
    if (sweeper_armed_ || stopping_ || idle_.empty()) return;
    auto earliest = Clock::time_point::max();
    for (const auto& [key, conns] : idle_) {
      if (!conns.empty()) earliest = std::min(earliest, conns.front()->idle_since);
    }
    if (earliest == Clock::time_point::max()) return;
    sweeper_armed_ = true;
    sweeper_.expires_at(earliest + options_.idle_timeout);
    sweeper_.async_wait([this](const error_code&) {
      sweeper_armed_ = false;
      if (stopping_) return;
      Sweep();
      ArmSweeper();
    });
  }

  void Sweep() {
    const auto now = Clock::now();
    for (auto it = idle_.begin(); it != idle_.end();) {
      auto& conns = it->second;
      std::erase_if(conns, [&](std::unique_ptr<Connection>& c) {
        if (now - c->idle_since < options_.idle_timeout && LooksAlive(c->lowest().socket())) {
          return false;
        }
        c->Close();
        return true;
      });
      it = conns.empty() ? idle_.erase(it) : std::next(it);
    }
  }

  const HttpClientOptions& options_;
  ssl::context* ssl_ctx_;
  const Status* tls_status_;
  HostResolver* resolver_;
  // Declared before everything holding I/O objects: destroyed last.
  net::io_context ioc_;
  net::executor_work_guard<net::io_context::executor_type> work_;
  net::steady_timer sweeper_;
  bool sweeper_armed_ = false;
  bool stopping_ = false;
  // Idle connections per origin, oldest first.
  std::unordered_map<std::string, std::vector<std::unique_ptr<Connection>>> idle_;
  std::unordered_map<Op*, std::shared_ptr<Op>> active_;
  std::mutex inbox_mu_;
  std::vector<std::shared_ptr<Op>> inbox_;  // GUARDED_BY(inbox_mu_); a Drain is posted if non-empty
};

class ClientImpl final : public HttpClient {
 public:
  explicit ClientImpl(const HttpClientOptions& options)
      : options_(options),
        ssl_ctx_(ssl::context::tls_client),
        resolver_(ResolverOptions(options_)) {
    ConfigureTls();
    const int n = std::max(1, options_.threads);
    for (int i = 0; i < n; ++i) {
      workers_.push_back(std::make_unique<Worker>(options_, &ssl_ctx_, &tls_status_, &resolver_));
    }
    for (auto& w : workers_) {
      threads_.emplace_back([w = w.get()] {
        NameThisThread("sy-http-client");
        w->Run();
      });
    }
  }

  ~ClientImpl() override {
    Shutdown();
    workers_.clear();  // io_contexts (and any leftover handlers) go before the SSL context
  }

  void Send(ClientRequest request, ClientCallback done) override {
    Result<Target> target = ParseUrlCached(request.url);
    Status error;
    std::shared_ptr<Op> op;
    Worker* worker = nullptr;
    if (!target.ok()) {
      error = target.status();
    } else if (request.timeout.count() <= 0) {
      error = InvalidArgument("timeout must be positive");
    } else {
      const Proxy* proxy = options_.proxies.For(*target);
      Result<WireRequest> wire = BuildRequest(request, *target, proxy);
      if (!wire.ok()) {
        error = wire.status();
      } else {
        worker = workers_[std::hash<std::string>{}(target->origin) % workers_.size()].get();
        op = std::make_shared<Op>(worker->ioc(), std::move(*target), std::move(*wire),
                                  request.max_response_bytes, Clock::now() + request.timeout,
                                  request.timeout, std::move(done));
        op->discard_oversized_body = request.discard_oversized_body;
        op->proxy = proxy;
      }
    }
    if (!op) {  // bad request: still answered on a client thread
      worker = workers_[next_worker_++ % workers_.size()].get();
    }
    {
      std::lock_guard lock(mu_);
      if (!shut_down_) {
        // Posted under mu_: every Send post precedes Shutdown's Stop post on the same worker.
        if (op) {
          worker->Enqueue(op);
        } else {
          net::post(worker->ioc(), [done = std::move(done), error]() mutable {
            try {
              done(std::move(error));
            } catch (...) {
              log::Error("http client callback threw");
            }
          });
        }
        return;
      }
    }
    // Shut down: no client thread is left to run the callback.
    Status stopped = Unavailable("client shutting down");
    if (op) {
      Complete(*op, std::move(stopped));
    } else {
      done(std::move(stopped));
    }
  }

  void Shutdown() override {
    {
      std::lock_guard lock(mu_);
      if (shut_down_) return;
      shut_down_ = true;
    }
    for (auto& t : threads_) {
      if (t.get_id() == std::this_thread::get_id()) {
        log::Error("HttpClient::Shutdown called from a client thread (a callback); aborting");
        std::terminate();
      }
    }
    for (auto& w : workers_) {
      net::post(w->ioc(), [w = w.get()] { w->Stop(); });
      w->ReleaseWork();
    }
    for (auto& t : threads_) t.join();
    // After the workers (whose cached lookups call back inline) and before their io_contexts go
    // (answers are posted there): no answer arrives after this.
    resolver_.Shutdown();
  }

 private:
  // Sinks send to the same few URLs all day, and parsing one (Boost.URL, then the checks) was a
  // third of Send's cost: ~5k instructions a delivery (callgrind, end to end). Remembers up to
  // kUrlCacheEntries parsed URLs and starts over when full (templated URLs may all differ).
  // Only valid URLs are kept. Any thread.
  Result<Target> ParseUrlCached(const std::string& url) {
    {
      std::lock_guard lock(url_cache_mu_);
      if (auto it = url_cache_.find(url); it != url_cache_.end()) return it->second;
    }
    Result<Target> target = ParseUrl(url);
    if (target.ok()) {
      std::lock_guard lock(url_cache_mu_);
      if (url_cache_.size() >= kUrlCacheEntries) url_cache_.clear();
      url_cache_.emplace(url, *target);
    }
    return target;
  }

  static HostResolverOptions ResolverOptions(const HttpClientOptions& o) {
    HostResolverOptions r;
    if (o.lookup) r.lookup = o.lookup;
    r.max_threads = std::max(1, o.dns_threads);
    r.ttl = o.dns_cache_ttl;
    r.clock = o.clock;
    return r;
  }

  void ConfigureTls() {
    error_code ec;
    ssl_ctx_.set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                             ssl::context::no_sslv3 | ssl::context::no_tlsv1 |
                             ssl::context::no_tlsv1_1,
                         ec);
    SSL_CTX_set_min_proto_version(ssl_ctx_.native_handle(), TLS1_2_VERSION);
    if (options_.verify_tls) {
      ssl_ctx_.set_default_verify_paths(ec);
      if (ec) log::Warn("http client: cannot load the system CA store", {{"error", ec.message()}});
      if (!options_.ca_file.empty()) {
        ssl_ctx_.load_verify_file(options_.ca_file, ec);
        if (ec) {
          // Reported on every https request (kUnavailable: retried until the config is fixed).
          tls_status_ =
              Unavailable("cannot load ca_file " + options_.ca_file + ": " + ec.message());
          log::Error("http client: cannot load ca_file",
                     {{"path", options_.ca_file}, {"error", ec.message()}});
        }
      }
    }
  }

  const HttpClientOptions options_;
  ssl::context ssl_ctx_;  // configured in the constructor, then only read (thread-safe)
  Status tls_status_;     // not OK if the TLS setup failed; fails https requests
  HostResolver resolver_;  // shared by the workers; outlives them until Shutdown
  std::vector<std::unique_ptr<Worker>> workers_;
  std::vector<std::thread> threads_;
  std::atomic<size_t> next_worker_{0};
  std::mutex mu_;
  bool shut_down_ = false;  // GUARDED_BY(mu_)
  static constexpr size_t kUrlCacheEntries = 64;
  std::mutex url_cache_mu_;
  std::unordered_map<std::string, Target> url_cache_;  // GUARDED_BY(url_cache_mu_)
};

}  // namespace

std::unique_ptr<HttpClient> NewHttpClient(const HttpClientOptions& options) {
  return std::make_unique<ClientImpl>(options);
}

}  // namespace switchyard::httpclient
