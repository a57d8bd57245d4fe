#include "httpclient/proxy.h"

#include <algorithm>
#include <array>
#include <boost/asio/ip/address.hpp>
#include <boost/url/parse.hpp>
#include <boost/url/url.hpp>

#include "common/ascii.h"
#include "common/crypto.h"

namespace switchyard::httpclient {
namespace {

namespace ip = boost::asio::ip;

// The value of the lower-case variable, else of the upper-case one; empty when neither is set.
std::pair<std::string, std::string> Lookup(const std::function<const char*(const char*)>& get,
                                           const char* lower, const char* upper) {
  if (const char* v = get(lower); v != nullptr && *v != '\0') return {lower, v};
  if (const char* v = get(upper); v != nullptr && *v != '\0') return {upper, v};
  return {upper, ""};
}

Result<std::optional<Proxy>> ParseProxy(const std::string& name, std::string value) {
  if (value.empty()) return std::optional<Proxy>();
  if (value.find("://") == std::string::npos) value = "http://" + value;  // as curl: host:port
  auto parsed = boost::urls::parse_uri(value);
  if (!parsed) return InvalidArgument(name + ": invalid URL: " + parsed.error().message());
  boost::urls::url u(*parsed);
  if (u.scheme_id() != boost::urls::scheme::http) {
    return InvalidArgument(
        name +
        ": the proxy's scheme must be http:// (TLS to the proxy and SOCKS are "
        "not supported; https:// targets are tunnelled through it with CONNECT)");
  }
  if (!(u.encoded_path().empty() || u.encoded_path() == "/") || u.has_query() || u.has_fragment()) {
    return InvalidArgument(name + ": a proxy URL has no path, query or fragment");
  }
  Proxy p;
  if (u.has_userinfo()) {
    std::string credentials = u.user();
    credentials += ':';
    credentials += u.password();
    p.authorization = "Basic " + crypto::Base64(credentials);
    u.remove_userinfo();
  }
  Result<Target> server = ParseUrl(u.buffer());
  if (!server.ok()) return InvalidArgument(name + ": " + server.status().message());
  p.server = std::move(server).value();
  return std::optional<Proxy>(std::move(p));
}

// `text` is an address, possibly bracketed (IPv6); true and `out` set if so.
bool ParseAddress(std::string_view text, ip::address* out) {
  if (text.size() >= 2 && text.front() == '[' && text.back() == ']') {
    text = text.substr(1, text.size() - 2);
  }
  boost::system::error_code ec;
  *out = ip::make_address(std::string(text), ec);
  return !ec;
}

// The address's bytes, IPv4 in the first 4.
std::array<unsigned char, 16> AddressBytes(const ip::address& a) {
  std::array<unsigned char, 16> out{};
  if (a.is_v4()) {
    const auto b = a.to_v4().to_bytes();
    std::copy(b.begin(), b.end(), out.begin());
  } else {
    out = a.to_v6().to_bytes();
  }
  return out;
}

// A range rule for `a` with `prefix` leading bits.
NoProxyRule RangeRule(const ip::address& a, unsigned prefix) {
  NoProxyRule rule;
  rule.bytes = AddressBytes(a);
  rule.v6 = a.is_v6();
  rule.prefix = prefix;
  return rule;
}

bool ParsePort(std::string_view text, uint16_t* port) {
  if (text.empty() || text.size() > 5) return false;
  unsigned v = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + static_cast<unsigned>(c - '0');
  }
  if (v == 0 || v > 65535) return false;
  *port = static_cast<uint16_t>(v);
  return true;
}

Result<NoProxyRule> ParseNoProxyEntry(std::string_view entry) {
  NoProxyRule rule;
  std::string_view host = entry;
  // A CIDR range: "v4/bits", "v6/bits" or "[v6]/bits".
  if (const size_t slash = host.find('/'); slash != std::string_view::npos) {
    std::string_view addr = host.substr(0, slash);
    const std::string_view bits = host.substr(slash + 1);
    ip::address a;
    unsigned prefix = 0;
    if (!ParseAddress(addr, &a) || bits.empty() || bits.size() > 3) {
      return InvalidArgument("not a CIDR range");
    }
    for (char c : bits) {
      if (c < '0' || c > '9') return InvalidArgument("not a CIDR range");
      prefix = prefix * 10 + static_cast<unsigned>(c - '0');
    }
    if (prefix > (a.is_v6() ? 128u : 32u)) return InvalidArgument("CIDR prefix too long");
    return RangeRule(a, prefix);
  }
  // An optional port: "[v6]:port", or "host:port" / "v4:port" (one colon only; more colons are
  // an IPv6 address without brackets).
  if (host.front() == '[') {
    const size_t close = host.find(']');
    if (close == std::string_view::npos) return InvalidArgument("unbalanced '['");
    if (close + 1 < host.size()) {
      if (host[close + 1] != ':' || !ParsePort(host.substr(close + 2), &rule.port)) {
        return InvalidArgument("bad port");
      }
    }
    host = host.substr(0, close + 1);
  } else if (std::count(host.begin(), host.end(), ':') == 1) {
    const size_t colon = host.find(':');
    if (!ParsePort(host.substr(colon + 1), &rule.port)) return InvalidArgument("bad port");
    host = host.substr(0, colon);
  }
  if (ip::address a; ParseAddress(host, &a)) {
    const uint16_t port = rule.port;
    rule = RangeRule(a, a.is_v6() ? 128 : 32);
    rule.port = port;
    return rule;
  }
  if (host.starts_with("*.")) host.remove_prefix(2);
  while (!host.empty() && host.front() == '.') host.remove_prefix(1);
  if (!host.empty() && host.back() == '.') host.remove_suffix(1);  // a fully qualified name
  if (host.empty()) return InvalidArgument("empty host");
  for (char c : host) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '-' || c == '.' || c == '_';
    if (!ok) return InvalidArgument("not a host name, an address or a CIDR range");
  }
  rule.domain = AsciiLower(host);
  return rule;
}

