#include "fakes/evil_receiver.h"

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <sys/socket.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <optional>
#include <stdexcept>
#include <thread>

namespace switchyard::testing {
namespace {

namespace net = boost::asio;
namespace ssl = boost::asio::ssl;
namespace bhttp = boost::beast::http;
using tcp = net::ip::tcp;

struct KeyAndCert {
  std::string cert_pem;
  std::string key_pem;
};

// A self-signed P-256 certificate for 127.0.0.1, valid now. Nothing in the system trust store
// vouches for it, so a verifying client must refuse it.
KeyAndCert MakeSelfSignedCert() {
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
                             reinterpret_cast<const unsigned char*>("127.0.0.1"), -1, -1, 0);
  X509_set_issuer_name(x, name);
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, x, x, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, NID_subject_alt_name, "IP:127.0.0.1");
  if (!ext) fail("extension");
  X509_add_ext(x, ext, -1);
  X509_EXTENSION_free(ext);
  if (!X509_sign(x, key.get(), EVP_sha256())) fail("sign");
  auto to_pem = [&](auto write) {
    std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new(BIO_s_mem()), BIO_free);
    if (!write(bio.get())) fail("PEM");
    char* data = nullptr;
    long len = BIO_get_mem_data(bio.get(), &data);
    return std::string(data, static_cast<size_t>(len));
  };
  KeyAndCert out;
  out.cert_pem = to_pem([&](BIO* b) { return PEM_write_bio_X509(b, x); });
  out.key_pem = to_pem([&](BIO* b) {
    return PEM_write_bio_PrivateKey(b, key.get(), nullptr, nullptr, 0, nullptr, nullptr);
  });
  return out;
}

std::string Reason(int status) {
  return std::string(bhttp::obsolete_reason(static_cast<bhttp::status>(status)));
}

}  // namespace

struct EvilReceiver::Impl {
  struct Slot {
    int fd = -1;
    bool closed = false;  // GUARDED_BY(mu): set before the fd is closed
  };

  net::io_context ioc;  // only for constructing blocking sockets; never run
  tcp::acceptor acceptor{ioc};
  std::optional<ssl::context> tls_ctx;
  std::thread accept_thread;
  std::vector<std::thread> threads;  // the accept thread's, then Stop()'s

  mutable std::mutex mu;
  mutable std::condition_variable cv;
  Behavior behavior;                          // GUARDED_BY(mu)
  bool stopping = false;                      // GUARDED_BY(mu)
  std::vector<std::shared_ptr<Slot>> slots;   // GUARDED_BY(mu)
  size_t connections = 0;                     // GUARDED_BY(mu)
  size_t open = 0;                            // GUARDED_BY(mu)
  size_t requests = 0;                        // GUARDED_BY(mu)
  size_t handshake_failures = 0;              // GUARDED_BY(mu)
  uint64_t body_bytes_sent = 0;               // GUARDED_BY(mu)
  std::vector<std::string> idempotency_keys;  // GUARDED_BY(mu)

  bool Stopping() const {
    std::lock_guard lock(mu);
    return stopping;
  }

  void AcceptLoop() {
    for (;;) {
      tcp::socket socket(ioc);
      boost::system::error_code ec;
      acceptor.accept(socket, ec);
      auto slot = std::make_shared<Slot>();
      {
        std::lock_guard lock(mu);
        if (stopping) return;
        if (ec) continue;
        ++connections;
        ++open;
        slot->fd = socket.native_handle();
        slots.push_back(slot);
      }
      cv.notify_all();
      threads.emplace_back([this, s = std::move(socket), slot]() mutable { Serve(s, *slot); });
    }
  }

  void Serve(tcp::socket& socket, Slot& slot) {
    bool reset = false;
    if (tls_ctx) {
      ssl::stream<tcp::socket&> stream(socket, *tls_ctx);
      boost::system::error_code ec;
      stream.handshake(ssl::stream_base::server, ec);
      if (ec) {
        std::lock_guard lock(mu);
        ++handshake_failures;
      } else {
        reset = ServeRequests(stream, socket);
      }
    } else {
      reset = ServeRequests(socket, socket);
    }
    {
      std::lock_guard lock(mu);
      slot.closed = true;
      boost::system::error_code ec;
      if (reset) {
        socket.set_option(net::socket_base::linger(true, 0), ec);  // close(2) sends RST
      } else {
        socket.shutdown(tcp::socket::shutdown_both, ec);
      }
      socket.close(ec);
      --open;
    }
    cv.notify_all();
  }

