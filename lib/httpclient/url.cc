#include "httpclient/url.h"

#include <array>
#include <boost/url/parse.hpp>
#include <boost/url/url_view.hpp>

#include "common/ascii.h"
#include "httpclient/http_client.h"

namespace switchyard::httpclient {

Result<Target> ParseUrl(std::string_view url) {
  auto parsed = boost::urls::parse_uri(url);
  if (!parsed) return InvalidArgument("invalid URL: " + parsed.error().message());
  const boost::urls::url_view& u = *parsed;
  Target t;
  if (u.scheme_id() == boost::urls::scheme::http) {
    t.tls = false;
  } else if (u.scheme_id() == boost::urls::scheme::https) {
    t.tls = true;
  } else {
    return InvalidArgument("invalid URL: scheme must be http or https");
  }
  if (!u.has_authority()) return InvalidArgument("invalid URL: no host");
  if (u.has_userinfo()) {
    return InvalidArgument("invalid URL: userinfo is not supported (use an Authorization header)");
  }
  std::string bracketed;
  switch (u.host_type()) {
    case boost::urls::host_type::ipv4:
      t.host = u.host_ipv4_address().to_string();
      bracketed = t.host;
      break;
    case boost::urls::host_type::ipv6:
      t.host = u.host_ipv6_address().to_string();
      bracketed = "[" + t.host + "]";
      break;
    case boost::urls::host_type::name: {
      std::string_view name = u.encoded_host();
      if (name.empty()) return InvalidArgument("invalid URL: no host");
      if (name.find('%') != std::string_view::npos) {
        return InvalidArgument("invalid URL: percent-encoded host");
      }
      t.host = AsciiLower(name);
      bracketed = t.host;
      break;
    }
    default:
      return InvalidArgument("invalid URL: unsupported host");
  }
  const uint16_t default_port = t.tls ? 443 : 80;
  t.port = default_port;
  if (u.has_port() && !u.port().empty()) {
    // Parsed here: url_view::port_number() silently wraps values over 65535.
    unsigned long port = 0;
    for (char c : u.port()) {
      port = port * 10 + static_cast<unsigned long>(c - '0');  // the grammar allows digits only
      if (port > 65535) break;
    }
    if (port == 0 || port > 65535) return InvalidArgument("invalid URL: bad port");
    t.port = static_cast<uint16_t>(port);
  }
  t.target = std::string(u.encoded_path());
  if (t.target.empty()) t.target = "/";
  if (t.target[0] != '/') return InvalidArgument("invalid URL: path must be absolute");
  if (u.has_query()) {
    t.target += '?';
    t.target += u.encoded_query();
  }
  t.host_header = bracketed;
  if (t.port != default_port) t.host_header += ":" + std::to_string(t.port);
  t.origin = std::string(t.tls ? "https://" : "http://") + bracketed + ":" + std::to_string(t.port);
  return t;
}

namespace {

// Table-driven: the client checks every header name of every delivery (isalnum plus a search
// of the punctuation, per character, was ~1k instructions a delivery).
constexpr std::array<bool, 256> kTokenChars = [] {
  std::array<bool, 256> t{};
  for (int c = '0'; c <= '9'; ++c) t[c] = true;
  for (int c = 'a'; c <= 'z'; ++c) t[c] = t[c - 'a' + 'A'] = true;
  for (char c : std::string_view("!#$%&'*+-.^_`|~")) t[static_cast<unsigned char>(c)] = true;
  return t;
}();

}  // namespace

bool IsHttpToken(std::string_view s) {
  if (s.empty()) return false;
  for (unsigned char c : s) {
    if (!kTokenChars[c]) return false;
  }
  return true;
}

Status ValidateUrl(std::string_view url) {
  Result<Target> target = ParseUrl(url);
  return target.ok() ? Status::Ok() : target.status();
}

}  // namespace switchyard::httpclient
