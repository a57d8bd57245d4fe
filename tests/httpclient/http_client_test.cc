#include "httpclient/http_client.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "fakes/fake_proxy.h"
#include "support/blocking_lookup.h"
#include "support/temp_dir.h"

namespace switchyard::httpclient {
namespace {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
namespace ssl = boost::asio::ssl;
using tcp = net::ip::tcp;
using std::chrono::milliseconds;
using std::chrono::seconds;
using Clock = std::chrono::steady_clock;

// ------------------------------------------------------------------------------------------------
// ScriptServer: a scriptable HTTP/1.1 origin (plain or TLS) on 127.0.0.1 and a free port.
// Blocking sockets and one thread per connection, so a reply can be delayed, withheld, malformed,
// cut short or never sent without affecting other connections. The handler runs on connection
// threads (concurrently for different connections). Setup failures throw; I/O errors just end the
// connection.
// ------------------------------------------------------------------------------------------------

struct SeenRequest {
  std::string method;
  std::string target;
  std::vector<std::pair<std::string, std::string>> headers;  // lower-case names, in order
  std::string body;
  int connection = 0;  // 1-based number of the accepted connection it arrived on
  int sequence = 0;    // 1-based number of the request on that connection
  std::string sni;     // TLS server name sent by the client; empty if none or plain

  std::string Header(std::string_view name) const {
    for (const auto& [n, v] : headers) {
      if (n == name) return v;
    }
    return "";
  }
  size_t HeaderCount(std::string_view name) const {
    size_t count = 0;
    for (const auto& h : headers) count += h.first == name;
    return count;
  }
};

struct Reply {
  int status = 200;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  bool chunked = false;  // Transfer-Encoding: chunked, one write per chunk
  size_t chunk_size = 7;
  std::optional<std::string> raw;  // sent verbatim instead of a formatted response
  bool send_nothing = false;
  milliseconds delay{0};                          // before answering; cut short by Stop()
  enum class After { kContinue, kClose, kHang };  // kHang: read nothing until the peer closes
  After after = After::kContinue;

  static Reply Ok(std::string body) {
    Reply r;
    r.body = std::move(body);
    return r;
  }
  static Reply Raw(std::string bytes, After after = After::kClose) {
    Reply r;
    r.raw = std::move(bytes);
    r.after = after;
    return r;
  }
  static Reply CloseWithoutAnswer() {
    Reply r;
    r.send_nothing = true;
    r.after = After::kClose;
    return r;
  }
  static Reply Hang() {
    Reply r;
    r.send_nothing = true;
    r.after = After::kHang;
    return r;
  }
};

struct Cert {
  std::string cert_pem;
  std::string key_pem;
};

// A self-signed P-256 certificate (CA:TRUE so it can be its own trust anchor) with the given
// subjectAltNames, e.g. {"DNS:localhost", "IP:127.0.0.1"}.
Cert MakeSelfSignedCert(const std::string& common_name, const std::string& subject_alt_names) {
  auto fail = [](const char* what) { throw std::runtime_error(std::string("cert: ") + what); };
  std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> key(EVP_EC_gen("P-256"), EVP_PKEY_free);
  if (!key) fail("EVP_EC_gen");
  std::unique_ptr<X509, decltype(&X509_free)> x509(X509_new(), X509_free);
  X509* x = x509.get();
  uint64_t serial = 0;
  RAND_bytes(reinterpret_cast<unsigned char*>(&serial), sizeof(serial));
  serial >>= 2;
  if (!X509_set_version(x, 2) || !ASN1_INTEGER_set_uint64(X509_get_serialNumber(x), serial) ||
      !X509_gmtime_adj(X509_getm_notBefore(x), -3600) ||
      !X509_gmtime_adj(X509_getm_notAfter(x), 86400) || !X509_set_pubkey(x, key.get())) {
    fail("fields");
  }
  X509_NAME* name = X509_get_subject_name(x);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>(common_name.c_str()), -1, -1,
                             0);
  X509_set_issuer_name(x, name);
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, x, x, nullptr, nullptr, 0);
  const std::pair<int, std::string> extensions[] = {
      {NID_basic_constraints, "critical,CA:TRUE"},
      {NID_key_usage, "critical,digitalSignature,keyCertSign"},
      {NID_subject_key_identifier, "hash"},
      {NID_subject_alt_name, subject_alt_names},
  };
  for (const auto& [nid, value] : extensions) {
    X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str());
    if (!ext) fail("extension");
    X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
  }
  if (!X509_sign(x, key.get(), EVP_sha256())) fail("sign");
  auto to_pem = [&](auto write) {
    std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new(BIO_s_mem()), BIO_free);
    if (!write(bio.get())) fail("PEM");
    char* data = nullptr;
    long len = BIO_get_mem_data(bio.get(), &data);
    return std::string(data, static_cast<size_t>(len));
  };
  Cert cert;
  cert.cert_pem = to_pem([&](BIO* b) { return PEM_write_bio_X509(b, x); });
  cert.key_pem = to_pem([&](BIO* b) {
    return PEM_write_bio_PrivateKey(b, key.get(), nullptr, nullptr, 0, nullptr, nullptr);
  });
  return cert;
}

struct ServerOptions {
  std::optional<Cert> tls;  // serve TLS with this certificate
  bool silent = false;      // accept, then never read, handshake or answer
};

class ScriptServer {
 public:
  using Handler = std::function<Reply(const SeenRequest&)>;
  using Options = ServerOptions;

  explicit ScriptServer(Handler handler, Options options = {})
      : handler_(std::move(handler)), options_(std::move(options)), acceptor_(ioc_) {
    if (options_.tls) {
      tls_ctx_.emplace(ssl::context::tls_server);
      boost::system::error_code ec;
      tls_ctx_->use_certificate_chain(net::buffer(options_.tls->cert_pem), ec);
      if (!ec) tls_ctx_->use_private_key(net::buffer(options_.tls->key_pem), ssl::context::pem, ec);
      if (ec) throw std::runtime_error("server TLS setup: " + ec.message());
    }
    const tcp::endpoint ep(net::ip::make_address_v4("127.0.0.1"), 0);
    acceptor_.open(ep.protocol());
    acceptor_.bind(ep);
    acceptor_.listen(net::socket_base::max_listen_connections);
    port_ = acceptor_.local_endpoint().port();
    accept_thread_ = std::thread([this] { AcceptLoop(); });
  }

  ~ScriptServer() { Stop(); }

  uint16_t port() const { return port_; }
  std::string Url(std::string_view path = "/") const {
    return std::string(options_.tls ? "https" : "http") + "://127.0.0.1:" + std::to_string(port_) +
           std::string(path);
  }

