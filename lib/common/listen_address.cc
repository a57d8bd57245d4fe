#include "common/listen_address.h"

#include <arpa/inet.h>

#include <algorithm>

namespace switchyard {
namespace {

bool IsLiteral(int family, const std::string& host) {
  unsigned char buf[16];
  return inet_pton(family, host.c_str(), buf) == 1;
}

}  // namespace

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
