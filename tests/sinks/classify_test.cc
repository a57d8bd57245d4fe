#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>

#include "sinks/sink.h"
#include "sinks/sink_util.h"

namespace switchyard::sinks {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using Kind = Outcome::Kind;

// 1994-11-06T08:49:37Z, the RFC's example date.
const std::chrono::system_clock::time_point kRfcDate{seconds(784111777)};

std::optional<milliseconds> RetryAfter(std::string_view header,
                                       std::chrono::system_clock::time_point now = kRfcDate) {
  const Outcome out = ClassifyHttpStatus(503, header, now);
  EXPECT_EQ(out.kind, Kind::kRetry);
  return out.retry_after;
}

TEST(ClassifyHttpStatusTest, TwoHundredsAreSuccess) {
  for (int status : {200, 201, 202, 204, 299}) {
    const Outcome out = ClassifyHttpStatus(status, "", kRfcDate);
    EXPECT_EQ(out.kind, Kind::kSuccess) << status;
    EXPECT_EQ(out.http_status, status);
    EXPECT_EQ(out.error, "");
    EXPECT_FALSE(out.retry_after.has_value());
  }
}

TEST(ClassifyHttpStatusTest, TimeoutTooEarlyTooManyAndServerErrorsRetry) {
  for (int status : {408, 425, 429, 500, 502, 503, 504, 599}) {
    const Outcome out = ClassifyHttpStatus(status, "", kRfcDate);
    EXPECT_EQ(out.kind, Kind::kRetry) << status;
    EXPECT_EQ(out.http_status, status);
    EXPECT_EQ(out.error, "HTTP " + std::to_string(status));
    EXPECT_FALSE(out.retry_after.has_value()) << status;
  }
}

TEST(ClassifyHttpStatusTest, OtherCodesArePermanent) {
  for (int status : {100, 101, 199, 300, 301, 302, 304, 400, 401, 403, 404, 405, 409, 410, 413, 422,
                     451, 499, 600}) {
    const Outcome out = ClassifyHttpStatus(status, "120", kRfcDate);
    EXPECT_EQ(out.kind, Kind::kPermanent) << status;
    EXPECT_EQ(out.error, "HTTP " + std::to_string(status));
    EXPECT_FALSE(out.retry_after.has_value()) << "Retry-After only matters for retries";
  }
}

TEST(ClassifyHttpStatusTest, RetryAfterDeltaSeconds) {
  EXPECT_EQ(RetryAfter("120"), milliseconds(120000));
  EXPECT_EQ(RetryAfter("0"), milliseconds(0));
  EXPECT_EQ(RetryAfter(" 7\t"), milliseconds(7000));
  EXPECT_EQ(RetryAfter("007"), milliseconds(7000));
  const Outcome too_many = ClassifyHttpStatus(429, "3600", kRfcDate);
  EXPECT_EQ(too_many.retry_after, milliseconds(3600000)) << "not capped here";
}

constexpr milliseconds k36500Days = std::chrono::hours(24 * 36500);

TEST(ClassifyHttpStatusTest, RetryAfterHugeDeltaSaturatesAt36500Days) {
  // Saturated, so a caller can add it to a clock reading without overflow.
  EXPECT_EQ(RetryAfter("99999999999999999999999999"), k36500Days);
  EXPECT_EQ(RetryAfter("9223372036854775807"), k36500Days);
  EXPECT_EQ(RetryAfter("3153600000"), k36500Days);
  EXPECT_EQ(RetryAfter("3153599999"), k36500Days - milliseconds(1000));
}

// A system_clock time point counts nanoseconds and ends in 2262: dates beyond its range (a
// "never" of year 9999, a year-0 "long ago") are computed without it (undefined behaviour before).
TEST(ClassifyHttpStatusTest, RetryAfterDatesOutsideTheClocksRangeAreExact) {
  EXPECT_EQ(RetryAfter("Fri, 31 Dec 9999 23:59:59 GMT"), k36500Days);
  EXPECT_EQ(RetryAfter("Sun Dec 31 23:59:59 9999"), k36500Days);
  EXPECT_EQ(RetryAfter("Sat, 12 Apr 2262 23:47:16 GMT"), k36500Days);
  EXPECT_EQ(RetryAfter("Wed, 01 Jan 1000 00:00:00 GMT"), milliseconds(0));
  EXPECT_EQ(RetryAfter("Sat, 01 Jan 0000 00:00:00 GMT"), milliseconds(0));
  // Within 36500 days of now: exact (2094-10-11 is 36499 days after 1994-11-06).
  EXPECT_EQ(RetryAfter("Mon, 11 Oct 2094 08:49:37 GMT"), k36500Days - std::chrono::hours(24));
}

TEST(ClassifyHttpStatusTest, RetryAfterInvalidIsIgnored) {
  for (std::string_view bad : {"", " ", "-1", "1.5", "+5", "5s", "abc", "Sun, 06 Nov 1994",
                               "Sun, 06 Nov 1994 08:49:37 UTC", "sun, 06 nov 1994 08:49:37 gmt",
                               "Sun, 31 Nov 1994 08:49:37 GMT", "Sun, 06 Nov 1994 24:00:00 GMT",
                               "Sun,  6 Nov 1994 08:49:37 GMT"}) {
    EXPECT_FALSE(RetryAfter(bad).has_value()) << "'" << bad << "'";
  }
}

TEST(ClassifyHttpStatusTest, RetryAfterImfFixdateIsRelativeToNow) {
  EXPECT_EQ(RetryAfter("Sun, 06 Nov 1994 08:50:07 GMT"), milliseconds(30000));
  EXPECT_EQ(RetryAfter("Mon, 07 Nov 1994 08:49:37 GMT"), milliseconds(86400000));
  // Sub-second `now`: rounded up so the next attempt is never early.
  EXPECT_EQ(RetryAfter("Sun, 06 Nov 1994 08:49:38 GMT", kRfcDate + milliseconds(250)),
            milliseconds(750));
  // Leap day.
  const std::chrono::system_clock::time_point feb28_2024{seconds(1709078400)};  // 2024-02-28Z
  EXPECT_EQ(RetryAfter("Thu, 29 Feb 2024 00:00:00 GMT", feb28_2024), milliseconds(86400000));
  EXPECT_FALSE(RetryAfter("Thu, 29 Feb 2023 00:00:00 GMT", feb28_2024).has_value());
}

TEST(ClassifyHttpStatusTest, RetryAfterDateInThePastIsZero) {
  EXPECT_EQ(RetryAfter("Sun, 06 Nov 1994 08:49:37 GMT"), milliseconds(0));
  EXPECT_EQ(RetryAfter("Sat, 01 Jan 1994 00:00:00 GMT"), milliseconds(0));
}

TEST(ClassifyHttpStatusTest, RetryAfterObsoleteDateFormats) {
  EXPECT_EQ(RetryAfter("Sunday, 06-Nov-94 08:50:37 GMT"), milliseconds(60000));
  EXPECT_EQ(RetryAfter("Sun Nov  6 08:51:37 1994"), milliseconds(120000));
  EXPECT_EQ(RetryAfter("Mon Nov 14 08:49:37 1994"), milliseconds(8 * 86400000LL));
}

TEST(ClassifyTransportErrorTest, TimeoutsAndConnectionErrorsRetry) {
  const Outcome timeout = ClassifyTransportError({StatusCode::kDeadlineExceeded, "read timed out"});
  EXPECT_EQ(timeout.kind, Kind::kRetry);
  EXPECT_EQ(timeout.error, "timeout");
  EXPECT_EQ(timeout.http_status, 0);

  const Outcome refused = ClassifyTransportError(Unavailable("connection refused"));
  EXPECT_EQ(refused.kind, Kind::kRetry);
  EXPECT_EQ(refused.error, "connection error: connection refused");

  EXPECT_EQ(ClassifyTransportError(Internal("bad chunk")).kind, Kind::kRetry);
  EXPECT_EQ(ClassifyTransportError(ResourceExhausted("body too large")).kind, Kind::kRetry);
}

TEST(ClassifyTransportErrorTest, InvalidRequestIsPermanent) {
  const Outcome out = ClassifyTransportError(InvalidArgument("bad URL"));
  EXPECT_EQ(out.kind, Kind::kPermanent);
  EXPECT_THAT(out.error, ::testing::HasSubstr("bad URL"));
}

TEST(ClassifyTransportErrorTest, LongMessagesAreCut) {
  const Outcome out = ClassifyTransportError(Unavailable(std::string(5000, 'x')));
  EXPECT_LE(out.error.size(), 250u);
}

}  // namespace
}  // namespace switchyard::sinks

namespace switchyard::sinks {
namespace {

TEST(RedactTest, LongSecretsAreRedactedWhereverTheyAppear) {
  EXPECT_EQ(Redact("GET /x?token=abcdefghij1234 failed: abcdefghij1234", {"abcdefghij1234"}),
            "GET /x?token=[redacted] failed: [redacted]");
}

TEST(RedactTest, AShortSecretIsRedactedOnlyWhereItStandsAlone) {
  // A one-letter user key must not turn "invalid" into "inv[redacted]lid".
  EXPECT_EQ(Redact("pushover: invalid user a (request a1)", {"a"}),
            "pushover: invalid user [redacted] (request a1)");
  EXPECT_EQ(Redact("token=ab1", {"ab1"}), "token=[redacted]");
}

TEST(RedactTest, TheResultIsCutOnAUtf8Boundary) {
  std::string text = std::string(9, 'x') + "\xc3\xa9";  // 11 bytes, "é" at 9..10
  EXPECT_EQ(Redact(text, {}, 10), std::string(9, 'x'));
}

}  // namespace
}  // namespace switchyard::sinks