  int accepted() const {
    std::lock_guard lock(mu_);
    return accepted_;
  }
  int handshake_failures() const {
    std::lock_guard lock(mu_);
    return handshake_failures_;
  }
  std::vector<SeenRequest> requests() const {
    std::lock_guard lock(mu_);
    return requests_;
  }
  size_t request_count() const {
    std::lock_guard lock(mu_);
    return requests_.size();
  }
  bool WaitForRequests(size_t n, milliseconds timeout = seconds(30)) const {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, timeout, [&] { return requests_.size() >= n; });
  }
  bool WaitForClosed(int n, milliseconds timeout = seconds(30)) const {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, timeout, [&] { return closed_ >= n; });
  }

  // Stops accepting, ends every connection (waking delayed and hanging ones), joins all threads.
  void Stop() {
    {
      std::lock_guard lock(mu_);
      if (stopping_) return;
      stopping_ = true;
      for (auto& slot : slots_) {
        if (!slot->closed) ::shutdown(slot->fd, SHUT_RDWR);
      }
    }
    cv_.notify_all();
    {  // wake the blocking accept
      boost::system::error_code ec;
      tcp::socket waker(ioc_);
      waker.connect(tcp::endpoint(net::ip::make_address_v4("127.0.0.1"), port_), ec);
    }
    accept_thread_.join();
    for (auto& t : connection_threads_) t.join();
  }

 private:
  struct Slot {
    int fd = -1;
    bool closed = false;  // GUARDED_BY(mu_): set before the fd is closed
  };

  void AcceptLoop() {
    for (;;) {
      tcp::socket socket(ioc_);
      boost::system::error_code ec;
      acceptor_.accept(socket, ec);
      auto slot = std::make_shared<Slot>();
      int number = 0;
      {
        std::lock_guard lock(mu_);
        if (stopping_) return;
        if (ec) continue;
        number = ++accepted_;
        slot->fd = socket.native_handle();
        slots_.push_back(slot);
      }
      connection_threads_.emplace_back(
          [this, s = std::move(socket), number, slot]() mutable { Serve(s, number, *slot); });
    }
  }

  void Serve(tcp::socket& socket, int number, Slot& slot) {
    if (options_.silent) {
      DrainUntilClosed(socket);
    } else if (tls_ctx_) {
      ssl::stream<tcp::socket&> stream(socket, *tls_ctx_);
      boost::system::error_code ec;
      stream.handshake(ssl::stream_base::server, ec);
      if (ec) {
        std::lock_guard lock(mu_);
        ++handshake_failures_;
      } else {
        const char* sni = SSL_get_servername(stream.native_handle(), TLSEXT_NAMETYPE_host_name);
        ServeRequests(stream, socket, number, sni ? sni : "");
      }
    } else {
      ServeRequests(socket, socket, number, "");
    }
    {
      std::lock_guard lock(mu_);
      slot.closed = true;
      boost::system::error_code ec;
      socket.shutdown(tcp::socket::shutdown_both, ec);
      socket.close(ec);
      ++closed_;
    }
    cv_.notify_all();
  }

  static void DrainUntilClosed(tcp::socket& socket) {
    char scratch[4096];
    boost::system::error_code ec;
    while (!ec) socket.read_some(net::buffer(scratch), ec);
  }

  static std::vector<std::string> Format(const Reply& r, bool head_only) {
    std::string head = "HTTP/1.1 " + std::to_string(r.status) + " " +
                       std::string(bhttp::obsolete_reason(static_cast<bhttp::status>(r.status))) +
                       "\r\n";
    for (const auto& [n, v] : r.headers) head += n + ": " + v + "\r\n";
    if (r.chunked) {
      head += "Transfer-Encoding: chunked\r\n\r\n";
      std::vector<std::string> pieces{head};
      for (size_t i = 0; i < r.body.size(); i += r.chunk_size) {
        std::string chunk = r.body.substr(i, r.chunk_size);
        char size[32];
        snprintf(size, sizeof(size), "%zx\r\n", chunk.size());
        pieces.push_back(size + chunk + "\r\n");
      }
      pieces.push_back("0\r\n\r\n");
      return pieces;
    }
    head += "Content-Length: " + std::to_string(r.body.size()) + "\r\n\r\n";
    return {head_only ? head : head + r.body};
  }

  template <class Stream>
  void ServeRequests(Stream& stream, tcp::socket& socket, int number, const std::string& sni) {
    beast::flat_buffer buffer;
    for (int sequence = 1;; ++sequence) {
      bhttp::request_parser<bhttp::string_body> parser;
      parser.body_limit(64u << 20);
      parser.header_limit(1u << 20);
      boost::system::error_code ec;
      bhttp::read(stream, buffer, parser, ec);
      if (ec) return;
      const auto& msg = parser.get();
      SeenRequest seen;
      seen.method = std::string(msg.method_string());
      seen.target = std::string(msg.target());
      for (const auto& f : msg) {
        std::string name(f.name_string());
        for (char& c : name) c = static_cast<char>(tolower(static_cast<unsigned char>(c)));
        seen.headers.emplace_back(std::move(name), std::string(f.value()));
      }
      seen.body = msg.body();
      seen.connection = number;
      seen.sequence = sequence;
      seen.sni = sni;
      {
        std::lock_guard lock(mu_);
        requests_.push_back(seen);
      }
      cv_.notify_all();
      Reply reply = handler_(seen);
      if (reply.delay.count() > 0) {
        std::unique_lock lock(mu_);
        if (cv_.wait_for(lock, reply.delay, [&] { return stopping_; })) return;
      }
      if (!reply.send_nothing) {
        std::vector<std::string> pieces =
            reply.raw ? std::vector<std::string>{*reply.raw} : Format(reply, seen.method == "HEAD");
        for (const auto& piece : pieces) {
          net::write(stream, net::buffer(piece), ec);
          if (ec) return;
        }
      }
      switch (reply.after) {
        case Reply::After::kClose:
          return;
        case Reply::After::kHang:
          DrainUntilClosed(socket);
          return;
        case Reply::After::kContinue:
          if (!msg.keep_alive()) return;
          break;
      }
    }
  }

  Handler handler_;
  Options options_;
  net::io_context ioc_;  // only for constructing blocking sockets; never run
  tcp::acceptor acceptor_;
  std::optional<ssl::context> tls_ctx_;
  uint16_t port_ = 0;
  std::thread accept_thread_;
  std::vector<std::thread> connection_threads_;  // touched by the accept thread, then Stop()

  mutable std::mutex mu_;
  mutable std::condition_variable cv_;
  bool stopping_ = false;                     // GUARDED_BY(mu_)
  int accepted_ = 0;                          // GUARDED_BY(mu_)
  int closed_ = 0;                            // GUARDED_BY(mu_)
  int handshake_failures_ = 0;                // GUARDED_BY(mu_)
  std::vector<SeenRequest> requests_;         // GUARDED_BY(mu_)
  std::vector<std::shared_ptr<Slot>> slots_;  // GUARDED_BY(mu_)
};

// Releases handlers once `n` have arrived (or after a generous timeout), so a test can hold
// that many requests in flight at once.
class Gate {
 public:
  explicit Gate(size_t n) : n_(n) {}
  // Returns whether all `n` arrived.
  bool ArriveAndWait() {
    std::unique_lock lock(mu_);
    ++arrived_;
    cv_.notify_all();
    return cv_.wait_for(lock, seconds(60), [&] { return arrived_ >= n_; });
  }

 private:
  const size_t n_;
  std::mutex mu_;
  std::condition_variable cv_;
  size_t arrived_ = 0;
};

// ------------------------------------------------------------------------------------------------
// Client-side helpers.
// ------------------------------------------------------------------------------------------------

// Collects completions and checks the callback contract (exactly once, on a client thread).
class Completions {
 public:
  ClientCallback Callback(size_t index) {
    {
      std::lock_guard lock(mu_);
      if (results_.size() <= index) results_.resize(index + 1);
    }
    const auto caller = std::this_thread::get_id();
    return [this, index, caller](Result<ClientResponse> r) {
      std::lock_guard lock(mu_);
      if (std::this_thread::get_id() == caller) ++on_caller_thread_;
      if (results_[index].has_value()) ++duplicates_;
      results_[index].emplace(std::move(r));
      ++done_;
      cv_.notify_all();
    };
  }
  bool WaitFor(size_t n, milliseconds timeout = seconds(60)) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, timeout, [&] { return done_ >= n; });
  }
  Result<ClientResponse> Get(size_t index) {
    std::lock_guard lock(mu_);
    return *results_[index];
  }
  int duplicates() {
    std::lock_guard lock(mu_);
    return duplicates_;
  }
  int on_caller_thread() {
    std::lock_guard lock(mu_);
    return on_caller_thread_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::optional<Result<ClientResponse>>> results_;
  size_t done_ = 0;
  int duplicates_ = 0;
  int on_caller_thread_ = 0;
};

ClientRequest Get(std::string url, milliseconds timeout = seconds(10)) {
  ClientRequest r;
  r.method = "GET";
  r.url = std::move(url);
  r.timeout = timeout;
  return r;
}