// `address` is the target's host parsed as an address, when it is one.
bool Matches(const NoProxyRule& rule, const Target& t, const std::optional<ip::address>& address) {
  if (rule.port != 0 && rule.port != t.port) return false;
  if (!rule.domain.empty()) {
    if (address) return false;  // names match names; addresses only address rules
    std::string_view h = t.host;
    if (!h.empty() && h.back() == '.') h.remove_suffix(1);  // "example.com." is example.com
    const std::string& d = rule.domain;
    if (h == d) return true;
    return h.size() > d.size() && h.ends_with(d) && h[h.size() - d.size() - 1] == '.';
  }
  if (!address || address->is_v6() != rule.v6) return false;
  const std::array<unsigned char, 16> a = AddressBytes(*address);
  unsigned bits = rule.prefix;
  for (size_t i = 0; bits > 0; ++i, bits = bits >= 8 ? bits - 8 : 0) {
    const unsigned char mask = bits >= 8 ? 0xff : static_cast<unsigned char>(0xff << (8 - bits));
    if ((a[i] & mask) != (rule.bytes[i] & mask)) return false;
  }
  return true;
}

}  // namespace

const Proxy* ProxySettings::For(const Target& t) const {
  const std::optional<Proxy>& p = t.tls ? https : http;
  if (!p || no_proxy_all) return nullptr;
  if (no_proxy.empty()) return &*p;
  std::optional<ip::address> address;  // parsed once per request, not once per rule
  boost::system::error_code ec;
  if (ip::address a = ip::make_address(t.host, ec); !ec) address = a;
  for (const NoProxyRule& rule : no_proxy) {
    if (Matches(rule, t, address)) return nullptr;
  }
  return &*p;
}

std::string ProxySettings::Describe() const {
  std::string out;
  if (http) out += "http:// via " + http->server.origin;
  if (https) out += std::string(out.empty() ? "" : "; ") + "https:// via " + https->server.origin;
  if (no_proxy_all) {
    out += "; NO_PROXY=* (every host direct)";
  } else if (!no_proxy.empty()) {
    out += "; " + std::to_string(no_proxy.size()) + " NO_PROXY rule(s)";
  }
  return out;
}

Result<ProxySettings> ProxySettingsFromEnvironment(
    const std::function<const char*(const char*)>& get) {
  ProxySettings s;
  auto [http_name, http_value] = Lookup(get, "http_proxy", "HTTP_PROXY");
  Result<std::optional<Proxy>> http = ParseProxy(http_name, http_value);
  if (!http.ok()) return http.status();
  s.http = std::move(http).value();
  auto [https_name, https_value] = Lookup(get, "https_proxy", "HTTPS_PROXY");
  Result<std::optional<Proxy>> https = ParseProxy(https_name, https_value);
  if (!https.ok()) return https.status();
  s.https = std::move(https).value();

  auto [no_name, no_value] = Lookup(get, "no_proxy", "NO_PROXY");
  std::string_view rest = no_value;
  size_t index = 0;
  while (!rest.empty()) {
    const size_t end = rest.find_first_of(", \t");  // commas or blanks, as curl
    const std::string_view entry = rest.substr(0, end);
    rest = end == std::string_view::npos ? std::string_view() : rest.substr(end + 1);
    if (entry.empty()) continue;
    ++index;
    if (entry == "*") {
      s.no_proxy_all = true;
      continue;
    }
    Result<NoProxyRule> rule = ParseNoProxyEntry(entry);
    if (!rule.ok()) {
      return InvalidArgument(no_name + ": entry " + std::to_string(index) + ": " +
                             rule.status().message());
    }
    s.no_proxy.push_back(std::move(rule).value());
  }
  return s;
}

}  // namespace switchyard::httpclient
