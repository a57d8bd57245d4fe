// Forward proxies for outbound requests, read from the environment as curl reads them:
// http_proxy / HTTP_PROXY for http:// URLs (the request goes to the proxy in absolute form),
// https_proxy / HTTPS_PROXY for https:// URLs (a CONNECT tunnel; TLS, SNI and verification stay
// end to end with the target), no_proxy / NO_PROXY for the hosts that go direct. The lower-case
// name wins when both are set. Internal to lib/httpclient and the daemon's start-up.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "httpclient/url.h"

namespace switchyard::httpclient {

struct Proxy {
  Target server;  // the proxy's own address (plain http); server.origin is safe to log
  // "Basic …" when the proxy URL carried user info, else empty. A secret: never logged.
  std::string authorization;
};

// One NO_PROXY entry: a domain (matches itself and its subdomains), or an address range (a
// CIDR range; an IP address is one of full length); `port` (0: any) limits it to one port.
struct NoProxyRule {
  std::string domain;                     // lower-case, no leading dot; empty for a range
  std::array<unsigned char, 16> bytes{};  // a range: its address (IPv4 in the first 4)
  bool v6 = false;
  unsigned prefix = 0;  // a range: how many leading bits must match
  uint16_t port = 0;
};

struct ProxySettings {
  std::optional<Proxy> http;   // for http:// targets
  std::optional<Proxy> https;  // for https:// targets
  bool no_proxy_all = false;   // NO_PROXY=*
  std::vector<NoProxyRule> no_proxy;

  // The proxy a request to `t` goes through, or nullptr to connect directly.
  const Proxy* For(const Target& t) const;
  bool empty() const { return !http && !https; }
  // For the start-up log: the proxies' origins and the NO_PROXY rule count, never credentials.
  std::string Describe() const;
};

// Reads the variables through `get` (getenv's contract: nullptr when unset). An unset or empty
// variable means no proxy. Errors are kInvalidArgument naming the variable, never repeating its
// value (it may hold a password): a URL that does not parse, a scheme other than http (TLS to
// the proxy and SOCKS are not supported), a path, or a NO_PROXY entry that is not a host, an
// address or a CIDR range.
Result<ProxySettings> ProxySettingsFromEnvironment(
    const std::function<const char*(const char*)>& get);

}  // namespace switchyard::httpclient