// Sends one request and waits for its completion (generous limit; a hang fails the test).
Result<ClientResponse> Fetch(HttpClient& client, ClientRequest request) {
  auto promise = std::make_shared<std::promise<Result<ClientResponse>>>();
  auto future = promise->get_future();
  client.Send(std::move(request),
              [promise](Result<ClientResponse> r) { promise->set_value(std::move(r)); });
  if (future.wait_for(seconds(60)) != std::future_status::ready) {
    ADD_FAILURE() << "request did not complete within 60 s";
    return Internal("test: no completion");
  }
  return future.get();
}

std::string BinaryBody(size_t n) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) s[i] = static_cast<char>((i * 7 + i / 256) & 0xff);
  return s;
}

class HttpClientTest : public ::testing::Test {
 protected:
  std::unique_ptr<HttpClient> NewClient(HttpClientOptions options = {}) {
    return NewHttpClient(options);
  }
};

// ------------------------------------------------------------------------------------------------
// Round trips.
// ------------------------------------------------------------------------------------------------

TEST_F(HttpClientTest, GetRoundTripCarriesHeadersAndBodyByteForByte) {
  const std::string payload = BinaryBody(3000);
  ScriptServer server([&](const SeenRequest&) {
    Reply r = Reply::Ok(payload);
    r.headers = {{"X-Upstream-Thing", "value one"}, {"Content-Type", "application/octet-stream"}};
    return r;
  });
  auto client = NewClient();
  ClientRequest req = Get(server.Url("/hooks/a%20b?x=1&y=%2F"));
  req.headers = {{"X-Request-Id", "abc-123"}, {"Authorization", "Bearer t0k"}};
  Result<ClientResponse> r = Fetch(*client, req);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, payload);
  EXPECT_EQ(r->Header("x-upstream-thing"), "value one");
  EXPECT_EQ(r->Header("content-type"), "application/octet-stream");
  EXPECT_EQ(r->Header("content-length"), "3000");
  EXPECT_EQ(r->Header("X-Upstream-Thing"), "");  // names are lower-case
  EXPECT_EQ(r->Header("absent"), "");

  auto seen = server.requests();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].method, "GET");
  EXPECT_EQ(seen[0].target, "/hooks/a%20b?x=1&y=%2F");
  EXPECT_EQ(seen[0].Header("host"), "127.0.0.1:" + std::to_string(server.port()));
  EXPECT_EQ(seen[0].Header("user-agent"), "switchyard/0.1");
  EXPECT_EQ(seen[0].Header("x-request-id"), "abc-123");
  EXPECT_EQ(seen[0].Header("authorization"), "Bearer t0k");
  EXPECT_EQ(seen[0].HeaderCount("content-length"), 0u);  // GET without a body
  EXPECT_EQ(seen[0].HeaderCount("content-type"), 0u);
  EXPECT_EQ(seen[0].body, "");
}

TEST_F(HttpClientTest, HeaderNamesAndMethodsMayUseEveryTokenCharacter) {
  ScriptServer server([](const SeenRequest&) { return Reply::Ok("ok"); });
  auto client = NewClient();
  const std::string name = "Az09!#$%&'*+-.^_`|~";  // RFC 9110 tchar: letters, digits and these
  ClientRequest req = Get(server.Url("/"));
  req.method = "M-1.x_Y~";
  req.headers = {{name, "tab\tand \xC3\xA9 are allowed in values"}};
  Result<ClientResponse> r = Fetch(*client, req);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  auto seen = server.requests();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].method, "M-1.x_Y~");
  EXPECT_EQ(seen[0].Header("az09!#$%&'*+-.^_`|~"), "tab\tand \xC3\xA9 are allowed in values");
}

TEST_F(HttpClientTest, PostRoundTripSendsBodyByteForByteWithCallersContentType) {
  ScriptServer server([](const SeenRequest& req) { return Reply::Ok("echo:" + req.body); });
  auto client = NewClient();
  ClientRequest req;
  req.url = server.Url("/ingest");
  req.body = BinaryBody(100000);
  req.headers = {{"Content-Type", "application/json; charset=utf-8"}};
  Result<ClientResponse> r = Fetch(*client, req);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, "echo:" + req.body);

  auto seen = server.requests();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].method, "POST");
  EXPECT_EQ(seen[0].target, "/ingest");
  EXPECT_EQ(seen[0].body, req.body);
  EXPECT_EQ(seen[0].Header("content-length"), "100000");
  EXPECT_EQ(seen[0].HeaderCount("content-type"), 1u);
  EXPECT_EQ(seen[0].Header("content-type"), "application/json; charset=utf-8");
}

TEST_F(HttpClientTest, RequestWithoutContentTypeGetsNoDefaultAndEmptyPostHasLengthZero) {
  ScriptServer server([](const SeenRequest&) { return Reply::Ok(""); });
  auto client = NewClient();
  ClientRequest post;
  post.url = server.Url();
  post.body = "raw";
  ClientRequest empty_post;
  empty_post.url = server.Url();
  ClientRequest custom_agent = Get(server.Url());
  custom_agent.headers = {{"User-Agent", "custom/1"}};
  ASSERT_TRUE(Fetch(*client, post).ok());
  ASSERT_TRUE(Fetch(*client, empty_post).ok());
  ASSERT_TRUE(Fetch(*client, custom_agent).ok());
  auto seen = server.requests();
  ASSERT_EQ(seen.size(), 3u);
  EXPECT_EQ(seen[0].HeaderCount("content-type"), 0u);
  EXPECT_EQ(seen[0].Header("content-length"), "3");
  EXPECT_EQ(seen[1].Header("content-length"), "0");
  EXPECT_EQ(seen[2].HeaderCount("user-agent"), 1u);
  EXPECT_EQ(seen[2].Header("user-agent"), "custom/1");
}

TEST_F(HttpClientTest, CustomMethodsAndHeadWork) {
  ScriptServer server([](const SeenRequest& req) {
    Reply r = Reply::Ok(req.method == "HEAD" ? std::string(100, 'x') : req.method);
    return r;
  });
  auto client = NewClient();
  ClientRequest head = Get(server.Url());
  head.method = "HEAD";
  Result<ClientResponse> h = Fetch(*client, head);
  ASSERT_TRUE(h.ok()) << h.status().ToString();
  EXPECT_EQ(h->status, 200);
  EXPECT_EQ(h->Header("content-length"), "100");
  EXPECT_EQ(h->body, "");
  ClientRequest purge = Get(server.Url());
  purge.method = "PURGE";
  Result<ClientResponse> p = Fetch(*client, purge);
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_EQ(p->body, "PURGE");
  EXPECT_EQ(server.accepted(), 1);  // the HEAD response left the connection reusable
}

TEST_F(HttpClientTest, StatusCodesOfAnyValueAreReturnedAsResponses) {
  ScriptServer server([](const SeenRequest& req) {
    Reply r = Reply::Ok("status " + req.target.substr(1));
    r.status = std::stoi(req.target.substr(1));
    if (r.status == 204 || r.status == 304) r.body.clear();
    return r;
  });
  auto client = NewClient();
  for (int status : {201, 204, 304, 400, 404, 429, 500, 503, 599}) {
    Result<ClientResponse> r =
        Fetch(*client, Get(server.Url(std::string("/").append(std::to_string(status)))));
    ASSERT_TRUE(r.ok()) << status << ": " << r.status().ToString();
    EXPECT_EQ(r->status, status);
    if (status != 204 && status != 304) {
      EXPECT_EQ(r->body, "status " + std::to_string(status));
    }
  }
}

TEST_F(HttpClientTest, RedirectIsReturnedNotFollowed) {
  ScriptServer server([](const SeenRequest&) {
    Reply r = Reply::Ok("moved");
    r.status = 302;
    r.headers = {{"Location", "/elsewhere"}};
    return r;
  });
  auto client = NewClient();
  Result<ClientResponse> r = Fetch(*client, Get(server.Url("/start")));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->status, 302);
  EXPECT_EQ(r->Header("location"), "/elsewhere");
  EXPECT_EQ(r->body, "moved");
  EXPECT_EQ(server.request_count(), 1u);
}

