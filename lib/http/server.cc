#include "http/server.h"

#include <algorithm>
#include <atomic>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <condition_variable>
#include <csignal>
#include <ctime>
#include <mutex>
#include <optional>
#include <thread>
#include <tuple>
#include <unordered_map>
#include <vector>

#include "common/listen_address.h"
#include "common/log.h"
#include "common/thread_name.h"
#include "http/request_framing.h"

namespace switchyard::http {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using tcp = net::ip::tcp;

namespace {

constexpr auto kNoThrow = net::as_tuple(net::use_awaitable);

// The grammar is ParseListenAddress's, shared with the config check.
Result<tcp::endpoint> ParseEndpoint(const std::string& address) {
  Result<ListenAddress> parsed = ParseListenAddress(address);
  if (!parsed.ok()) {
    return InvalidArgument("bad listen address \"" + address + "\": " + parsed.status().message());
  }
  boost::system::error_code ec;
  auto ip = net::ip::make_address(parsed->ip, ec);
  if (ec) return InvalidArgument("bad listen host \"" + parsed->ip + "\" (use an IP address)");
  return tcp::endpoint(ip, parsed->port);
}

// Session state visible to Shutdown. Each io_context is run by exactly one thread, so everything
// posted to `executor` (the socket's context) runs serialized with the session itself; fields other
// than `executor` are touched only there.
struct SessionState {
  net::any_io_executor executor;
  const std::atomic<bool>* closing = nullptr;  // the listener's; outlives the session
  beast::tcp_stream* stream = nullptr;
  bool idle = true;
  uint64_t wait_generation = 0;  // bumped when a readiness wait ends; stale timers do nothing
};

}  // namespace

struct HttpServer::Impl {
  // One io_context per I/O thread (each run by exactly one thread): connections are spread over
  // them round-robin and never need strands. contexts[0] also runs acceptors, signals and timers.
  std::vector<std::unique_ptr<net::io_context>> contexts;
  net::io_context& ioc() { return *contexts[0]; }
  std::atomic<size_t> next_context{0};
  std::vector<std::thread> threads;
  std::atomic<bool> stopping{false};
  std::atomic<bool> started{false};
  std::atomic<bool> shut_down{false};

  struct Listener {
    ListenerOptions options;
    Handler* handler;
    std::unique_ptr<tcp::acceptor> acceptor;
    std::atomic<uint32_t> active{0};
    std::atomic<uint64_t> body_bytes{0};  // charged against body_budget (see ListenerOptions)
    uint64_t body_budget = 0;
    // Set by Shutdown when this listener stops: no more accepts, and its sessions close after
    // the request in flight.
    std::atomic<bool> closing{false};
  };
  std::vector<std::unique_ptr<Listener>> listeners;

  std::mutex sessions_mu;
  std::condition_variable sessions_cv;
  std::unordered_map<SessionState*, std::shared_ptr<SessionState>> sessions;  // GUARDED_BY
  std::atomic<size_t> active_connections{0};

  std::unique_ptr<net::signal_set> signals;
  std::vector<std::unique_ptr<net::steady_timer>> timers;
  std::function<void(int)> on_signal;

  // Destroying an io_context destroys the handlers still queued in it, and with them the frames
  // of sessions resumed after Shutdown gave up on them (a handler that answered late). Those
  // frames release what they hold on the listeners (body charges), the session map and the
  // counters, which must all outlive the contexts; the acceptors, timers and signals must not.
  ~Impl() {
    signals.reset();
    timers.clear();
    for (auto& l : listeners) l->acceptor.reset();
    contexts.clear();
  }

  void ArmSignals() {
    signals->async_wait([this](const boost::system::error_code& ec, int signo) {
      if (ec) return;
      if (on_signal) on_signal(signo);
      if (!stopping) ArmSignals();
    });
  }

