// How the public and admin listeners judge a request's framing, shared by lib/http/server.cc and
// the request fuzz target (fuzz/fuzz_request.cc), so the fuzzer parses exactly as the server does.
// Private to lib/http (it exposes Beast types); other modules use http/message.h.
#pragma once

#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>
#include <optional>
#include <string>
#include <utility>

namespace switchyard::http {

using RequestParser = boost::beast::http::request_parser<boost::beast::http::string_body>;

// The answer to a failed read of a request (head or body), if it deserves one before closing:
// 431 head too large, 413 body too large, 400 malformed framing. Timeouts, resets and EOF get none.
std::optional<std::pair<int, std::string>> ReadErrorResponse(const boost::system::error_code& ec);

// Request framing that Beast's parser accepts but RFC 9112 §6.1 and §6.3 tell a server to refuse,
// because something in front of us may frame the same bytes differently (request smuggling: a
// second request hidden in what we would take for a body, or the reverse): a Transfer-Encoding
// whose final coding is not chunked (Beast would read no body and parse the body as the next
// request), a Transfer-Encoding next to a Content-Length, more than one Transfer-Encoding field,
// or one in an HTTP/1.0 request — all 400; codings other than chunked, which we cannot decode, 501.
// Call once the head is parsed; each answer closes the connection.
std::optional<std::pair<int, std::string>> FramingError(const RequestParser& parser);

// Feeds `bytes` to `parser` until `done(parser)` holds, the bytes run out, or the parser needs
// more than they hold. These are the put() calls Beast's own reads make, so limits and framing
// are judged identically whether a request was already buffered or is read later. Returns the
// bytes used (the caller consumes them); `ec` is set to a parse error, never to need_more.
template <typename Done>
size_t ParseBuffered(RequestParser& parser, boost::asio::const_buffer bytes, Done done,
                     boost::system::error_code& ec) {
  size_t total = 0;
  while (!done(parser) && bytes.size() > 0) {
    const size_t used = parser.put(bytes, ec);
    bytes += used;
    total += used;
    if (ec == boost::beast::http::error::need_more) {
      ec = {};
      break;
    }
    if (ec || used == 0) break;
  }
  return total;
}

}  // namespace switchyard::http