TEST_F(HttpClientTest, ChunkedResponseIsDecodedAndConnectionReused) {
  const std::string payload = BinaryBody(5000);
  ScriptServer server([&](const SeenRequest&) {
    Reply r = Reply::Ok(payload);
    r.chunked = true;
    r.chunk_size = 333;
    return r;
  });
  auto client = NewClient();
  for (int i = 0; i < 2; ++i) {
    Result<ClientResponse> r = Fetch(*client, Get(server.Url()));
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ(r->body, payload);
  }
  EXPECT_EQ(server.accepted(), 1);
}

TEST_F(HttpClientTest, InterimResponsesAreSkipped) {
  ScriptServer server([](const SeenRequest&) {
    return Reply::Raw(
        "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfinal",
        Reply::After::kContinue);
  });
  auto client = NewClient();
  Result<ClientResponse> r = Fetch(*client, Get(server.Url()));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, "final");
}

// ------------------------------------------------------------------------------------------------
// Keep-alive pool.
// ------------------------------------------------------------------------------------------------

TEST_F(HttpClientTest, KeepAliveReusesOneConnectionForSequentialRequests) {
  ScriptServer server([](const SeenRequest& req) { return Reply::Ok(req.body); });
  auto client = NewClient();
  for (int i = 0; i < 10; ++i) {
    ClientRequest req;
    req.url = server.Url();
    req.body = "n=" + std::to_string(i);
    Result<ClientResponse> r = Fetch(*client, req);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ(r->body, req.body);
  }
  EXPECT_EQ(server.accepted(), 1);
  auto seen = server.requests();
  ASSERT_EQ(seen.size(), 10u);
  EXPECT_EQ(seen.back().connection, 1);
  EXPECT_EQ(seen.back().sequence, 10);
}

TEST_F(HttpClientTest, EachRequestGoesToItsOwnUrlWhenManyUrlsAlternate) {
  // Parsed URLs are remembered (64 of them, then the memory starts over): 150 distinct URLs
  // in two passes, plus a bad one in between, must each reach exactly their own target.
  ScriptServer server([](const SeenRequest& req) { return Reply::Ok(req.target); });
  auto client = NewClient();
  for (int pass = 0; pass < 2; ++pass) {
    for (int i = 0; i < 150; ++i) {
      const std::string target = "/u/" + std::to_string(i) + "?pass=" + std::to_string(pass);
      Result<ClientResponse> r = Fetch(*client, Get(server.Url(target)));
      ASSERT_TRUE(r.ok()) << r.status().ToString();
      EXPECT_EQ(r->body, target);
      if (i == 70) {
        Result<ClientResponse> bad = Fetch(*client, Get("http://"));
        EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
      }
    }
  }
  EXPECT_EQ(server.requests().size(), 300u);
}

TEST_F(HttpClientTest, StalePooledConnectionIsRetriedOnceOnAFreshConnection) {
  // The server reads the second request on connection 1 and closes without answering, as a
  // server does when its keep-alive timer fires just as the request arrives.
  ScriptServer server([](const SeenRequest& req) {
    if (req.connection == 1 && req.sequence == 2) return Reply::CloseWithoutAnswer();
    return Reply::Ok("conn " + std::to_string(req.connection));
  });
  auto client = NewClient();
  ClientRequest req;
  req.url = server.Url();
  req.body = "payload";
  Result<ClientResponse> first = Fetch(*client, req);
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  Result<ClientResponse> second = Fetch(*client, req);
  ASSERT_TRUE(second.ok()) << second.status().ToString();
  EXPECT_EQ(second->body, "conn 2");
  EXPECT_EQ(server.accepted(), 2);
  auto seen = server.requests();
  ASSERT_EQ(seen.size(), 3u);  // the second request was sent twice: once stale, once fresh
  EXPECT_EQ(seen[2].body, "payload");
}

TEST_F(HttpClientTest, FreshConnectionFailureIsNotRetried) {
  ScriptServer server([](const SeenRequest&) { return Reply::CloseWithoutAnswer(); });
  auto client = NewClient();
  Result<ClientResponse> r = Fetch(*client, Get(server.Url()));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kUnavailable) << r.status().ToString();
  EXPECT_EQ(server.request_count(), 1u);
}

TEST_F(HttpClientTest, ReusedConnectionFailingMidResponseIsNotRetried) {
  ScriptServer server([](const SeenRequest& req) {
    if (req.sequence == 2) {
      return Reply::Raw("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc");
    }
    return Reply::Ok("ok");
  });
  auto client = NewClient();
  ClientRequest req;
  req.url = server.Url();
  ASSERT_TRUE(Fetch(*client, req).ok());
  Result<ClientResponse> r = Fetch(*client, req);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kUnavailable) << r.status().ToString();
  EXPECT_EQ(server.request_count(), 2u);  // a request that got a response is never re-sent
  EXPECT_EQ(server.accepted(), 1);
}

TEST_F(HttpClientTest, ConnectionClosedByServerWhileIdleIsNotReused) {
  // Keep-alive response, but the server closes right after it. Checked before reuse (here:
  // always), the closed connection is never written to.
  ScriptServer server([](const SeenRequest&) {
    Reply r = Reply::Ok("bye");
    r.after = Reply::After::kClose;
    return r;
  });
  auto client = NewClient({.reuse_without_check = std::chrono::milliseconds(0)});
  ASSERT_TRUE(Fetch(*client, Get(server.Url())).ok());
  ASSERT_TRUE(server.WaitForClosed(1));
  Result<ClientResponse> r = Fetch(*client, Get(server.Url()));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(server.accepted(), 2);
  EXPECT_EQ(server.request_count(), 2u);
  EXPECT_EQ(server.requests().back().sequence, 1);  // the first request of connection 2
}

TEST_F(HttpClientTest, ARecentlyUsedConnectionTheServerClosedIsRetriedOnANewOne) {
  // Reused within reuse_without_check, the connection is not checked first: the request fails
  // on it before any response byte and goes out again on a new connection, and succeeds.
  ScriptServer server([](const SeenRequest& req) {
    Reply r = Reply::Ok("conn " + std::to_string(req.connection));
    r.after = Reply::After::kClose;
    return r;
  });
  auto client = NewClient({.reuse_without_check = std::chrono::hours(1)});
  for (int i = 1; i <= 3; ++i) {
    Result<ClientResponse> r = Fetch(*client, Get(server.Url()));
    ASSERT_TRUE(r.ok()) << i << ": " << r.status().ToString();
    EXPECT_EQ(r->body, "conn " + std::to_string(i));
    ASSERT_TRUE(server.WaitForClosed(i));
  }
  EXPECT_EQ(server.accepted(), 3);
  EXPECT_EQ(server.request_count(), 3u);  // the server never read a request twice
}

// A receiver restarting closes every pooled connection at once. The one retry of a request
// that met a stale connection took the next pooled one, stale too, and failed: every deploy of
// a receiver cost failed attempts and backoff.
TEST_F(HttpClientTest, TheRetryAfterAStaleConnectionUsesANewOneNotAnotherPooledOne) {
  Gate gate(3);
  std::atomic<bool> restarted{false};
  ScriptServer server([&](const SeenRequest& req) {
    if (!restarted) {
      gate.ArriveAndWait();  // three connections in use at once: the pool keeps three
      Reply r = Reply::Ok("before");
      r.after = Reply::After::kClose;  // then all close, as a restart does
      return r;
    }
    return Reply::Ok("conn " + std::to_string(req.connection));
  });
  auto client = NewClient({.reuse_without_check = std::chrono::hours(1)});
  Completions done;
  for (int i = 0; i < 3; ++i) client->Send(Get(server.Url()), done.Callback(i));
  ASSERT_TRUE(done.WaitFor(3));
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(done.Get(i).ok()) << done.Get(i).status().ToString();
  ASSERT_TRUE(server.WaitForClosed(3));
  restarted = true;
  Result<ClientResponse> r = Fetch(*client, Get(server.Url()));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->body, "conn 4");
}