  net::awaitable<void> AcceptLoop(Listener* l) {
    net::steady_timer wait(co_await net::this_coro::executor);
    for (;;) {
      while (l->active.load() >= l->options.max_connections && !l->closing) {
        wait.expires_after(std::chrono::milliseconds(5));
        co_await wait.async_wait(kNoThrow);
      }
      if (l->closing) co_return;
      net::io_context& target = *contexts[next_context++ % contexts.size()];
      auto [ec, socket] = co_await l->acceptor->async_accept(target, kNoThrow);
      if (l->closing || ec == net::error::operation_aborted) co_return;
      if (ec) {
        // EMFILE and friends: back off briefly rather than spin.
        log::Warn("accept failed", {{"listener", l->options.name}, {"error", ec.message()}});
        wait.expires_after(std::chrono::milliseconds(50));
        co_await wait.async_wait(kNoThrow);
        continue;
      }
      socket.set_option(tcp::no_delay(true), ec);
      auto state = std::make_shared<SessionState>(SessionState{socket.get_executor(), &l->closing});
      {
        std::lock_guard lock(sessions_mu);
        sessions.emplace(state.get(), state);
      }
      ++l->active;
      ++active_connections;
      net::co_spawn(state->executor, Session(std::move(socket), l, state),
                    [this, l, state](std::exception_ptr e) {
                      log::CoroutineFailure("http session", e);
                      --l->active;
                      std::lock_guard lock(sessions_mu);
                      sessions.erase(state.get());
                      --active_connections;
                      sessions_cv.notify_all();
                    });
    }
  }

  // Runs the handler and resumes the session with its response. The handler runs inside the
  // initiation, which Asio 1.81 calls after the coroutine has suspended, outside any co_spawn's
  // try: an exception from it would leave io_context::run() and end the process. It is caught
  // here instead: logged, counted, and answered 500 unless the handler answered already (the
  // first answer wins).
  static net::awaitable<Response> CallHandler(Handler* handler, Request request) {
    auto ex = co_await net::this_coro::executor;
    co_return co_await net::async_initiate<decltype(net::use_awaitable), void(Response)>(
        [handler, ex](auto completion, Request req) {
          using Completion = decltype(completion);
          struct Pending {
            explicit Pending(Completion c) : resume(std::move(c)) {}
            std::atomic<bool> answered{false};
            Completion resume;
          };
          auto pending = std::make_shared<Pending>(std::move(completion));
          auto respond = [pending, ex](Response r) {
            if (pending->answered.exchange(true)) return;
            net::post(ex, [pending, r = std::move(r)]() mutable { pending->resume(std::move(r)); });
          };
          try {
            handler->Handle(std::move(req), respond);
          } catch (...) {
            log::CoroutineFailure("request handler", std::current_exception());
            respond(Response::Error(500, "internal error"));
          }
        },
        net::use_awaitable, std::move(request));
  }

  // The Date every response carries (RFC 9110 6.6.1), IMF-fixdate, formatted once a second per
  // thread.
  static void AppendHttpDate(std::string& out) {
    thread_local time_t cached_second = -1;
    thread_local char cached[32];
    const time_t now = ::time(nullptr);
    if (now != cached_second) {
      struct tm tm;
      gmtime_r(&now, &tm);
      strftime(cached, sizeof cached, "%a, %d %b %Y %H:%M:%S GMT", &tm);  // "C" locale names
      cached_second = now;
    }
    out.append(cached);
  }

