// HeadCounter: the size of an HTTP/1 head as a Beast parser's callbacks see it, for the request
// and response parsers that write straight into our messages (lib/http/request_framing.h,
// lib/httpclient/http_client.cc).
//
// Beast 1.81's basic_parser checks header_limit only against the unparsed bytes of one put():
// fields parsed by earlier reads have left the buffer and no longer count, so a head sent so that
// each read ends a byte or two into the next field grows without bound (a stored pair per 4-byte
// field) until the read's deadline. The parsers count here too and fail past the same limit.
// The trailer of a chunked body is counted afresh against the same limit.
#pragma once

#include <boost/beast/http/error.hpp>
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace switchyard::http {

class HeadCounter {
 public:
  void set_limit(uint64_t limit) { limit_ = limit; }
  // The start line (its length without CRLF); begins a head.
  void StartLine(size_t bytes) { used_ = bytes + 2; }
  // After the last chunk of a chunked body: the fields that follow are its trailer.
  void StartTrailer() {
    trailer_ = true;
    used_ = 0;
  }
  // Counts a field (name, value, ": " and CRLF). Past the limit: header_limit in the head (431
  // on the server), buffer_overflow in a trailer (400). *keep is false for a trailer's fields,
  // which are dropped, never merged into the head (RFC 9110 6.5.1).
  boost::system::error_code Field(std::string_view name, std::string_view value, bool* keep) {
    used_ += name.size() + value.size() + 4;
    *keep = !trailer_;
    if (used_ <= limit_) return {};
    return trailer_ ? boost::beast::http::error::buffer_overflow
                    : boost::beast::http::error::header_limit;
  }

 private:
  uint64_t limit_ = 8192;  // Beast's default header_limit for requests
  uint64_t used_ = 0;
  bool trailer_ = false;
};

}  // namespace switchyard::http