TEST_F(HttpClientTest, ConnectionCloseResponseIsNotPooled) {
  ScriptServer server([](const SeenRequest&) {
    Reply r = Reply::Ok("x");
    r.headers = {{"Connection", "close"}};
    return r;
  });
  auto client = NewClient();
  ASSERT_TRUE(Fetch(*client, Get(server.Url())).ok());
  ASSERT_TRUE(Fetch(*client, Get(server.Url())).ok());
  EXPECT_EQ(server.accepted(), 2);
}

TEST_F(HttpClientTest, IdleConnectionsAreClosedAfterIdleTimeout) {
  ScriptServer server([](const SeenRequest&) { return Reply::Ok("x"); });
  HttpClientOptions options;
  options.idle_timeout = milliseconds(100);
  auto client = NewClient(options);
  const auto start = Clock::now();
  ASSERT_TRUE(Fetch(*client, Get(server.Url())).ok());
  ASSERT_TRUE(server.WaitForClosed(1));  // the client closed the idle connection
  EXPECT_GE(Clock::now() - start, milliseconds(100));
  ASSERT_TRUE(Fetch(*client, Get(server.Url())).ok());
  EXPECT_EQ(server.accepted(), 2);
}

TEST_F(HttpClientTest, IdleConnectionsPerHostAreCapped) {
  constexpr int kParallel = 5;
  Gate gate(kParallel);
  ScriptServer server([&](const SeenRequest& req) {
    if (req.sequence == 1) gate.ArriveAndWait();
    return Reply::Ok("x");
  });
  HttpClientOptions options;
  options.max_idle_per_host = 2;
  auto client = NewClient(options);
  Completions done;
  for (int i = 0; i < kParallel; ++i) client->Send(Get(server.Url()), done.Callback(i));
  ASSERT_TRUE(done.WaitFor(kParallel));
  for (int i = 0; i < kParallel; ++i) ASSERT_TRUE(done.Get(i).ok());
  EXPECT_EQ(server.accepted(), kParallel);
  ASSERT_TRUE(server.WaitForClosed(kParallel - 2));  // 3 over the cap are closed
  for (int i = 0; i < 2; ++i) ASSERT_TRUE(Fetch(*client, Get(server.Url())).ok());
  EXPECT_EQ(server.accepted(), kParallel);  // served by the 2 pooled connections
}

// ------------------------------------------------------------------------------------------------
// Failures.
// ------------------------------------------------------------------------------------------------

TEST_F(HttpClientTest, TimeoutOnServerThatNeverAnswersIsDeadlineExceeded) {
  ScriptServer server([](const SeenRequest&) { return Reply::Hang(); });
  auto client = NewClient();
  const auto start = Clock::now();
  Result<ClientResponse> r = Fetch(*client, Get(server.Url(), milliseconds(300)));
  const auto elapsed = Clock::now() - start;
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kDeadlineExceeded) << r.status().ToString();
  EXPECT_GE(elapsed, milliseconds(300));
  EXPECT_LT(elapsed, milliseconds(3000));
}

TEST_F(HttpClientTest, TimeoutCoversTheWholeExchangeNotEachRead) {
  // Headers, then a body that never completes: the deadline still applies.
  ScriptServer server([](const SeenRequest&) {
    return Reply::Raw("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial", Reply::After::kHang);
  });
  auto client = NewClient();
  const auto start = Clock::now();
  Result<ClientResponse> r = Fetch(*client, Get(server.Url(), milliseconds(300)));
  const auto elapsed = Clock::now() - start;
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kDeadlineExceeded) << r.status().ToString();
  EXPECT_GE(elapsed, milliseconds(300));
  EXPECT_LT(elapsed, milliseconds(3000));
}

TEST_F(HttpClientTest, TlsHandshakeThatNeverCompletesIsDeadlineExceeded) {
  ScriptServer::Options options;
  options.silent = true;
  ScriptServer server([](const SeenRequest&) { return Reply::Ok(""); }, options);
  auto client = NewClient();
  const std::string url = "https://127.0.0.1:" + std::to_string(server.port()) + "/";
  const auto start = Clock::now();
  Result<ClientResponse> r = Fetch(*client, Get(url, milliseconds(300)));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kDeadlineExceeded) << r.status().ToString();
  EXPECT_GE(Clock::now() - start, milliseconds(300));
}

TEST_F(HttpClientTest, ConnectionRefusedIsUnavailable) {
  uint16_t port;
  {
    net::io_context ioc;
    tcp::acceptor probe(ioc, tcp::endpoint(net::ip::make_address_v4("127.0.0.1"), 0));
    port = probe.local_endpoint().port();
  }  // closed: nothing listens there now
  auto client = NewClient();
  Result<ClientResponse> r =
      Fetch(*client, Get("http://127.0.0.1:" + std::to_string(port) + "/x?secret=1"));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kUnavailable) << r.status().ToString();
  EXPECT_EQ(r.status().message().find("secret"), std::string::npos);  // no target in messages
}

TEST_F(HttpClientTest, UnresolvableHostIsARetryableError) {
  auto client = NewClient();
  Result<ClientResponse> r = Fetch(*client, Get("http://no-such-host.invalid/", seconds(5)));
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(r.status().retryable()) << r.status().ToString();
}

// One worker thread: before, every lookup of a worker went through Asio's one resolver thread,
// so a sink whose DNS hung held up the Sentry API's new connections too.
TEST_F(HttpClientTest, AHostWhoseDnsHangsDelaysNoOtherHostAndNotShutdown) {
  ScriptServer server([](const SeenRequest&) { return Reply::Ok("ok"); });
  testing::BlockingLookup lookup;
  lookup.Block("stuck.test");
  HttpClientOptions options;
  options.threads = 1;
  options.lookup = lookup.Fn();
  auto client = NewClient(options);
  const std::string port = std::to_string(server.port());
  Completions done;
  client->Send(Get("http://stuck.test:" + port + "/", seconds(60)), done.Callback(0));
  ASSERT_TRUE(lookup.WaitStarted("stuck.test"));
  Result<ClientResponse> other = Fetch(*client, Get("http://sentry.test:" + port + "/"));
  ASSERT_TRUE(other.ok()) << other.status().ToString();
  EXPECT_EQ(other->body, "ok");
  EXPECT_FALSE(done.WaitFor(1, milliseconds(0)));
  const auto start = Clock::now();
  client->Shutdown();  // the lookup still hangs
  EXPECT_LT(Clock::now() - start, seconds(10));
  ASSERT_TRUE(done.WaitFor(1, milliseconds(0)));
  EXPECT_EQ(done.Get(0).status().code(), StatusCode::kUnavailable);
  lookup.Release("stuck.test");
}

TEST_F(HttpClientTest, AHungLookupEndsAtTheRequestDeadline) {
  testing::BlockingLookup lookup;
  lookup.Block("stuck.test");
  HttpClientOptions options;
  options.lookup = lookup.Fn();
  auto client = NewClient(options);
  Result<ClientResponse> r = Fetch(*client, Get("http://stuck.test:9/x", milliseconds(200)));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kDeadlineExceeded) << r.status().ToString();
  lookup.Release("stuck.test");
}

TEST_F(HttpClientTest, AFailedLookupIsUnavailableAndNamesTheOriginNotTheTarget) {
  testing::BlockingLookup lookup;
  lookup.Fail("gone.test");
  HttpClientOptions options;
  options.lookup = lookup.Fn();
  auto client = NewClient(options);
  Result<ClientResponse> r = Fetch(*client, Get("http://gone.test:9/hook?token=secret"));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kUnavailable);
  EXPECT_EQ(r.status().message(), "cannot resolve http://gone.test:9: Name or service not known");
}

TEST_F(HttpClientTest, ResponseOverMaxResponseBytesIsResourceExhausted) {
  ScriptServer server([](const SeenRequest& req) {
    Reply r = Reply::Ok(std::string(2 << 20, 'z'));
    r.chunked = req.target == "/chunked";
    r.chunk_size = 64 << 10;
    return r;
  });
  auto client = NewClient();
  for (std::string path : {"/length", "/chunked"}) {
    ClientRequest req = Get(server.Url(path));
    req.max_response_bytes = 1 << 20;
    Result<ClientResponse> r = Fetch(*client, req);
    ASSERT_FALSE(r.ok()) << path;
    EXPECT_EQ(r.status().code(), StatusCode::kResourceExhausted)
        << path << ": " << r.status().ToString();
  }
  ClientRequest big = Get(server.Url("/length"));
  big.max_response_bytes = 4 << 20;
  Result<ClientResponse> r = Fetch(*client, big);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->body.size(), 2u << 20);
}