  // Serializes a response into one buffer: status line, Server, Date, Content-Type, the handler's
  // headers, Content-Length, Connection as needed, then the body. (Beast's serializer walks a
  // buffer-sequence view per write and cost about a third of the I/O thread's instructions.)
  // A response to HEAD (`head`) has the headers GET would have, Content-Length included, and
  // no body (RFC 9110 §9.3.2).
  static std::string SerializeResponse(const Response& r, unsigned version, bool keep_alive,
                                       bool head) {
    auto clean = [](std::string_view v) {  // header values never split a line
      std::string out(v);
      for (char& c : out) {
        if (c == '\r' || c == '\n') c = ' ';
      }
      return out;
    };
    std::string out;
    out.reserve(160 + r.body.size());
    out.append(version == 10 ? "HTTP/1.0 " : "HTTP/1.1 ");
    out.append(std::to_string(r.status));
    out.push_back(' ');
    out.append(bhttp::obsolete_reason(bhttp::int_to_status(static_cast<unsigned>(r.status))));
    out.append("\r\nServer: switchyard\r\nDate: ");
    AppendHttpDate(out);
    out.append("\r\n");
    const bool no_content =
        r.status == 204 || r.status == 304 || (r.status >= 100 && r.status < 200);
    if (!r.body.empty() || r.status != 204) {
      out.append("Content-Type: ").append(clean(r.content_type)).append("\r\n");
    }
    for (const auto& [k, v] : r.headers)
      out.append(clean(k)).append(": ").append(clean(v)).append("\r\n");
    if (!no_content)
      out.append("Content-Length: ").append(std::to_string(r.body.size())).append("\r\n");
    if (version == 10 && keep_alive) out.append("Connection: keep-alive\r\n");
    if (version != 10 && !keep_alive) out.append("Connection: close\r\n");
    out.append("\r\n");
    if (!no_content && !head) out.append(r.body);
    return out;
  }

  // Writes a response; without `keep_alive` it says Connection: close.
  static net::awaitable<bool> WriteResponse(beast::tcp_stream& stream, const Response& r,
                                            unsigned version, bool keep_alive,
                                            std::chrono::milliseconds timeout, bool head = false) {
    const std::string bytes = SerializeResponse(r, version, keep_alive, head);
    // An answer almost always fits the socket's send buffer: hand it to the kernel now (the
    // socket is non-blocking) without an asynchronous operation and its timer. Only what the
    // kernel does not take waits for writability, under the write timeout.
    boost::system::error_code ec;
    size_t n = stream.socket().write_some(net::buffer(bytes), ec);
    if (ec == net::error::would_block || ec == net::error::try_again) {
      n = 0;
    } else if (ec) {
      co_return false;
    }
    if (n == bytes.size()) co_return true;
    stream.expires_after(timeout);
    auto [ec2, written] = co_await net::async_write(
        stream, net::buffer(bytes.data() + n, bytes.size() - n), kNoThrow);
    co_return !ec2;
  }

  // A request body's share of its listener's body budget, released when it goes.
  class BodyCharge {
   public:
    BodyCharge(Listener& l, uint64_t bytes) : l_(l), bytes_(bytes) {
      const uint64_t before = l_.body_bytes.fetch_add(bytes_);
      // One request alone is always admitted (max_body_bytes bounds it already).
      ok_ = before == 0 || before + bytes_ <= l_.body_budget;
      if (!ok_) Release();
    }
    ~BodyCharge() { Release(); }
    BodyCharge(const BodyCharge&) = delete;
    BodyCharge& operator=(const BodyCharge&) = delete;
    bool ok() const { return ok_; }

   private:
    void Release() {
      l_.body_bytes.fetch_sub(bytes_);
      bytes_ = 0;
    }
    Listener& l_;
    uint64_t bytes_;
    bool ok_ = false;
  };

  static net::awaitable<void> WriteError(beast::tcp_stream& stream, int status,
                                         std::string_view msg, std::chrono::milliseconds timeout) {
    co_await WriteResponse(stream, Response::Error(status, msg), 11, false, timeout);
  }

  enum Part { kHead, kBody };
  // Reads the request's head, or the rest of it, under the stream's deadline. Usually the bytes
  // are buffered already: they are parsed here, and only a request that is not all there yet
  // goes through Beast's composed read (which would otherwise cost an operation and a post).
  static net::awaitable<boost::system::error_code> ReadPart(beast::tcp_stream& stream,
                                                            beast::flat_buffer& buffer,
                                                            RequestParser& parser, Part part) {
    auto done = [part](const RequestParser& p) {
      return part == kHead ? p.is_header_done() : p.is_done();
    };
    boost::system::error_code ec;
    parser.eager(part == kBody);
    buffer.consume(ParseBuffered(parser, buffer.data(), done, ec));
    if (ec || done(parser)) co_return ec;
    if (part == kHead) {
      std::tie(ec, std::ignore) =
          co_await bhttp::async_read_header(stream, buffer, parser, kNoThrow);
    } else {
      std::tie(ec, std::ignore) = co_await bhttp::async_read(stream, buffer, parser, kNoThrow);
    }
    co_return ec;
  }

