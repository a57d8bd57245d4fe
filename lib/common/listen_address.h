// Listen addresses (server.listen, server.admin_listen): one grammar for the config check and the
// listener, so `switchyard check` accepts exactly the addresses `switchyard run` can bind.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "common/status.h"

namespace switchyard {

struct ListenAddress {
  std::string ip;  // an IPv4 or IPv6 literal (never a name)
  uint16_t port = 0;
};

// Parses "HOST:PORT", HOST being an IPv4 literal (dotted quad), `localhost` (127.0.0.1), `*` or
// empty (0.0.0.0, every interface), or "[IPV6]:PORT" with an IPv6 literal (no zone index). PORT
// is 1 to 5 decimal digits, 0..65535. Host names are not resolved, so any other host is rejected.
// The error message says what is wrong without repeating the address (callers add it).
Result<ListenAddress> ParseListenAddress(std::string_view address);

// True if two listeners on these addresses could not both bind: the same port (not 0) and
// addresses that meet. A wildcard meets every address of its family, and the IPv6 wildcard ([::],
// dual-stack as Linux binds it by default) every address; an IPv4-mapped IPv6 address is its
// IPv4 address.
bool ListenAddressesOverlap(const ListenAddress& a, const ListenAddress& b);

// True for a wildcard address (0.0.0.0, or [::] however written): every interface, no one host.
bool IsWildcard(const ListenAddress& a);

// True for a loopback address: 127.0.0.0/8 (also IPv4-mapped) or [::1].
bool IsLoopback(const ListenAddress& a);

}  // namespace switchyard