// Beast 1.81 bounds neither a chunk-size line's extensions nor a trailer: a receiver streaming
// one without a CRLF was buffered until the deadline (memory: bandwidth × timeout per
// attempt). It is refused once it passes the bound.
TEST_F(HttpClientTest, AnEndlessChunkExtensionOrTrailerIsResourceExhaustedBeforeTheDeadline) {
  const std::string filler(2 << 20, 'a');
  ScriptServer server([&filler](const SeenRequest& req) {
    std::string head = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
    head += req.target == "/ext" ? "1;" : "1\r\na\r\n0\r\nX-Trailer: ";
    return Reply::Raw(head + filler, Reply::After::kHang);
  });
  auto client = NewClient();
  for (std::string path : {"/ext", "/trailer"}) {
    const auto start = Clock::now();
    Result<ClientResponse> r = Fetch(*client, Get(server.Url(path), milliseconds(60000)));
    ASSERT_FALSE(r.ok()) << path;
    EXPECT_EQ(r.status().code(), StatusCode::kResourceExhausted)
        << path << ": " << r.status().ToString();
    EXPECT_LT(Clock::now() - start, milliseconds(30000)) << path << ": not the deadline";
  }
}

TEST_F(HttpClientTest, DiscardOversizedBodyKeepsTheStatusAndDropsTheBody) {
  ScriptServer server([](const SeenRequest& req) {
    Reply r = Reply::Ok(std::string(2 << 20, 'z'));
    if (req.target.starts_with("/busy")) r.status = 503;
    r.headers = {{"Retry-After", "7"}};
    r.chunked = req.target.ends_with("/chunked");
    r.chunk_size = 64 << 10;
    return r;
  });
  auto client = NewClient();
  for (std::string path : {"/length", "/chunked", "/busy", "/busy/chunked"}) {
    ClientRequest req = Get(server.Url(path));
    req.max_response_bytes = 64 << 10;
    req.discard_oversized_body = true;
    Result<ClientResponse> r = Fetch(*client, req);
    ASSERT_TRUE(r.ok()) << path << ": " << r.status().ToString();
    EXPECT_EQ(r->status, path.starts_with("/busy") ? 503 : 200) << path;
    EXPECT_EQ(r->Header("retry-after"), "7") << path;
    EXPECT_TRUE(r->body_truncated) << path;
    EXPECT_LE(r->body.size(), 64u << 10) << path;
  }
  // A body within the bound is returned whole and not marked.
  ClientRequest small = Get(server.Url("/length"));
  small.max_response_bytes = 4 << 20;
  small.discard_oversized_body = true;
  Result<ClientResponse> r = Fetch(*client, small);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->body.size(), 2u << 20);
  EXPECT_FALSE(r->body_truncated);
}

TEST_F(HttpClientTest, GarbageResponseIsInternalError) {
  ScriptServer server([](const SeenRequest&) {
    return Reply::Raw("SSH-2.0-OpenSSH_9.2p1 Debian-2\r\nnot http at all\r\n\r\n");
  });
  auto client = NewClient();
  Result<ClientResponse> r = Fetch(*client, Get(server.Url()));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInternal) << r.status().ToString();
}

TEST_F(HttpClientTest, ResponseCutShortIsUnavailable) {
  ScriptServer server([](const SeenRequest&) {
    return Reply::Raw("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc");
  });
  auto client = NewClient();
  Result<ClientResponse> r = Fetch(*client, Get(server.Url()));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kUnavailable) << r.status().ToString();
}

TEST_F(HttpClientTest, InvalidRequestsAreInvalidArgumentOnAClientThread) {
  auto client = NewClient();
  std::vector<ClientRequest> bad;
  for (const char* url : {"", "not a url", "ftp://example.com/", "http://", "http:///path",
                          "http://user:pw@127.0.0.1/", "http://127.0.0.1:0/",
                          "http://127.0.0.1:99999/", "mailto:a@example.com"}) {
    bad.push_back(Get(url));
  }
  ClientRequest injected = Get("http://127.0.0.1:1/");
  injected.headers = {{"X-Evil", "a\r\nInjected: yes"}};
  bad.push_back(injected);
  ClientRequest bad_name = Get("http://127.0.0.1:1/");
  bad_name.headers = {{"Bad Name", "v"}};
  bad.push_back(bad_name);
  // Each of these would let a value or name end a header line or smuggle bytes past it.
  for (std::string value : {std::string("a\nb"), std::string("a\rb"), std::string("a\0b", 3)}) {
    ClientRequest r = Get("http://127.0.0.1:1/");
    r.headers = {{"X-Value", value}};
    bad.push_back(r);
  }
  for (std::string name : {"", "X:Y", "X\tY", "X(Y)", "X\"Y", "X/Y", "X@Y", "X\xC3\xA9"}) {
    ClientRequest r = Get("http://127.0.0.1:1/");
    r.headers = {{name, "v"}};
    bad.push_back(r);
  }
  ClientRequest framing = Get("http://127.0.0.1:1/");
  framing.headers = {{"Content-Length", "5"}};
  bad.push_back(framing);
  ClientRequest method = Get("http://127.0.0.1:1/");
  method.method = "GET /x";
  bad.push_back(method);
  ClientRequest zero_timeout = Get("http://127.0.0.1:1/", milliseconds(0));
  bad.push_back(zero_timeout);

  Completions done;
  for (size_t i = 0; i < bad.size(); ++i) client->Send(bad[i], done.Callback(i));
  ASSERT_TRUE(done.WaitFor(bad.size()));
  for (size_t i = 0; i < bad.size(); ++i) {
    Result<ClientResponse> r = done.Get(i);
    ASSERT_FALSE(r.ok()) << i;
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument)
        << i << ": " << r.status().ToString();
  }
  EXPECT_EQ(done.on_caller_thread(), 0);
  EXPECT_EQ(done.duplicates(), 0);
}

// ------------------------------------------------------------------------------------------------
// TLS.
// ------------------------------------------------------------------------------------------------

class HttpClientTlsTest : public HttpClientTest {
 protected:
  void SetUp() override {
    cert_ = MakeSelfSignedCert("localhost", "DNS:localhost,IP:127.0.0.1");
    ca_file_ = dir_.File("ca.pem");
    dir_.Write("ca.pem", cert_.cert_pem);
  }
  ScriptServer::Options TlsOptions(const Cert& cert) {
    ScriptServer::Options o;
    o.tls = cert;
    return o;
  }
  static Reply Echo(const SeenRequest& req) { return Reply::Ok("tls:" + req.body); }

  testing::TempDir dir_;
  Cert cert_;
  std::string ca_file_;
};

TEST_F(HttpClientTlsTest, SelfSignedCertificateFailsVerificationWithDefaultTrustStore) {
  ScriptServer server(Echo, TlsOptions(cert_));
  auto client = NewClient();
  Result<ClientResponse> r = Fetch(*client, Get(server.Url()));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kUnavailable);
  EXPECT_NE(r.status().message().find("certificate verification"), std::string::npos)
      << r.status().message();
  EXPECT_EQ(server.request_count(), 0u);
}

TEST_F(HttpClientTlsTest, CaFileMakesTheCertificateTrustedAndConnectionsAreReused) {
  ScriptServer server(Echo, TlsOptions(cert_));
  HttpClientOptions options;
  options.ca_file = ca_file_;
  auto client = NewClient(options);
  for (int i = 0; i < 3; ++i) {
    ClientRequest req;
    req.url = server.Url("/secure");
    req.body = "body " + std::to_string(i);
    Result<ClientResponse> r = Fetch(*client, req);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ(r->body, "tls:" + req.body);
  }
  EXPECT_EQ(server.accepted(), 1);
  auto seen = server.requests();
  ASSERT_EQ(seen.size(), 3u);
  EXPECT_EQ(seen[0].sni, "");  // no SNI for an IP address (RFC 6066)
}