  // Tells the listener's handler about a request the HTTP layer refused after parsing its head
  // (a 413 for a Content-Length over the limit comes as the head ends, its fields all parsed; a
  // 431's head is incomplete and is not reported).
  static void NotifyRefused(Handler* handler, const RequestParser& p, int status) {
    if (status == 431 || p.request().target.empty()) return;
    Request head;
    head.method = p.request().method;
    head.target = p.request().target;
    head.headers = p.request().headers;
    handler->OnRefused(head, status);
  }

  // Beast's largest single read, and ours.
  static constexpr size_t kMaxRead = 65536;

  // Reads what has arrived on a readable, non-blocking socket in one read(2) of up to 64 KiB into
  // this thread's scratch buffer, then copies exactly those bytes into `buffer`: a typical
  // webhook (a few KB) takes one read, and a connection's buffer is the size of its request,
  // not of the largest possible read (10,000 connections sending at once stay small). Beast
  // alone would grow the buffer 512 bytes at a time, one read each. would_block means the
  // readiness was spurious.
  static void ReadAvailable(tcp::socket& socket, beast::flat_buffer& buffer,
                            boost::system::error_code& ec) {
    static constexpr size_t kScratchBytes = kMaxRead;
    thread_local std::unique_ptr<char[]> scratch(new char[kScratchBytes]);
    const size_t n = socket.read_some(net::buffer(scratch.get(), kScratchBytes), ec);
    if (ec) return;
    net::buffer_copy(buffer.prepare(n), net::buffer(scratch.get(), n));
    buffer.commit(n);
  }

  // Waits until the socket is readable, holding no read buffer (10,000 idle keep-alive
  // connections cost no buffer memory), or until `deadline`: then the wait is cancelled and
  // false is returned. Also false when the socket is cancelled (shutdown) or fails.
  static net::awaitable<bool> WaitReadable(beast::tcp_stream& stream, net::steady_timer& timer,
                                           const std::shared_ptr<SessionState>& state,
                                           std::chrono::steady_clock::time_point deadline) {
    const uint64_t generation = ++state->wait_generation;
    timer.expires_at(deadline);
    timer.async_wait([state, generation](const boost::system::error_code& ec) {
      if (ec || state->wait_generation != generation || !state->stream) return;
      boost::system::error_code ignored;
      state->stream->socket().cancel(ignored);
    });
    auto [ec] = co_await stream.socket().async_wait(tcp::socket::wait_read, kNoThrow);
    ++state->wait_generation;
    timer.cancel();
    co_return !ec;
  }

