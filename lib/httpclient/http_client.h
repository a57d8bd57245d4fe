// HttpClient: the one outbound HTTP/1.1 client (sinks, Sentry API). Asynchronous, with a deadline
// on every request, keep-alive connection pools per (scheme, host, port), and TLS (SNI, chain and
// hostname verification against the system CA store, on by default). Beast/Asio/OpenSSL stay in
// the .cc. Thread-safe: Send() may be called from any thread.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/clock.h"
#include "common/status.h"
#include "httpclient/proxy.h"

namespace switchyard::httpclient {

struct ClientRequest {
  std::string method = "POST";
  std::string url;  // absolute http:// or https:// URL
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  // Deadline for the whole exchange: connect, TLS handshake, write, and reading the response.
  std::chrono::milliseconds timeout{5000};
  // Responses with a larger body fail with kResourceExhausted (the connection is dropped),
  // unless discard_oversized_body is set.
  size_t max_response_bytes = 1 << 20;
  // For callers that need only the status and headers (e.g. a webhook receiver answering 200
  // with a huge page): a body over max_response_bytes is not an error; the response keeps its
  // status and headers, its body is dropped (body_truncated) and the rest is never read (the
  // connection is closed). Memory stays bounded by max_response_bytes either way.
  bool discard_oversized_body = false;
};

struct ClientResponse {
  int status = 0;
  std::vector<std::pair<std::string, std::string>> headers;  // lower-case names
  std::string body;
  bool body_truncated = false;  // body over max_response_bytes, dropped (discard_oversized_body)
  // First value of a header (lower-case name); empty if absent.
  std::string_view Header(std::string_view lower_name) const;
};

// Completion: a response (any status code), or an error Status:
//   kInvalidArgument    bad URL or request;
//   kDeadlineExceeded   the timeout passed (connect, TLS, write or read);
//   kUnavailable        DNS failure, connection refused/reset, TLS failure, peer closed early;
//   kResourceExhausted  response body over max_response_bytes (unless discard_oversized_body),
//                       or response head over the client's header limit;
//   kInternal           malformed response (protocol error).
// Called exactly once, on a client thread; must not block.
using ClientCallback = std::function<void(Result<ClientResponse>)>;

class HttpClient {
 public:
  virtual ~HttpClient() = default;
  virtual void Send(ClientRequest request, ClientCallback done) = 0;
  // Stops: pending requests complete with kUnavailable; joins the client threads. Idempotent.
  virtual void Shutdown() = 0;
};

struct HttpClientOptions {
  int threads = 1;
  bool verify_tls = true;         // verify peer chain and hostname
  std::string ca_file;            // extra/alternative CA bundle (PEM); empty = system store
  size_t max_idle_per_host = 16;  // idle keep-alive connections kept per host
  std::chrono::milliseconds idle_timeout{30000};  // idle pooled connections are closed after
  // A pooled connection idle for less than this is reused without first asking the kernel
  // whether the server closed it (a recv(MSG_PEEK) per request: under load, one of the three
  // syscalls a delivery makes). Should the server have closed it all the same, the request
  // fails before any response byte and is sent again on a new connection (once). A server that
  // read the request, worked on it and then closed without a byte of answer gets it twice:
  // at-least-once, as every retry (http sinks send an Idempotency-Key). 0 checks every time.
  std::chrono::milliseconds reuse_without_check{1000};
  // Name lookups run on threads of their own, one per host at a time and at most dns_threads
  // at once, so a host whose DNS hangs delays only its own requests; answers are kept for
  // dns_cache_ttl (see host_resolver.h). `lookup` is the blocking lookup (empty: getaddrinfo)
  // and `clock` the cache's time (nullptr: the system clock); both are test seams.
  int dns_threads = 8;
  std::chrono::milliseconds dns_cache_ttl{30000};
  std::function<Result<std::vector<std::string>>(const std::string& host)> lookup;
  const Clock* clock = nullptr;
  // Forward proxies (the daemon reads them from HTTP_PROXY, HTTPS_PROXY and NO_PROXY). A request
  // to an http:// URL goes to its proxy in absolute form; one to an https:// URL through a
  // CONNECT tunnel, with TLS, SNI and verification end to end with the target. The deadline
  // covers the proxy's part too. Pooled connections stay per target origin.
  ProxySettings proxies;
};

std::unique_ptr<HttpClient> NewHttpClient(const HttpClientOptions& options);

// OK if Send accepts `url` (the same parser); otherwise kInvalidArgument with a message that
// starts "invalid URL: " and does not repeat the URL.
Status ValidateUrl(std::string_view url);

// True for an RFC 9110 token, what Send accepts as a method or header field name (the config
// loader checks sink header names with it).
bool IsHttpToken(std::string_view s);

}  // namespace switchyard::httpclient
