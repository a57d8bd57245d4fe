#include "http/request_framing.h"

#include <boost/beast/core/string.hpp>
#include <boost/beast/http/field.hpp>
#include <boost/beast/http/rfc7230.hpp>
#include <algorithm>
#include <iterator>

#include "common/ascii.h"

namespace switchyard::http {

namespace bhttp = boost::beast::http;

std::optional<std::pair<int, std::string>> ReadErrorResponse(const boost::system::error_code& ec) {
  if (ec == bhttp::error::header_limit) {
    return std::pair{431, std::string("request head too large")};
  }
  if (ec == bhttp::error::body_limit) {
    return std::pair{413, std::string("body larger than max_body_bytes")};
  }
  if (ec == bhttp::error::buffer_overflow) {
    // Only a chunk-size line or a trailer can fill the bounded read buffer (see server.cc).
    return std::pair{400, std::string("malformed request: chunk extension or trailer longer "
                                      "than max_header_bytes")};
  }
  if (ec == bhttp::error::partial_message || ec == bhttp::error::end_of_stream) {
    // The client closed mid-request (gave up, or a network drop): no one to answer, and not a
    // malformed request (it would count in switchyard_webhooks_rejected_total).
    return std::nullopt;
  }
  if (ec && ec.category() == bhttp::make_error_code(bhttp::error::bad_method).category()) {
    return std::pair{400, "malformed request: " + ec.message()};
  }
  return std::nullopt;
}

std::optional<std::pair<int, std::string>> FramingError(const RequestParser& parser) {
  auto bad = [](std::string why) { return std::pair{400, "malformed request: " + why}; };
  // RFC 9112 3.2: an HTTP/1.1 request without Host, or any with two, is answered 400 (with two,
  // something in front of us may have routed by the other one).
  if (parser.host_fields() > 1) return bad("more than one Host field");
  if (parser.host_fields() == 0 && parser.version() >= 11) return bad("no Host field");
  const int fields = parser.transfer_encoding_fields();
  if (fields == 0) return std::nullopt;
  if (fields > 1) return bad("more than one Transfer-Encoding field");
  if (parser.content_length_fields() > 0) {
    return bad("both Transfer-Encoding and Content-Length");
  }
  if (parser.version() < 11) return bad("Transfer-Encoding in an HTTP/1.0 request");
  if (!parser.chunked()) return bad("Transfer-Encoding does not end with chunked");
  const bhttp::token_list codings{parser.transfer_encoding()};
  if (std::next(codings.begin()) != codings.end()) {
    return std::pair{501, std::string("Transfer-Encoding other than chunked is not supported")};
  }
  return std::nullopt;
}

void RequestParser::on_request_impl(verb method, string_view method_str, string_view target,
                                    int version, error_code& ec) {
  method_ = method;
  version_ = version;
  request_.method.assign(method_str.data(), method_str.size());
  request_.target.assign(target.data(), target.size());
  request_.headers.reserve(16);
  head_.StartLine(method_str.size() + target.size() + 10);  // "M T HTTP/1.1"
  ec = {};
}

void RequestParser::on_field_impl(bhttp::field name, string_view name_string, string_view value,
                                  error_code& ec) {
  bool keep = false;
  ec = head_.Field(name_string, value, &keep);
  if (ec || !keep) return;
  if (name == bhttp::field::transfer_encoding && transfer_encodings_++ == 0) {
    transfer_encoding_.assign(value.data(), value.size());
  }
  if (name == bhttp::field::content_length) ++content_lengths_;
  if (name == bhttp::field::host) ++host_fields_;
  if (name == bhttp::field::expect && !seen_expect_) {
    seen_expect_ = true;
    // RFC 9110 10.1.1: ignored from an HTTP/1.0 client, which would take a 100 for the answer.
    expect_continue_ = version_ >= 11 && boost::beast::iequals(value, "100-continue");
  }
  request_.headers.emplace_back(AsciiLower(name_string), std::string(value.data(), value.size()));
  ec = {};
}

void RequestParser::on_body_init_impl(const boost::optional<std::uint64_t>& content_length,
                                      error_code& ec) {
  // Beast has checked a declared length against body_limit before this. Reserved up to 1 MiB
  // only: the declared length is the client's word, and a head alone must not reserve a body of
  // max_body_bytes (up to 256 MiB) per connection; larger bodies grow as bytes arrive.
  constexpr uint64_t kMaxReserve = 1 << 20;
  if (content_length) request_.body.reserve(static_cast<size_t>(std::min(*content_length, kMaxReserve)));
  ec = {};
}

std::size_t RequestParser::on_body_impl(string_view body, error_code& ec) {
  request_.body.append(body.data(), body.size());
  ec = {};
  return body.size();
}

std::size_t RequestParser::on_chunk_body_impl(std::uint64_t, string_view body, error_code& ec) {
  return on_body_impl(body, ec);
}

}  // namespace switchyard::http
