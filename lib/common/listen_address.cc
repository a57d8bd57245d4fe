#include "common/listen_address.h"

#include <arpa/inet.h>

#include <algorithm>

namespace switchyard {
namespace {

bool IsLiteral(int family, const std::string& host) {
  unsigned char buf[16];
  return inet_pton(family, host.c_str(), buf) == 1;
}

// The address as 16 bytes (IPv4 as IPv4-mapped IPv6); false if it is not a literal.
bool ToBytes(const std::string& ip, unsigned char out[16]) {
  if (inet_pton(AF_INET6, ip.c_str(), out) == 1) return true;
  unsigned char v4[4];
  if (inet_pton(AF_INET, ip.c_str(), v4) != 1) return false;
  std::fill(out, out + 10, 0);
  out[10] = out[11] = 0xff;
  std::copy(v4, v4 + 4, out + 10 + 2);
  return true;
}

bool IsV4Mapped(const unsigned char b[16]) {
  return std::all_of(b, b + 10, [](unsigned char c) { return c == 0; }) && b[10] == 0xff &&
         b[11] == 0xff;
}

bool IsV4Any(const unsigned char b[16]) {
  return IsV4Mapped(b) && std::all_of(b + 12, b + 16, [](unsigned char c) { return c == 0; });
}

bool IsV6Any(const unsigned char b[16]) {
  return std::all_of(b, b + 16, [](unsigned char c) { return c == 0; });
}

}  // namespace

bool ListenAddressesOverlap(const ListenAddress& a, const ListenAddress& b) {
  if (a.port == 0 || a.port != b.port) return false;
  unsigned char x[16], y[16];
  if (!ToBytes(a.ip, x) || !ToBytes(b.ip, y)) return a.ip == b.ip;
  if (std::equal(x, x + 16, y) || IsV6Any(x) || IsV6Any(y)) return true;
  return (IsV4Any(x) && IsV4Mapped(y)) || (IsV4Any(y) && IsV4Mapped(x));
}

bool IsLoopback(const ListenAddress& a) {
  unsigned char b[16];
  if (!ToBytes(a.ip, b)) return false;
  if (IsV4Mapped(b)) return b[12] == 127;
  return std::all_of(b, b + 15, [](unsigned char c) { return c == 0; }) && b[15] == 1;
}

bool IsWildcard(const ListenAddress& a) {
  unsigned char b[16];
  return ToBytes(a.ip, b) && (IsV4Any(b) || IsV6Any(b));
}

Result<ListenAddress> ParseListenAddress(std::string_view address) {
  std::string host;
  std::string_view port;
  if (address.starts_with("[")) {
    size_t close = address.find("]:");
    if (close == std::string_view::npos) {
      return InvalidArgument("no \"]:PORT\" after the bracketed IPv6 address");
    }
    host = std::string(address.substr(1, close - 1));
    port = address.substr(close + 2);
    if (!IsLiteral(AF_INET6, host)) {
      return InvalidArgument("the host in brackets is not an IPv6 address");
    }
  } else {
    size_t colon = address.rfind(':');
    if (colon == std::string_view::npos) return InvalidArgument("no \":PORT\"");
    host = std::string(address.substr(0, colon));
    port = address.substr(colon + 1);
    if (host == "localhost") {
      host = "127.0.0.1";
    } else if (host.empty() || host == "*") {
      host = "0.0.0.0";
    } else if (IsLiteral(AF_INET6, host)) {
      return InvalidArgument("an IPv6 address must be in brackets ([IPV6]:PORT)");
    } else if (!IsLiteral(AF_INET, host)) {
      return InvalidArgument(
          "the host is not an IP address (host names are not resolved; use an IPv4 address, "
          "[IPV6], localhost, or * for every interface)");
    }
  }
  bool digits = !port.empty() && port.size() <= 5 &&
                std::all_of(port.begin(), port.end(), [](char c) { return c >= '0' && c <= '9'; });
  int value = 0;
  for (char c : digits ? port : std::string_view()) value = value * 10 + (c - '0');
  if (!digits || value > 65535) return InvalidArgument("the port is not in 0..65535");
  return ListenAddress{std::move(host), static_cast<uint16_t>(value)};
}

}  // namespace switchyard
