#include "http/request_framing.h"

#include <boost/beast/http/rfc7230.hpp>
#include <iterator>

namespace switchyard::http {

namespace bhttp = boost::beast::http;

std::optional<std::pair<int, std::string>> ReadErrorResponse(const boost::system::error_code& ec) {
  if (ec == bhttp::error::header_limit) {
    return std::pair{431, std::string("request head too large")};
  }
  if (ec == bhttp::error::body_limit) {
    return std::pair{413, std::string("body larger than max_body_bytes")};
  }
  if (ec && ec.category() == bhttp::make_error_code(bhttp::error::bad_method).category()) {
    return std::pair{400, "malformed request: " + ec.message()};
  }
  return std::nullopt;
}

std::optional<std::pair<int, std::string>> FramingError(const RequestParser& parser) {
  const auto& head = parser.get();
  const size_t fields = head.count(bhttp::field::transfer_encoding);
  if (fields == 0) return std::nullopt;
  auto bad = [](std::string why) { return std::pair{400, "malformed request: " + why}; };
  if (fields > 1) return bad("more than one Transfer-Encoding field");
  if (head.count(bhttp::field::content_length) > 0) {
    return bad("both Transfer-Encoding and Content-Length");
  }
  if (head.version() < 11) return bad("Transfer-Encoding in an HTTP/1.0 request");
  if (!parser.chunked()) return bad("Transfer-Encoding does not end with chunked");
  const bhttp::token_list codings{head[bhttp::field::transfer_encoding]};
  if (std::next(codings.begin()) != codings.end()) {
    return std::pair{501, std::string("Transfer-Encoding other than chunked is not supported")};
  }
  return std::nullopt;
}

}  // namespace switchyard::http
