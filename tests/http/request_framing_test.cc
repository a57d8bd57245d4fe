#include "http/request_framing.h"

#include <gtest/gtest.h>

#include <boost/asio/buffer.hpp>
#include <string>
#include <string_view>

namespace switchyard::http {
namespace {

struct Parsed {
  bool complete = false;
  boost::system::error_code ec;
  size_t used = 0;
};

// Feeds `bytes` in pieces of `step` bytes (as a slow client would send them), the head first and
// then the body, the way the server does.
Parsed Parse(RequestParser& p, std::string_view bytes, size_t step = SIZE_MAX) {
  Parsed r;
  std::string buffered;
  size_t next = 0;
  auto feed = [&](auto done) {
    for (;;) {
      r.used = ParseBuffered(p, boost::asio::buffer(buffered), done, r.ec);
      buffered.erase(0, r.used);
      if (r.ec || done(p)) return true;
      if (next >= bytes.size()) return false;
      const size_t n = std::min(step, bytes.size() - next);
      buffered.append(bytes.substr(next, n));
      next += n;
    }
  };
  p.header_limit(8192);
  p.body_limit(1 << 20);
  p.eager(false);
  if (!feed([](const RequestParser& q) { return q.is_header_done(); }) || r.ec) return r;
  if (FramingError(p)) return r;
  p.eager(true);
  r.complete = feed([](const RequestParser& q) { return q.is_done(); }) && !r.ec;
  return r;
}

TEST(RequestParser, FillsMethodTargetLowerCasedFieldsInOrderAndTheBody) {
  RequestParser p;
  Parsed r = Parse(p,
                   "POST /hooks/sentry?x=1 HTTP/1.1\r\nHost: a\r\nSentry-Hook-Resource: issue\r\n"
                   "X-Dup: 1\r\nx-dup: 2\r\nContent-Length: 5\r\n\r\nhello");
  ASSERT_TRUE(r.complete) << r.ec.message();
  const Request& req = p.request();
  EXPECT_EQ(req.method, "POST");
  EXPECT_EQ(req.target, "/hooks/sentry?x=1");
  ASSERT_EQ(req.headers.size(), 5u);
  EXPECT_EQ(req.headers[0], (std::pair<std::string, std::string>{"host", "a"}));
  EXPECT_EQ(req.headers[1].first, "sentry-hook-resource");
  EXPECT_EQ(req.headers[2], (std::pair<std::string, std::string>{"x-dup", "1"}));
  EXPECT_EQ(req.headers[3], (std::pair<std::string, std::string>{"x-dup", "2"}));
  EXPECT_EQ(req.body, "hello");
  EXPECT_EQ(p.version(), 11);
  EXPECT_TRUE(p.keep_alive());
  EXPECT_FALSE(FramingError(p));
}

TEST(RequestParser, ABodyArrivingByteByByteIsTheSame) {
  RequestParser p;
  Parsed r =
      Parse(p, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\nhello world", /*step=*/1);
  ASSERT_TRUE(r.complete) << r.ec.message();
  EXPECT_EQ(p.request().body, "hello world");
}

TEST(RequestParser, ChunksAreReassembledAndExtensionsDropped) {
  RequestParser p;
  Parsed r = Parse(p,
                   "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                   "5;ext=1\r\nhello\r\n1\r\n \r\n5\r\nworld\r\n0\r\n\r\n",
                   /*step=*/3);
  ASSERT_TRUE(r.complete) << r.ec.message();
  EXPECT_EQ(p.request().body, "hello world");
  EXPECT_EQ(p.transfer_encoding_fields(), 1);
}

TEST(RequestParser, BodyOverTheLimitIsRefusedBeforeItIsRead) {
  RequestParser p;
  p.body_limit(4);
  boost::system::error_code ec;
  std::string bytes = "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n";
  ParseBuffered(
      p, boost::asio::buffer(bytes), [](const RequestParser& q) { return q.is_header_done(); },
      ec);
  EXPECT_EQ(ec, boost::beast::http::error::body_limit);
  EXPECT_EQ(ReadErrorResponse(ec)->first, 413);
  EXPECT_EQ(p.request().target, "/");  // the head is known for OnRefused
}

// Beast 1.81 checks header_limit only against one read's unparsed bytes: a head sent so that
// every read ends a byte into the next field (the parsed fields leave the buffer) never reached
// it, and grew a stored pair per 4 bytes until header_timeout.
TEST(RequestParser, AHeadFedAFieldAtATimeStillStopsAtTheHeaderLimit) {
  RequestParser p;
  p.header_limit(8192);
  p.eager(false);
  std::string buffered = "POST / HTTP/1.1\r\nHost: x\r\nX";
  std::string piece = ":\r\n";
  for (int i = 0; i < 126; ++i) piece += "a:\r\n";
  piece += "X";
  boost::system::error_code ec;
  size_t fed = buffered.size();
  auto head_done = [](const RequestParser& q) { return q.is_header_done(); };
  for (int i = 0; i < 256 && !ec; ++i) {  // 128 KiB in all
    buffered.erase(0, ParseBuffered(p, boost::asio::buffer(buffered), head_done, ec));
    if (!ec) {
      ASSERT_LE(buffered.size(), 2u) << "each read leaves only the next field's first byte";
      buffered += piece;
      fed += piece.size();
    }
  }
  EXPECT_EQ(ec, boost::beast::http::error::header_limit);
  EXPECT_EQ(ReadErrorResponse(ec)->first, 431);
  EXPECT_LE(fed, 8192u + 2 * piece.size());
  EXPECT_LE(p.request().headers.size(), 8192u / 4);
}

// RFC 9110 6.5.1: trailer fields are not head fields. A field a proxy in front stripped from the
// head must not come back in a trailer, and a trailer is bounded like a head.
TEST(RequestParser, ChunkedTrailersAreDroppedNotMergedAndBoundedLikeTheHead) {
  RequestParser p;
  Parsed r = Parse(p,
                   "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                   "5\r\nhello\r\n0\r\nSentry-Hook-Resource: issue\r\nX-Forwarded-For: 1.2.3.4\r\n"
                   "\r\n");
  ASSERT_TRUE(r.complete) << r.ec.message();
  EXPECT_EQ(p.request().body, "hello");
  for (const auto& [name, value] : p.request().headers) {
    EXPECT_NE(name, "sentry-hook-resource");
    EXPECT_NE(name, "x-forwarded-for");
  }
  EXPECT_EQ(p.request().headers.size(), 2u);  // host, transfer-encoding

  RequestParser big;
  Parsed over = Parse(big,
                      "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                      "5\r\nhello\r\n0\r\nX-Big: " +
                          std::string(9000, 'b') + "\r\n\r\n");
  EXPECT_EQ(over.ec, boost::beast::http::error::buffer_overflow);
  EXPECT_EQ(ReadErrorResponse(over.ec)->first, 400);
}

// A sender that gives up and closes mid-request is not sent a 400 nor counted as malformed.
TEST(RequestParser, AClientClosingMidRequestGetsNoAnswer) {
  RequestParser p;
  p.header_limit(8192);
  boost::system::error_code ec;
  std::string bytes = "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nhal";
  ParseBuffered(
      p, boost::asio::buffer(bytes), [](const RequestParser& q) { return q.is_done(); }, ec);
  ASSERT_FALSE(ec);
  p.put_eof(ec);
  EXPECT_EQ(ec, boost::beast::http::error::partial_message);
  EXPECT_FALSE(ReadErrorResponse(ec));
  EXPECT_FALSE(ReadErrorResponse(boost::beast::http::error::end_of_stream));
  EXPECT_EQ(ReadErrorResponse(boost::beast::http::error::bad_version)->first, 400);
}

TEST(RequestParser, HttpOneZeroClosesUnlessAskedToKeepAlive) {
  RequestParser a, b;
  ASSERT_TRUE(Parse(a, "GET / HTTP/1.0\r\n\r\n").complete);
  EXPECT_EQ(a.version(), 10);
  EXPECT_FALSE(a.keep_alive());
  ASSERT_TRUE(Parse(b, "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").complete);
  EXPECT_TRUE(b.keep_alive());
}

TEST(RequestParser, ConnectionCloseEndsAnHttpOneOneConnection) {
  RequestParser p;
  ASSERT_TRUE(Parse(p, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").complete);
  EXPECT_FALSE(p.keep_alive());
  EXPECT_EQ(p.method(), boost::beast::http::verb::get);
}

TEST(RequestParser, CloseInAnyConnectionFieldEndsTheConnection) {
  RequestParser p;
  ASSERT_TRUE(
      Parse(p, "GET / HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\nConnection: close\r\n\r\n")
          .complete);
  EXPECT_FALSE(p.keep_alive());
}

TEST(RequestParser, StopsAtTheEndOfARequestAndLeavesThePipelinedOneBuffered) {
  const std::string first = "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\none";
  const std::string second = "POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\ntwo";
  const std::string both = first + second;
  RequestParser p;
  boost::system::error_code ec;
  p.eager(false);
  size_t used = ParseBuffered(
      p, boost::asio::buffer(both), [](const RequestParser& q) { return q.is_header_done(); }, ec);
  p.eager(true);
  used += ParseBuffered(
      p, boost::asio::buffer(both.data() + used, both.size() - used),
      [](const RequestParser& q) { return q.is_done(); }, ec);
  ASSERT_FALSE(ec) << ec.message();
  ASSERT_TRUE(p.is_done());
  EXPECT_EQ(used, first.size());
  EXPECT_EQ(p.request().body, "one");
  RequestParser q;
  ASSERT_TRUE(Parse(q, std::string_view(both).substr(used)).complete);
  EXPECT_EQ(q.request().target, "/b");
  EXPECT_EQ(q.request().body, "two");
}

TEST(RequestParser, ExpectContinueIsSeenOnTheFirstExpectFieldOnly) {
  RequestParser a, b;
  Parse(a, "POST / HTTP/1.1\r\nExpect: 100-Continue\r\nContent-Length: 0\r\n\r\n");
  EXPECT_TRUE(a.expects_continue());
  Parse(b, "POST / HTTP/1.1\r\nExpect: nothing\r\nExpect: 100-continue\r\nContent-Length: 0\r\n\r\n");
  EXPECT_FALSE(b.expects_continue());
}

// The status the server answers a head with: a parse error's (ReadErrorResponse), else a framing
// error's, else 0.
int FramingStatus(std::string_view head) {
  RequestParser p;
  Parsed r = Parse(p, head);
  if (r.ec) return ReadErrorResponse(r.ec) ? ReadErrorResponse(r.ec)->first : -1;
  auto e = FramingError(p);
  return e ? e->first : 0;
}

TEST(FramingError, RefusesTransferEncodingsASmugglerCouldUse) {
  EXPECT_EQ(FramingStatus("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"), 0);
  EXPECT_EQ(FramingStatus("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                          "Content-Length: 3\r\n\r\n"),
            400);
  EXPECT_EQ(FramingStatus("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                          "Transfer-Encoding: chunked\r\n\r\n"),
            400);
  // Beast's own grammar refuses the two above (and a non-chunked coding next to a length);
  // two Transfer-Encoding fields that end with chunked only our field count catches.
  EXPECT_EQ(FramingStatus("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n"
                          "Transfer-Encoding: chunked\r\n\r\n"),
            400);
  EXPECT_EQ(FramingStatus("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n"
                          "Content-Length: 3\r\n\r\n"),
            400);
  EXPECT_EQ(FramingStatus("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"), 400);
  EXPECT_EQ(FramingStatus("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n"),
            400);
  EXPECT_EQ(FramingStatus("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"),
            501);
}

TEST(FramingError, AnHttpOneOneRequestNeedsExactlyOneHost) {
  EXPECT_EQ(FramingStatus("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"), 0);
  EXPECT_EQ(FramingStatus("GET /healthz HTTP/1.1\r\n\r\n"), 400);
  EXPECT_EQ(FramingStatus("GET /healthz HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n"), 400);
  EXPECT_EQ(FramingStatus("GET /healthz HTTP/1.0\r\n\r\n"), 0);  // HTTP/1.0 had no Host
  EXPECT_EQ(FramingStatus("GET /healthz HTTP/1.0\r\nHost: a\r\nHost: a\r\n\r\n"), 400);
}

}  // namespace
}  // namespace switchyard::http