  // Waits `delay`; false (early) if the peer closes the connection meanwhile or Stop() is called.
  bool WaitUnlessClosed(tcp::socket& socket, std::chrono::milliseconds delay) {
    const auto deadline = std::chrono::steady_clock::now() + delay;
    while (!Stopping()) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return true;
      pollfd p{socket.native_handle(), POLLIN, 0};
      if (poll(&p, 1, static_cast<int>(std::min<int64_t>(left.count(), 50))) > 0) {
        char c;
        if (recv(socket.native_handle(), &c, 1, MSG_PEEK | MSG_DONTWAIT) <= 0) return false;
        std::this_thread::sleep_for(std::chrono::milliseconds(5));  // pipelined bytes: not ours
      }
    }
    return false;
  }

  // Blocks until the peer closes (or Stop()).
  static void DrainUntilClosed(tcp::socket& socket) {
    char scratch[4096];
    boost::system::error_code ec;
    while (!ec) socket.read_some(net::buffer(scratch), ec);
  }

  // Serves requests on one connection; returns true if it should end with a reset.
  template <class Stream>
  bool ServeRequests(Stream& stream, tcp::socket& socket) {
    boost::beast::flat_buffer buffer;
    for (;;) {
      bhttp::request_parser<bhttp::string_body> parser;
      parser.body_limit(64u << 20);
      boost::system::error_code ec;
      bhttp::read(stream, buffer, parser, ec);
      if (ec) return false;
      Behavior b;
      {
        std::lock_guard lock(mu);
        ++requests;
        idempotency_keys.emplace_back(parser.get()["Idempotency-Key"]);
        b = behavior;
      }
      cv.notify_all();
      auto write = [&](const std::string& bytes) {
        net::write(stream, net::buffer(bytes), ec);
        return !ec;
      };
      const std::string status_line =
          "HTTP/1.1 " + std::to_string(b.status) + " " + Reason(b.status) + "\r\n";
      switch (b.kind) {
        case Misbehavior::kOk:
          if (!write("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")) return false;
          break;
        case Misbehavior::kSlow:
          if (!WaitUnlessClosed(socket, b.delay)) return false;
          if (!write(status_line + "Content-Length: 2\r\n\r\nok")) return false;
          break;
        case Misbehavior::kHangAfterHeaders:
          write(status_line + "Content-Length: 1000\r\n\r\n");
          DrainUntilClosed(socket);
          return false;
        case Misbehavior::kNeverAnswer:
          DrainUntilClosed(socket);
          return false;
        case Misbehavior::kReset:
          return true;
        case Misbehavior::kGarbage: {
          static constexpr char kGarbage[] = "\x16\x03\x01 this is not HTTP \xff\xfe\r\n\r\n";
          write(std::string(kGarbage, sizeof kGarbage - 1));
          return false;
        }
        case Misbehavior::kRedirect:
          if (!write(status_line + "Location: " + b.location + "\r\nContent-Length: 0\r\n\r\n")) {
            return false;
          }
          break;
        case Misbehavior::kHugeBody:
          WriteHugeBody(stream, status_line, b);
          return false;  // the body may have been cut short: this connection is done
        case Misbehavior::kHugeHead: {
          std::string head = status_line;
          for (int i = 0; i < 1024; ++i) {
            head += "X-Filler-" + std::to_string(i) + ": " + std::string(1000, 'f') + "\r\n";
          }
          if (!write(head + "Content-Length: 0\r\n\r\n")) return false;
          break;
        }
      }
      if (!parser.get().keep_alive()) return false;
    }
  }

  // Streams `b.body_bytes` of body until done, the peer hangs up, or Stop().
  template <class Stream>
  void WriteHugeBody(Stream& stream, const std::string& status_line, const Behavior& b) {
    std::string head = status_line;
    head += b.chunked ? "Transfer-Encoding: chunked\r\n\r\n"
                      : "Content-Length: " + std::to_string(b.body_bytes) + "\r\n\r\n";
    boost::system::error_code ec;
    net::write(stream, net::buffer(head), ec);
    if (ec) return;
    const std::string block(64 * 1024, 'z');
    char size_line[32];
    snprintf(size_line, sizeof size_line, "%zx\r\n", block.size());
    const std::string chunk = std::string(size_line) + block + "\r\n";
    uint64_t sent = 0;
    while (sent < b.body_bytes && !Stopping()) {
      const uint64_t n = std::min<uint64_t>(block.size(), b.body_bytes - sent);
      if (b.chunked && n == block.size()) {
        net::write(stream, net::buffer(chunk), ec);
      } else if (b.chunked) {
        snprintf(size_line, sizeof size_line, "%zx\r\n", static_cast<size_t>(n));
        net::write(stream, net::buffer(size_line + block.substr(0, n) + "\r\n"), ec);
      } else {
        net::write(stream, net::buffer(block.data(), n), ec);
      }
      if (ec) return;
      sent += n;
      std::lock_guard lock(mu);
      body_bytes_sent += n;
    }
    if (b.chunked) net::write(stream, net::buffer(std::string("0\r\n\r\n")), ec);
  }
};