  net::awaitable<void> Session(tcp::socket socket, Listener* l,
                               std::shared_ptr<SessionState> state) {
    const ListenerOptions& opt = l->options;
    beast::tcp_stream stream(std::move(socket));
    {
      // Synchronous reads and writes on it (ReadAvailable, WriteResponse) must never block the
      // I/O thread; asynchronous operations work the same either way.
      boost::system::error_code ec;
      stream.socket().non_blocking(true, ec);
      if (ec) co_return;
    }
    net::steady_timer wait_timer(stream.get_executor());
    state->stream = &stream;
    // Cleared however the session ends (an exception too), before `stream` is destroyed:
    // Shutdown's callbacks reach the stream only through state->stream.
    struct ClearStream {
      SessionState* state;
      ~ClearStream() { state->stream = nullptr; }
    } clear_stream{state.get()};
    std::string remote;
    {
      boost::system::error_code ec;
      auto ep = stream.socket().remote_endpoint(ec);
      if (!ec) remote = ep.address().to_string() + ":" + std::to_string(ep.port());
    }
    // Bounded: Beast 1.81 applies neither header_limit nor body_limit to a chunk-size line
    // (extensions) or a trailer, and would grow the buffer until body_timeout while a client
    // streams one without a CRLF. Between the head and the body the buffer holds at most one
    // head plus a read of pipelined bytes; during an eager body read, one read plus an
    // unfinished chunk line or trailer. Past the bound the read fails with buffer_overflow (400).
    beast::flat_buffer buffer(opt.max_header_bytes + 2 * kMaxRead);
    bool first = true;
    // An error answer was sent while the client may still be sending the request (a body over
    // max_body_bytes, the rest of an oversized head): see Linger.
    bool linger = false;
    for (;;) {
      // Phase 1: wait for the next request's first byte (unless pipelined bytes are buffered),
      // then read what has arrived. The first request's header_timeout covers the wait and the
      // whole head; a later request's head gets header_timeout from its first byte.
      auto head_deadline = std::chrono::steady_clock::now() + opt.header_timeout;
      if (buffer.size() == 0) {
        state->idle = true;
        buffer.shrink_to_fit();  // an idle connection holds no read buffer
        auto wait_deadline =
            first ? head_deadline : std::chrono::steady_clock::now() + opt.idle_timeout;
        boost::system::error_code ec = net::error::would_block;
        if (!first) {
          // A keep-alive client under load has usually sent its next request by the time the
          // other ready sessions have had their turn: yield once, then try a plain read. When
          // it is there, the readiness wait is skipped, and with it Asio's epoll_ctl re-arm (a
          // syscall per request: 16,391 in 2 s became 27). EAGAIN falls through to the wait.
          co_await net::post(stream.get_executor(), net::use_awaitable);
          if (!l->closing) ReadAvailable(stream.socket(), buffer, ec);
        }
        while (ec == net::error::would_block || ec == net::error::try_again) {
          if (l->closing || !co_await WaitReadable(stream, wait_timer, state, wait_deadline)) {
            ec = net::error::timed_out;
            break;
          }
          ReadAvailable(stream.socket(), buffer, ec);
        }
        if (ec) break;  // closed, reset, timed out, or cancelled by shutdown
        state->idle = false;
        if (!first) head_deadline = std::chrono::steady_clock::now() + opt.header_timeout;
        stream.expires_at(head_deadline);
      } else {
        stream.expires_at(head_deadline);
      }
      first = false;

      // Phase 2: the head.
      RequestParser parser;
      parser.header_limit(static_cast<uint32_t>(opt.max_header_bytes));
      parser.body_limit(opt.max_body_bytes);
      {
        const boost::system::error_code ec = co_await ReadPart(stream, buffer, parser, kHead);
        if (auto error = ReadErrorResponse(ec)) {
          NotifyRefused(l->handler, parser, error->first);
          co_await WriteError(stream, error->first, error->second, opt.write_timeout);
          linger = true;
          break;
        }
        if (ec) break;  // timeout (slowloris), reset, EOF: nothing to answer
        if (auto error = FramingError(parser)) {
          NotifyRefused(l->handler, parser, error->first);
          co_await WriteError(stream, error->first, error->second, opt.write_timeout);
          linger = true;
          break;
        }
      }
      // The body's bytes are charged to the listener until the handler has answered; a request
      // that would take it past its budget is refused before its body is read.
      BodyCharge charge(
          *l, parser.chunked() ? opt.max_body_bytes : parser.content_length().value_or(0));
      if (!charge.ok()) {
        NotifyRefused(l->handler, parser, 503);
        Response busy = Response::Error(503, "too many request bodies in flight; retry shortly");
        busy.headers.emplace_back("Retry-After", "1");
        co_await WriteResponse(stream, busy, 11, false, opt.write_timeout);
        linger = true;
        break;
      }
      auto started = std::chrono::steady_clock::now();
      // Room for the next read of the rest of the declared body. The parser first moves the
      // buffered body bytes into the body and empties the buffer, so the buffer's whole
      // capacity is then free: it is enough when it holds the rest (or a 64 KiB read, Beast's
      // most). Only a smaller buffer is grown here; Beast would grow it 512 bytes per read.
      // Growing copies what is buffered, so a buffer that is big enough is left alone (a 64 KB
      // body whose first read brought 63 KB used to be copied into a 128 KB buffer here).
      // Never more than one read: the declared length is the client's word, and the body's own
      // storage grows as bytes actually arrive.
      if (auto length = parser.content_length(); length && *length > buffer.size()) {
        const auto next_read =
            static_cast<size_t>(std::min<uint64_t>(*length - buffer.size(), kMaxRead));
        if (buffer.capacity() < next_read) {
          buffer.reserve(std::min(buffer.size() + next_read, buffer.max_size()));
        }
      }

      // Phase 3: the body.
      if (parser.expects_continue()) {
        bhttp::response<bhttp::empty_body> cont{bhttp::status::continue_,
                                                static_cast<unsigned>(parser.version())};
        stream.expires_after(opt.write_timeout);
        auto [ec, n] = co_await bhttp::async_write(stream, cont, kNoThrow);
        if (ec) break;
      }
      stream.expires_after(opt.body_timeout);
      {
        const boost::system::error_code ec = co_await ReadPart(stream, buffer, parser, kBody);
        if (auto error = ReadErrorResponse(ec)) {
          NotifyRefused(l->handler, parser, error->first);
          co_await WriteError(stream, error->first, error->second, opt.write_timeout);
          linger = true;
          break;
        }
        if (ec) break;  // timeout (slowloris), reset, EOF: nothing to answer
      }

      const unsigned version = static_cast<unsigned>(parser.version());
      const bool keep_alive = parser.keep_alive();
      const bool head_request = parser.method() == bhttp::verb::head;
      Request request = std::move(parser.request());
      // Nothing pipelined: the read buffer is not held while the handler runs (a fsync).
      if (buffer.size() == 0) buffer.shrink_to_fit();
      request.remote = remote;
      request.started = started;

      Response response = co_await CallHandler(l->handler, std::move(request));
      const bool again = keep_alive && !l->closing;
      if (!co_await WriteResponse(stream, response, version, again, opt.write_timeout,
                                  head_request)) {
        break;
      }
      if (!again) break;
    }
    boost::system::error_code ignored;
    stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
    if (linger) {
      buffer = beast::flat_buffer();  // held no longer than needed
      state->idle = true;  // a shutdown's sweep cancels it
      co_await Linger(stream, *l);
    }
    stream.socket().close(ignored);
  }

