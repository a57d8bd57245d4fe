#include "cli/admin_client.h"

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <optional>

#include "common/listen_address.h"

namespace switchyard::cli {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;

Result<AdminReply> CallAdmin(const std::string& address, const std::string& token,
                             const std::string& method, const std::string& target,
                             const std::string& body, std::chrono::milliseconds timeout) {
  std::vector<std::pair<std::string, std::string>> headers;
  if (!token.empty()) headers.emplace_back("Authorization", "Bearer " + token);
  if (!body.empty()) headers.emplace_back("Content-Type", "application/json");
  return CallHttp(address, method, target, headers, body, timeout);
}

Result<AdminReply> CallHttp(const std::string& address, const std::string& method,
                            const std::string& target,
                            const std::vector<std::pair<std::string, std::string>>& headers,
                            const std::string& body, std::chrono::milliseconds timeout) {
  std::string host = address, port;
  if (Result<ListenAddress> a = ParseListenAddress(address); a.ok()) {
    // A listen address as the daemon reads it (localhost, *, [V6]); a wildcard listener is
    // reached on loopback.
    host = a->ip;
    if (IsWildcard(*a)) host = host.find(':') == std::string::npos ? "127.0.0.1" : "::1";
    port = std::to_string(a->port);
  } else if (auto colon = address.rfind(':'); colon != std::string::npos) {
    // HOST:PORT with a host name (send-test --url), or [V6]:PORT the listener grammar refuses.
    host = address.substr(0, colon);
    port = address.substr(colon + 1);
    if (host.size() > 2 && host.front() == '[') host = host.substr(1, host.size() - 2);
  }
  net::io_context ioc;
  net::ip::tcp::resolver resolver(ioc);
  beast::tcp_stream stream(ioc);
  beast::error_code ec;
  auto results = resolver.resolve(host, port, ec);
  if (ec) return Unavailable("cannot resolve admin address " + address + ": " + ec.message());
  bhttp::request<bhttp::string_body> req{bhttp::string_to_verb(method), target, 11};
  req.set(bhttp::field::host, host);
  req.set(bhttp::field::user_agent, "switchyard-cli");
  for (const auto& [name, value] : headers) req.set(name, value);
  req.body() = body;
  req.prepare_payload();
  beast::flat_buffer buffer(1 << 20);  // bounds a chunk line or trailer, as the server does
  bhttp::response_parser<bhttp::string_body> parser;
  parser.body_limit(64 << 20);

  // Asynchronous, because tcp_stream's deadline applies only to asynchronous operations: the
  // blocking calls waited forever on a listener that accepts and never answers. One deadline
  // covers connect, write and read.
  std::optional<Result<AdminReply>> result;
  stream.expires_after(timeout);
  stream.async_connect(results, [&](beast::error_code ec, const net::ip::tcp::endpoint&) {
    if (ec) {
      result = Unavailable("cannot reach " + address + ": " + ec.message() +
                           " (is switchyard running with this config?)");
      return;
    }
    bhttp::async_write(stream, req, [&](beast::error_code ec, size_t) {
      if (ec) {
        result = Unavailable("sending to " + address + " failed: " + ec.message());
        return;
      }
      bhttp::async_read(stream, buffer, parser, [&](beast::error_code ec, size_t) {
        if (ec) {
          result = Unavailable("reading the answer from " + address + " failed: " + ec.message());
          return;
        }
        result = AdminReply{static_cast<int>(parser.get().result_int()), parser.get().body()};
      });
    });
  });
  ioc.run();
  if (!result) return Unavailable("no answer from " + address);
  return std::move(*result);
}

}  // namespace switchyard::cli