TEST_F(HttpClientTlsTest, HostNameIsSentAsSniAndVerified) {
  ScriptServer server(Echo, TlsOptions(cert_));
  HttpClientOptions options;
  options.ca_file = ca_file_;
  auto client = NewClient(options);
  Result<ClientResponse> r =
      Fetch(*client, Get("https://localhost:" + std::to_string(server.port()) + "/"));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  auto seen = server.requests();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].sni, "localhost");
  EXPECT_EQ(seen[0].Header("host"), "localhost:" + std::to_string(server.port()));
}

TEST_F(HttpClientTlsTest, TrustedCertificateForAnotherHostFailsVerification) {
  Cert other = MakeSelfSignedCert("other.example", "DNS:other.example");
  dir_.Write("other.pem", other.cert_pem);
  ScriptServer server(Echo, TlsOptions(other));
  HttpClientOptions options;
  options.ca_file = dir_.File("other.pem");
  auto client = NewClient(options);
  Result<ClientResponse> r = Fetch(*client, Get(server.Url()));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kUnavailable);
  EXPECT_NE(r.status().message().find("certificate verification"), std::string::npos)
      << r.status().message();
}

TEST_F(HttpClientTlsTest, VerifyTlsFalseAcceptsAnyCertificate) {
  ScriptServer server(Echo, TlsOptions(cert_));
  HttpClientOptions options;
  options.verify_tls = false;
  auto client = NewClient(options);
  ClientRequest req;
  req.url = server.Url();
  req.body = "insecure";
  Result<ClientResponse> r = Fetch(*client, req);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->body, "tls:insecure");
}

TEST_F(HttpClientTlsTest, UnreadableCaFileFailsHttpsRequestsAsUnavailable) {
  ScriptServer server(Echo, TlsOptions(cert_));
  HttpClientOptions options;
  options.ca_file = dir_.File("missing.pem");
  auto client = NewClient(options);
  Result<ClientResponse> r = Fetch(*client, Get(server.Url()));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kUnavailable);
  EXPECT_NE(r.status().message().find("ca_file"), std::string::npos) << r.status().message();
}

// ------------------------------------------------------------------------------------------------
// Forward proxies (HTTP_PROXY, HTTPS_PROXY, NO_PROXY).
// ------------------------------------------------------------------------------------------------

// A TCP port on 127.0.0.1, bound but not listening: connects to it are refused, and while this
// lives no other socket can take the port.
struct BoundPort {
  BoundPort() {
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
      throw std::runtime_error("cannot bind a port");
    }
    port = ntohs(addr.sin_port);
  }
  ~BoundPort() { ::close(fd); }
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  uint16_t port = 0;
};

ProxySettings ProxiesFrom(std::map<std::string, std::string> env) {
  auto s = ProxySettingsFromEnvironment([&env](const char* name) -> const char* {
    auto it = env.find(name);
    return it == env.end() ? nullptr : it->second.c_str();
  });
  EXPECT_TRUE(s.ok()) << s.status().ToString();
  return s.ok() ? *s : ProxySettings{};
}

TEST_F(HttpClientTlsTest, HttpsGoesThroughAConnectTunnelWithTlsVerifiedEndToEnd) {
  testing::FakeProxy proxy;
  ScriptServer server(Echo, TlsOptions(cert_));
  HttpClientOptions options;
  options.ca_file = ca_file_;
  options.proxies = ProxiesFrom({{"HTTPS_PROXY", proxy.url("jane:s3cret")}});
  auto client = NewClient(options);
  const std::string authority = "localhost:" + std::to_string(server.port());
  for (int i = 0; i < 2; ++i) {
    ClientRequest req;
    req.url = "https://" + authority + "/secure";
    req.body = "through the tunnel " + std::to_string(i);
    Result<ClientResponse> r = Fetch(*client, req);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ(r->body, "tls:" + req.body);
  }
  auto seen = proxy.seen();
  ASSERT_EQ(seen.size(), 1u);  // one tunnel, kept alive for the second request
  EXPECT_EQ(seen[0].method, "CONNECT");
  EXPECT_EQ(seen[0].target, authority);
  EXPECT_EQ(seen[0].host, authority);
  EXPECT_EQ(seen[0].proxy_authorization, "Basic amFuZTpzM2NyZXQ=");  // jane:s3cret
  EXPECT_EQ(server.accepted(), 1);
  auto at_server = server.requests();
  ASSERT_EQ(at_server.size(), 2u);
  EXPECT_EQ(at_server[0].sni, "localhost");                   // TLS with the target, not the proxy
  EXPECT_EQ(at_server[0].Header("proxy-authorization"), "");  // never inside the tunnel
}

TEST_F(HttpClientTlsTest, ATunnelledCertificateIsStillVerifiedAgainstTheTargetName) {
  testing::FakeProxy proxy;
  ScriptServer server(Echo, TlsOptions(cert_));
  HttpClientOptions options;  // the system store: nothing vouches for the test certificate
  options.proxies = ProxiesFrom({{"HTTPS_PROXY", proxy.url()}});
  auto client = NewClient(options);
  Result<ClientResponse> r =
      Fetch(*client, Get("https://localhost:" + std::to_string(server.port()) + "/"));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("certificate verification"), std::string::npos)
      << r.status().message();
  EXPECT_EQ(server.request_count(), 0u);
  EXPECT_EQ(proxy.seen().size(), 1u);  // it did go through the tunnel
}

TEST_F(HttpClientTest, PlainHttpGoesToTheProxyInAbsoluteFormWithItsCredentials) {
  testing::FakeProxy proxy;
  testing::BlockingLookup lookup;  // counts name lookups
  HttpClientOptions options;
  options.lookup = lookup.Fn();
  options.proxies = ProxiesFrom({{"http_proxy", proxy.url("ops:pw")}});
  auto client = NewClient(options);
  ClientRequest req;
  req.url = "http://receiver.example:8080/hooks/x?y=1";
  req.body = "{\"event\":1}";
  req.headers = {{"Content-Type", "application/json"}};
  Result<ClientResponse> r = Fetch(*client, req);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->body, "via proxy");
  auto seen = proxy.seen();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].method, "POST");
  EXPECT_EQ(seen[0].target, "http://receiver.example:8080/hooks/x?y=1");
  EXPECT_EQ(seen[0].host, "receiver.example:8080");
  EXPECT_EQ(seen[0].proxy_authorization, "Basic b3BzOnB3");  // ops:pw
  EXPECT_EQ(seen[0].body, "{\"event\":1}");
  EXPECT_EQ(lookup.Count("receiver.example"), 0);  // the proxy resolves it, not switchyard
}

TEST_F(HttpClientTest, NoProxyHostsAreReachedDirectly) {
  testing::FakeProxy proxy;
  ScriptServer server([](const SeenRequest&) { return Reply::Ok("direct"); });
  HttpClientOptions options;
  options.proxies = ProxiesFrom({{"HTTP_PROXY", proxy.url()}, {"NO_PROXY", "127.0.0.0/8"}});
  auto client = NewClient(options);
  Result<ClientResponse> r = Fetch(*client, Get(server.Url("/x")));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->body, "direct");
  EXPECT_EQ(proxy.connections(), 0u);
}

