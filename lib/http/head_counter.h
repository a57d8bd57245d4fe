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
  bool in_trailer() const { return trailer_; }
  // Counts a field (name, value, ": " and CRLF); false once the head or trailer is over the limit.
  bool Field(std::string_view name, std::string_view value) {
    used_ += name.size() + value.size() + 4;
    return used_ <= limit_;
  }

 private:
  uint64_t limit_ = 8192;  // Beast's default header_limit for requests
  uint64_t used_ = 0;
  bool trailer_ = false;
};

}  // namespace switchyard::http