  // Closing a socket whose receive queue holds unread bytes makes the kernel send a reset
  // instead of a FIN, and a client still sending its request (a 2 MB body we refused with 413
  // after its head) then sees ECONNRESET, often without reading the answer we sent. So after
  // an error answer (and our FIN) we read and discard what the client still sends, until it
  // closes, for at most kLingerTime or kLingerBytes (as nginx's lingering_close), and not once
  // the listener is closing: a shutdown's sweep cancels a pending read, and a read that
  // completed meanwhile (the client still sending) is caught by the check before the next.
  static constexpr auto kLingerTime = std::chrono::seconds(5);
  static constexpr size_t kLingerBytes = 64u << 20;
  static net::awaitable<void> Linger(beast::tcp_stream& stream, const Listener& l) {
    thread_local std::unique_ptr<char[]> scratch(new char[kMaxRead]);  // discarded bytes
    stream.expires_after(kLingerTime);
    size_t total = 0;
    while (total < kLingerBytes && !l.closing) {
      auto [ec, n] =
          co_await stream.async_read_some(net::buffer(scratch.get(), kMaxRead), kNoThrow);
      if (ec) break;  // the client closed, the time is up, or a shutdown cancelled it
      total += n;
    }
  }
};

HttpServer::HttpServer(int threads) : impl_(std::make_unique<Impl>()) {
  if (threads < 1) threads = 1;
  for (int i = 0; i < threads; ++i) {
    impl_->contexts.push_back(std::make_unique<net::io_context>(1));
  }
}

HttpServer::~HttpServer() { Shutdown(std::chrono::milliseconds(0)); }

Result<uint16_t> HttpServer::AddListener(const ListenerOptions& options, Handler* handler) {
  auto endpoint = ParseEndpoint(options.address);
  if (!endpoint.ok()) return endpoint.status();
  auto l = std::make_unique<Impl::Listener>();
  l->options = options;
  l->handler = handler;
  l->body_budget = options.max_body_bytes_in_flight > 0
                       ? options.max_body_bytes_in_flight
                       : std::max<uint64_t>(uint64_t{64} << 20, 4 * options.max_body_bytes);
  l->acceptor = std::make_unique<tcp::acceptor>(impl_->ioc());
  boost::system::error_code ec;
  l->acceptor->open(endpoint->protocol(), ec);
  if (!ec) l->acceptor->set_option(net::socket_base::reuse_address(true), ec);
  if (!ec) l->acceptor->bind(*endpoint, ec);
  if (!ec) l->acceptor->listen(net::socket_base::max_listen_connections, ec);
  if (ec) {
    return Unavailable("cannot listen on " + options.address + " (" + options.name +
                       "): " + ec.message());
  }
  uint16_t port = l->acceptor->local_endpoint(ec).port();
  impl_->listeners.push_back(std::move(l));
  return port;
}

void HttpServer::HandleSignals(std::function<void(int)> on_signal) {
  impl_->on_signal = std::move(on_signal);
  impl_->signals = std::make_unique<net::signal_set>(impl_->ioc(), SIGTERM, SIGINT, SIGHUP);
  impl_->ArmSignals();
}

void HttpServer::Every(std::chrono::milliseconds period, std::function<void()> fn) {
  auto timer = std::make_unique<net::steady_timer>(impl_->ioc());
  net::steady_timer* t = timer.get();
  impl_->timers.push_back(std::move(timer));
  // Each tick posts a probe to every I/O thread; the next tick calls `fn` only if all of them
  // ran it. The first tick has nothing to check.
  struct Probes {
    std::mutex mu;
    uint64_t round = 0;     // GUARDED_BY(mu)
    size_t answered = 0;    // GUARDED_BY(mu): probes of `round` that ran
    bool reported = false;  // GUARDED_BY(mu): a stuck thread was logged this episode
  };
  auto probes = std::make_shared<Probes>();
  net::co_spawn(
      impl_->ioc(),
      [this, t, period, fn = std::move(fn), probes]() -> net::awaitable<void> {
        const size_t threads = impl_->contexts.size();
        bool first = true;
        while (!impl_->stopping) {
          t->expires_after(period);
          auto [ec] = co_await t->async_wait(kNoThrow);
          if (ec || impl_->stopping) co_return;
          uint64_t round;
          {
            std::lock_guard lock(probes->mu);
            const bool all = first || probes->answered == threads;
            if (all) {
              probes->reported = false;
            } else if (!probes->reported) {
              probes->reported = true;
              log::Error("an I/O thread has not run for a whole period; periodic task held",
                         {{"answered", std::to_string(probes->answered)},
                          {"threads", std::to_string(threads)}});
            }
            if (all) fn();
            round = ++probes->round;
            probes->answered = 0;
          }
          first = false;
          for (auto& ctx : impl_->contexts) {
            net::post(*ctx, [probes, round] {
              std::lock_guard lock(probes->mu);
              if (probes->round == round) ++probes->answered;
            });
          }
        }
      },
      [](std::exception_ptr e) { log::CoroutineFailure("periodic task", e); });
}

void HttpServer::Start() {
  if (impl_->started.exchange(true)) return;
  for (auto& l : impl_->listeners) {
    net::co_spawn(impl_->ioc(), impl_->AcceptLoop(l.get()),
                  [](std::exception_ptr e) { log::CoroutineFailure("accept loop", e); });
  }
  for (auto& ctx : impl_->contexts) {
    impl_->threads.emplace_back([ctx = ctx.get()] {
      NameThisThread("sy-io");
      auto guard = net::make_work_guard(*ctx);
      // A handler that throws (Asio lets it leave run()) is logged and counted, and the thread
      // goes on serving its other connections rather than ending the process. The session it
      // came from is abandoned without its co_spawn completion: its connection slot stays taken
      // and Shutdown() waits its whole budget for it. None is known to get here (CallHandler
      // catches what a handler throws); this is the last line.
      for (;;) {
        try {
          ctx->run();
          return;
        } catch (...) {
          log::CoroutineFailure("io loop", std::current_exception());
        }
      }
    });
  }
}

void HttpServer::Shutdown(std::chrono::milliseconds timeout) {
  if (impl_->shut_down.exchange(true)) return;
  impl_->stopping = true;
  const auto start = std::chrono::steady_clock::now();
  const auto end = start + timeout;
  // The last part of the budget is for cancelling what did not finish and closing the
  // listeners that served while the others drained.
  const auto grace = std::min<std::chrono::milliseconds>(std::chrono::milliseconds(500), timeout / 4);
  const auto drain_end = end - grace;

  // Stops a set of listeners: no more accepts, idle (or, with `all`, every) sessions cancelled.
  auto close = [this](bool draining_ones, bool all) {
    for (auto& l : impl_->listeners) {
      if (l->options.serve_while_draining != draining_ones) continue;
      l->closing = true;
      net::post(impl_->ioc(), [l = l.get()] {
        boost::system::error_code ec;
        l->acceptor->close(ec);
      });
    }
    std::lock_guard lock(impl_->sessions_mu);
    for (auto& [raw, state] : impl_->sessions) {
      if (!*state->closing) continue;
      // `state = state`: clang before 16 cannot capture a structured binding.
      net::post(state->executor, [state = state, all] {
        if (state->stream && (all || state->idle)) {
          boost::system::error_code ignored;  // a socket a timeout already closed is fine
          state->stream->socket().cancel(ignored);
        }
      });
    }
  };
  // Sessions of the listeners that have closed.
  auto closing_sessions = [this] {
    size_t n = 0;
    for (auto& [raw, state] : impl_->sessions) n += *state->closing ? 1 : 0;
    return n;
  };

  // 1. The public listeners stop; in-flight requests finish, idle connections close. A session
  //    that turns idle after the sweep sees `closing` before it waits again and closes itself.
  close(/*draining_ones=*/false, /*all=*/false);
  {
    std::unique_lock lock(impl_->sessions_mu);
    impl_->sessions_cv.wait_until(lock, drain_end, [&] { return closing_sessions() == 0; });
  }
  // 2. What did not finish is cancelled; then the listeners that served meanwhile close too.
  close(/*draining_ones=*/false, /*all=*/true);
  close(/*draining_ones=*/true, /*all=*/true);
  net::post(impl_->ioc(), [this] {
    if (impl_->signals) impl_->signals->cancel();
    for (auto& t : impl_->timers) t->cancel();
  });
  {
    std::unique_lock lock(impl_->sessions_mu);
    impl_->sessions_cv.wait_until(lock, std::max(end, std::chrono::steady_clock::now() +
                                                          std::chrono::milliseconds(50)),
                                  [this] { return impl_->sessions.empty(); });
  }
  for (auto& ctx : impl_->contexts) ctx->stop();
  for (auto& t : impl_->threads) {
    if (t.joinable()) t.join();
  }
}

bool HttpServer::stopping() const { return impl_->stopping; }

size_t HttpServer::active_connections() const { return impl_->active_connections; }

}  // namespace switchyard::http