TEST_F(HttpClientTlsTest, AProxyRefusingTheTunnelIsUnavailableNamingTheProxyNotTheCredentials) {
  testing::FakeProxy proxy;
  proxy.SetRefusal(407);
  ScriptServer server(Echo, TlsOptions(cert_));
  HttpClientOptions options;
  options.ca_file = ca_file_;
  options.proxies = ProxiesFrom({{"HTTPS_PROXY", proxy.url("jane:s3cret")}});
  auto client = NewClient(options);
  Result<ClientResponse> r = Fetch(*client, Get(server.Url()));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kUnavailable);
  const std::string& m = r.status().message();
  EXPECT_NE(m.find("HTTP 407"), std::string::npos) << m;
  EXPECT_NE(m.find("proxy http://127.0.0.1:" + std::to_string(proxy.port())), std::string::npos)
      << m;
  EXPECT_EQ(m.find("s3cret"), std::string::npos) << m;
  EXPECT_EQ(m.find("jane"), std::string::npos) << m;
  EXPECT_EQ(server.request_count(), 0u);
}

TEST_F(HttpClientTlsTest, AProxyThatNeverAnswersTheConnectIsDeadlineExceeded) {
  testing::FakeProxy proxy;
  proxy.SetSilent(true);
  ScriptServer server(Echo, TlsOptions(cert_));
  HttpClientOptions options;
  options.ca_file = ca_file_;
  options.proxies = ProxiesFrom({{"HTTPS_PROXY", proxy.url()}});
  auto client = NewClient(options);
  Result<ClientResponse> r = Fetch(*client, Get(server.Url(), milliseconds(300)));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kDeadlineExceeded) << r.status().ToString();
  EXPECT_NE(r.status().message().find("proxy"), std::string::npos) << r.status().message();
}

TEST_F(HttpClientTest, AForwardedRequestTheProxyRefusesWith407IsUnavailableNotTheSinksAnswer) {
  testing::FakeProxy proxy;
  proxy.SetRefusal(407);
  HttpClientOptions options;
  options.proxies = ProxiesFrom({{"HTTP_PROXY", proxy.url("jane:s3cret")}});
  auto client = NewClient(options);
  Result<ClientResponse> r = Fetch(*client, Get("http://receiver.example/hook"));
  ASSERT_FALSE(r.ok());  // a connection error (retried), not a permanent 4xx of the receiver
  EXPECT_EQ(r.status().code(), StatusCode::kUnavailable);
  EXPECT_NE(r.status().message().find("HTTP 407"), std::string::npos) << r.status().message();
  EXPECT_NE(r.status().message().find(proxy.url()), std::string::npos) << r.status().message();
  EXPECT_EQ(r.status().message().find("s3cret"), std::string::npos) << r.status().message();
}

TEST_F(HttpClientTest, AProxyThatIsDownIsUnavailableNamingIt) {
  // A port bound but not listening: connects are refused, and no one else can take it.
  BoundPort refusing;
  const uint16_t closed_port = refusing.port;
  HttpClientOptions options;
  options.proxies =
      ProxiesFrom({{"HTTP_PROXY", "http://127.0.0.1:" + std::to_string(closed_port)}});
  auto client = NewClient(options);
  Result<ClientResponse> r = Fetch(*client, Get("http://receiver.example/hook"));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kUnavailable);
  EXPECT_NE(r.status().message().find("proxy http://127.0.0.1:" + std::to_string(closed_port)),
            std::string::npos)
      << r.status().message();
}

// ------------------------------------------------------------------------------------------------
// Concurrency and lifecycle.
// ------------------------------------------------------------------------------------------------

TEST_F(HttpClientTest, TwoHundredConcurrentRequestsAllComplete) {
  constexpr int kRequests = 200;
  Gate gate(kRequests);  // no response until all 200 are in flight at once
  ScriptServer server([&](const SeenRequest& req) {
    gate.ArriveAndWait();
    return Reply::Ok("r:" + req.body);
  });
  HttpClientOptions options;
  options.threads = 2;
  options.max_idle_per_host = 256;
  auto client = NewClient(options);
  Completions done;
  std::vector<std::thread> senders;
  for (int t = 0; t < 4; ++t) {  // from several threads at once
    senders.emplace_back([&, t] {
      for (int i = t; i < kRequests; i += 4) {
        ClientRequest req;
        req.url = server.Url("/c");
        req.body = std::to_string(i);
        req.timeout = seconds(60);
        client->Send(std::move(req), done.Callback(i));
      }
    });
  }
  for (auto& s : senders) s.join();
  ASSERT_TRUE(server.WaitForRequests(kRequests, seconds(60)));
  ASSERT_TRUE(done.WaitFor(kRequests, seconds(60)));
  for (int i = 0; i < kRequests; ++i) {
    Result<ClientResponse> r = done.Get(i);
    ASSERT_TRUE(r.ok()) << i << ": " << r.status().ToString();
    EXPECT_EQ(r->body, "r:" + std::to_string(i));
  }
  EXPECT_EQ(server.accepted(), kRequests);
  EXPECT_EQ(done.duplicates(), 0);
  EXPECT_EQ(done.on_caller_thread(), 0);
}

TEST_F(HttpClientTest, ShutdownCompletesPendingRequestsWithUnavailable) {
  ScriptServer server([](const SeenRequest&) { return Reply::Hang(); });
  HttpClientOptions options;
  options.threads = 2;
  auto client = NewClient(options);
  Completions done;
  constexpr int kPending = 3;
  for (int i = 0; i < kPending; ++i) {
    client->Send(Get(server.Url(), seconds(60)), done.Callback(i));
  }
  ASSERT_TRUE(server.WaitForRequests(kPending));
  const auto start = Clock::now();
  client->Shutdown();
  EXPECT_LT(Clock::now() - start, seconds(10));          // not the 60 s request timeout
  ASSERT_TRUE(done.WaitFor(kPending, milliseconds(0)));  // all done when Shutdown returns
  for (int i = 0; i < kPending; ++i) {
    Result<ClientResponse> r = done.Get(i);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), StatusCode::kUnavailable);
    EXPECT_EQ(r.status().message(), "client shutting down");
  }
  EXPECT_EQ(done.duplicates(), 0);
  client->Shutdown();  // idempotent
}

TEST_F(HttpClientTest, SendAfterShutdownFailsImmediatelyWithUnavailable) {
  auto client = NewClient();
  client->Shutdown();
  Result<ClientResponse> r = Fetch(*client, Get("http://127.0.0.1:1/"));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kUnavailable);
}

TEST_F(HttpClientTest, DestroyingTheClientWithIdleConnectionsAndPendingRequestsIsClean) {
  ScriptServer idle_server([](const SeenRequest&) { return Reply::Ok("x"); });
  ScriptServer hanging_server([](const SeenRequest&) { return Reply::Hang(); });
  Completions done;
  {
    HttpClientOptions options;
    options.threads = 3;
    auto client = NewClient(options);
    ASSERT_TRUE(Fetch(*client, Get(idle_server.Url())).ok());  // leaves a pooled connection
    client->Send(Get(hanging_server.Url(), seconds(60)), done.Callback(0));
    ASSERT_TRUE(hanging_server.WaitForRequests(1));
  }
  ASSERT_TRUE(done.WaitFor(1, milliseconds(0)));
  EXPECT_EQ(done.Get(0).status().code(), StatusCode::kUnavailable);
  EXPECT_TRUE(idle_server.WaitForClosed(1));
  EXPECT_TRUE(hanging_server.WaitForClosed(1));
}

TEST_F(HttpClientTest, KeepAliveThroughputOverLoopback) {
  ScriptServer server([](const SeenRequest&) { return Reply::Ok("{\"ok\":true}"); });
  auto client = NewClient();
  constexpr int kSequential = 2000;
  ClientRequest req;
  req.url = server.Url("/bench");
  req.body = std::string(512, 'b');
  req.headers = {{"Content-Type", "application/json"}};
  const auto start = Clock::now();
  for (int i = 0; i < kSequential; ++i) ASSERT_TRUE(Fetch(*client, req).ok());
  const double secs = std::chrono::duration<double>(Clock::now() - start).count();
  EXPECT_EQ(server.accepted(), 1);
  const double rate = kSequential / secs;
  RecordProperty("sequential_requests_per_second", static_cast<int>(rate));
  printf("[ metric   ] keep-alive sequential: %d requests in %.3f s = %.0f req/s\n", kSequential,
         secs, rate);
}

}  // namespace
}  // namespace switchyard::httpclient