EvilReceiver::EvilReceiver(Behavior behavior, bool tls)
    : impl_(std::make_unique<Impl>()), tls_(tls) {
  impl_->behavior = std::move(behavior);
  if (tls) {
    KeyAndCert kc = MakeSelfSignedCert();
    impl_->tls_ctx.emplace(ssl::context::tls_server);
    boost::system::error_code ec;
    impl_->tls_ctx->use_certificate_chain(net::buffer(kc.cert_pem), ec);
    if (!ec) impl_->tls_ctx->use_private_key(net::buffer(kc.key_pem), ssl::context::pem, ec);
    if (ec) throw std::runtime_error("evil receiver TLS setup: " + ec.message());
  }
  const tcp::endpoint ep(net::ip::make_address_v4("127.0.0.1"), 0);
  impl_->acceptor.open(ep.protocol());
  impl_->acceptor.bind(ep);
  impl_->acceptor.listen(net::socket_base::max_listen_connections);
  port_ = impl_->acceptor.local_endpoint().port();
  impl_->accept_thread = std::thread([this] { impl_->AcceptLoop(); });
}

EvilReceiver::~EvilReceiver() { Stop(); }

std::string EvilReceiver::url(const std::string& path) const {
  return std::string(tls_ ? "https" : "http") + "://127.0.0.1:" + std::to_string(port_) + path;
}

void EvilReceiver::Set(Behavior behavior) {
  std::lock_guard lock(impl_->mu);
  impl_->behavior = std::move(behavior);
}

size_t EvilReceiver::connections() const {
  std::lock_guard lock(impl_->mu);
  return impl_->connections;
}

size_t EvilReceiver::requests() const {
  std::lock_guard lock(impl_->mu);
  return impl_->requests;
}

size_t EvilReceiver::handshake_failures() const {
  std::lock_guard lock(impl_->mu);
  return impl_->handshake_failures;
}

uint64_t EvilReceiver::body_bytes_sent() const {
  std::lock_guard lock(impl_->mu);
  return impl_->body_bytes_sent;
}

size_t EvilReceiver::open_connections() const {
  std::lock_guard lock(impl_->mu);
  return impl_->open;
}

std::vector<std::string> EvilReceiver::idempotency_keys() const {
  std::lock_guard lock(impl_->mu);
  return impl_->idempotency_keys;
}

bool EvilReceiver::WaitForRequests(size_t n, std::chrono::milliseconds timeout) const {
  std::unique_lock lock(impl_->mu);
  return impl_->cv.wait_for(lock, timeout, [&] { return impl_->requests >= n; });
}

bool EvilReceiver::WaitForHandshakeFailures(size_t n, std::chrono::milliseconds timeout) const {
  std::unique_lock lock(impl_->mu);
  return impl_->cv.wait_for(lock, timeout, [&] { return impl_->handshake_failures >= n; });
}

bool EvilReceiver::WaitForNoOpenConnections(std::chrono::milliseconds timeout) const {
  std::unique_lock lock(impl_->mu);
  return impl_->cv.wait_for(lock, timeout, [&] { return impl_->open == 0; });
}

void EvilReceiver::Stop() {
  {
    std::lock_guard lock(impl_->mu);
    if (impl_->stopping) return;
    impl_->stopping = true;
    for (auto& slot : impl_->slots) {
      if (!slot->closed) ::shutdown(slot->fd, SHUT_RDWR);
    }
  }
  impl_->cv.notify_all();
  {  // wake the blocking accept
    boost::system::error_code ec;
    tcp::socket waker(impl_->ioc);
    waker.connect(tcp::endpoint(net::ip::make_address_v4("127.0.0.1"), port_), ec);
  }
  impl_->accept_thread.join();
  for (auto& t : impl_->threads) t.join();
}

}  // namespace switchyard::testing
