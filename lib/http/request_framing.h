// How the public and admin listeners judge a request's framing, shared by lib/http/server.cc and
// the request fuzz target (fuzz/fuzz_request.cc), so the fuzzer parses exactly as the server does.
// Private to lib/http (it exposes Beast types); other modules use http/message.h.
#pragma once

#include <boost/beast/http/basic_parser.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/verb.hpp>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "http/head_counter.h"
#include "http/message.h"

namespace switchyard::http {

// Beast's HTTP/1 request parser — its grammar, limits (header_limit, body_limit) and
// de-chunking — writing straight into our Request: the method and target, each field with its
// name lower-cased (ASCII), and the body. Beast's own request_parser would first build a fields
// container (an allocation per field) and a body we would then copy out of. One per request.
class RequestParser final : public boost::beast::http::basic_parser<true> {
 public:
  using verb = boost::beast::http::verb;

  // Hides basic_parser::header_limit: the head is also counted as parsed (http/head_counter.h)
  // and fails with header_limit (431) past `n`. The same `n` bounds the trailer of a chunked
  // body (buffer_overflow, 400); trailer fields are dropped, never merged into the head
  // (RFC 9110 6.5.1).
  void header_limit(std::uint32_t n) {
    basic_parser::header_limit(n);
    head_.set_limit(n);
  }

  // The request read so far: the head once is_header_done(), the body too once is_done().
  Request& request() { return request_; }
  const Request& request() const { return request_; }
  verb method() const { return method_; }
  int version() const { return version_; }  // 10 or 11
  // How many Transfer-Encoding and Content-Length fields the head had, and the first
  // Transfer-Encoding's value.
  int transfer_encoding_fields() const { return transfer_encodings_; }
  int content_length_fields() const { return content_lengths_; }
  int host_fields() const { return host_fields_; }
  std::string_view transfer_encoding() const { return transfer_encoding_; }
  // Whether the first Expect field is "100-continue" (case-insensitive), in an HTTP/1.1 request.
  bool expects_continue() const { return expect_continue_; }

 private:
  using string_view = boost::beast::string_view;
  using error_code = boost::system::error_code;

  void on_request_impl(verb method, string_view method_str, string_view target, int version,
                       error_code& ec) override;
  void on_response_impl(int, string_view, int, error_code&) override {}  // never a response
  void on_field_impl(boost::beast::http::field name, string_view name_string, string_view value,
                     error_code& ec) override;
  void on_header_impl(error_code&) override {}
  void on_body_init_impl(const boost::optional<std::uint64_t>& content_length,
                         error_code& ec) override;
  std::size_t on_body_impl(string_view body, error_code& ec) override;
  void on_chunk_header_impl(std::uint64_t size, string_view, error_code&) override {
    if (size == 0) head_.StartTrailer();  // the last chunk
  }
  std::size_t on_chunk_body_impl(std::uint64_t, string_view body, error_code& ec) override;
  void on_finish_impl(error_code&) override {}

  Request request_;
  verb method_ = verb::unknown;
  int version_ = 0;
  int transfer_encodings_ = 0;
  int content_lengths_ = 0;
  int host_fields_ = 0;
  std::string transfer_encoding_;
  bool seen_expect_ = false;
  bool expect_continue_ = false;
  HeadCounter head_;
};

// The answer to a failed read of a request (head or body), if it deserves one before closing:
// 431 head too large, 413 body too large, 400 malformed framing. Timeouts, resets and EOF (also
// in the middle of a request) get none.
std::optional<std::pair<int, std::string>> ReadErrorResponse(const boost::system::error_code& ec);

// Request framing that Beast's parser accepts but RFC 9112 §6.1 and §6.3 tell a server to refuse,
// because something in front of us may frame the same bytes differently (request smuggling: a
// second request hidden in what we would take for a body, or the reverse): a Transfer-Encoding
// whose final coding is not chunked (Beast would read no body and parse the body as the next
// request), a Transfer-Encoding next to a Content-Length, more than one Transfer-Encoding field,
// or one in an HTTP/1.0 request — all 400; codings other than chunked, which we cannot decode, 501.
// Also RFC 9112 3.2: an HTTP/1.1 request without a Host field, or any request with two — 400.
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
