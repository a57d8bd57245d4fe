// ClassifyHttpStatus, ClassifyTransportError and the helpers of sink_util.h.

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <optional>

#include "sinks/sink.h"
#include "sinks/sink_util.h"

namespace switchyard::sinks {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

// The longest Retry-After taken as given: the longest configurable duration.
constexpr milliseconds kMaxRetryAfter = config::kMaxDuration;
constexpr int64_t kMaxDeltaSeconds = std::chrono::duration_cast<seconds>(kMaxRetryAfter).count();

std::string_view TrimOws(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil).
int64_t DaysFromCivil(int64_t y, unsigned m, unsigned d) {
  y -= m <= 2;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const auto yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<int64_t>(doe) - 719468;
}

bool IsLeap(int64_t y) { return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0; }

unsigned DaysInMonth(int64_t y, unsigned m) {
  static constexpr unsigned kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  return m == 2 && IsLeap(y) ? 29 : kDays[m - 1];
}

// A tiny cursor over the header value for the three HTTP-date formats.
class Cursor {
 public:
  explicit Cursor(std::string_view s) : s_(s) {}
  bool Literal(std::string_view lit) {
    if (s_.substr(0, lit.size()) != lit) return false;
    s_.remove_prefix(lit.size());
    return true;
  }
  // Exactly `n` digits.
  bool Digits(size_t n, int64_t* out) {
    if (s_.size() < n) return false;
    int64_t v = 0;
    for (size_t i = 0; i < n; ++i) {
      if (s_[i] < '0' || s_[i] > '9') return false;
      v = v * 10 + (s_[i] - '0');
    }
    s_.remove_prefix(n);
    *out = v;
    return true;
  }
  bool OneOf(const std::string_view* names, size_t count, size_t* index) {
    for (size_t i = 0; i < count; ++i) {
      if (Literal(names[i])) {
        *index = i;
        return true;
      }
    }
    return false;
  }
  bool AtEnd() const { return s_.empty(); }

 private:
  std::string_view s_;
};

constexpr std::string_view kMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                        "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
constexpr std::string_view kShortDays[] = {"Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"};
constexpr std::string_view kLongDays[] = {"Monday", "Tuesday",  "Wednesday", "Thursday",
                                          "Friday", "Saturday", "Sunday"};

bool ParseTime(Cursor& c, int64_t* hh, int64_t* mm, int64_t* ss) {
  return c.Digits(2, hh) && c.Literal(":") && c.Digits(2, mm) && c.Literal(":") && c.Digits(2, ss);
}

// Parses an HTTP-date (RFC 9110 §5.6.7): IMF-fixdate "Sun, 06 Nov 1994 08:49:37 GMT", and the
// obsolete RFC 850 "Sunday, 06-Nov-94 08:49:37 GMT" and asctime "Sun Nov  6 08:49:37 1994"
// forms. The day name is not checked against the date. Returns seconds since the Unix epoch
// (years 0000-9999: no overflow), not a system_clock time point, which counts nanoseconds and
// cannot hold a date past 2262 ("Fri, 31 Dec 9999 23:59:59 GMT" is a common "never").
std::optional<int64_t> ParseHttpDateSeconds(std::string_view text,
                                            std::chrono::system_clock::time_point now) {
  int64_t year = 0, day = 0, hh = 0, mm = 0, ss = 0;
  size_t month = 0, dayname = 0;
  bool ok = false;
  {
    Cursor c(text);  // IMF-fixdate
    ok = c.OneOf(kShortDays, 7, &dayname) && c.Literal(", ") && c.Digits(2, &day) &&
         c.Literal(" ") && c.OneOf(kMonths, 12, &month) && c.Literal(" ") && c.Digits(4, &year) &&
         c.Literal(" ") && ParseTime(c, &hh, &mm, &ss) && c.Literal(" GMT") && c.AtEnd();
  }
  if (!ok) {
    Cursor c(text);  // RFC 850
    int64_t yy = 0;
    ok = c.OneOf(kLongDays, 7, &dayname) && c.Literal(", ") && c.Digits(2, &day) &&
         c.Literal("-") && c.OneOf(kMonths, 12, &month) && c.Literal("-") && c.Digits(2, &yy) &&
         c.Literal(" ") && ParseTime(c, &hh, &mm, &ss) && c.Literal(" GMT") && c.AtEnd();
    if (ok) {
      // A two-digit year more than 50 years in the future means the past century (RFC 9110).
      const auto now_days = std::chrono::floor<std::chrono::days>(now);
      const int64_t this_year = static_cast<int>(std::chrono::year_month_day(now_days).year());
      year = this_year - this_year % 100 + yy;
      if (year > this_year + 50) year -= 100;
    }
  }
  if (!ok) {
    Cursor c(text);  // asctime: day is space-padded
    ok = c.OneOf(kShortDays, 7, &dayname) && c.Literal(" ") && c.OneOf(kMonths, 12, &month) &&
         c.Literal(" ") && (c.Literal(" ") ? c.Digits(1, &day) : c.Digits(2, &day)) &&
         c.Literal(" ") && ParseTime(c, &hh, &mm, &ss) && c.Literal(" ") && c.Digits(4, &year) &&
         c.AtEnd();
  }
  if (!ok) return std::nullopt;
  const auto m = static_cast<unsigned>(month + 1);
  if (day < 1 || day > DaysInMonth(year, m) || hh > 23 || mm > 59 || ss > 60) return std::nullopt;
  return DaysFromCivil(year, m, static_cast<unsigned>(day)) * 86400 + hh * 3600 + mm * 60 + ss;
}

// Retry-After (RFC 9110 §10.2.3) relative to `now`: delta-seconds or an HTTP-date; a date in the
// past is 0. Nullopt if absent or malformed. Saturated at kMaxRetryAfter, so a caller can add it
// to a clock reading; each caller caps it further (the dispatcher at max_delay).
std::optional<milliseconds> ParseRetryAfter(std::string_view value,
                                            std::chrono::system_clock::time_point now) {
  value = TrimOws(value);
  if (value.empty()) return std::nullopt;
  if (std::all_of(value.begin(), value.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    int64_t secs = 0;
    for (char c : value) {
      if (secs > (kMaxDeltaSeconds - (c - '0')) / 10) {
        secs = kMaxDeltaSeconds;
        break;
      }
      secs = secs * 10 + (c - '0');
    }
    return milliseconds(secs * 1000);
  }
  const auto date_s = ParseHttpDateSeconds(value, now);
  if (!date_s) return std::nullopt;
  const auto wait = milliseconds(*date_s * 1000) -
                    std::chrono::floor<milliseconds>(now.time_since_epoch());
  return std::clamp(wait, milliseconds(0), kMaxRetryAfter);
}

}  // namespace

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    char x = a[i], y = b[i];
    if (x >= 'A' && x <= 'Z') x = static_cast<char>(x - 'A' + 'a');
    if (y >= 'A' && y <= 'Z') y = static_cast<char>(y - 'A' + 'a');
    if (x != y) return false;
  }
  return true;
}

std::string_view FindHeader(const std::vector<std::pair<std::string, std::string>>& headers,
                            std::string_view name) {
  for (const auto& [n, v] : headers) {
    if (EqualsIgnoreCase(n, name)) return v;
  }
  return {};
}

std::string Redact(std::string text, const std::vector<std::string>& secrets, size_t max_bytes) {
  static constexpr std::string_view kMark = "[redacted]";
  // A secret shorter than this is replaced only where it stands alone (between characters that
  // are not letters or digits): a one-letter "secret" would otherwise garble every word.
  static constexpr size_t kShortSecret = 8;
  auto alnum = [](char c) { return std::isalnum(static_cast<unsigned char>(c)) != 0; };
  for (const std::string& secret : secrets) {
    if (secret.empty()) continue;
    const bool short_secret = secret.size() < kShortSecret;
    for (size_t pos = text.find(secret); pos != std::string::npos;) {
      const size_t end = pos + secret.size();
      if (short_secret && ((pos > 0 && alnum(text[pos - 1])) ||
                           (end < text.size() && alnum(text[end])))) {
        pos = text.find(secret, pos + 1);
        continue;
      }
      text.replace(pos, secret.size(), kMark);
      pos = text.find(secret, pos + kMark.size());
    }
  }
  if (text.size() > max_bytes) {
    size_t cut = max_bytes;
    while (cut > 0 && (static_cast<unsigned char>(text[cut]) & 0xC0) == 0x80) --cut;
    text.resize(cut);
  }
  return text;
}

Outcome ClassifyHttpStatus(int status, std::string_view retry_after_header,
                           std::chrono::system_clock::time_point now) {
  Outcome out;
  out.http_status = status;
  if (status >= 200 && status <= 299) {
    out.kind = Outcome::Kind::kSuccess;
    return out;
  }
  out.error = "HTTP " + std::to_string(status);
  if (status == 408 || status == 425 || status == 429 || (status >= 500 && status <= 599)) {
    out.kind = Outcome::Kind::kRetry;
    out.retry_after = ParseRetryAfter(retry_after_header, now);
  } else {
    out.kind = Outcome::Kind::kPermanent;
  }
  return out;
}

Outcome ClassifyTransportError(const Status& status) {
  Outcome out;
  out.kind = Outcome::Kind::kRetry;
  const std::string detail = Redact(status.message(), {}, 200);
  switch (status.code()) {
    case StatusCode::kDeadlineExceeded:
      out.error = "timeout";
      break;
    case StatusCode::kUnavailable:
      out.error = "connection error: " + detail;
      break;
    case StatusCode::kInternal:
      out.error = "protocol error: " + detail;
      break;
    case StatusCode::kResourceExhausted:
      out.error = "response too large: " + detail;
      break;
    case StatusCode::kInvalidArgument:
      out.kind = Outcome::Kind::kPermanent;
      out.error = "invalid request: " + detail;
      break;
    default:
      // Not produced by the HttpClient contract; retrying is the safe side of at-least-once.
      out.error = "transport error: " + Redact(status.ToString(), {}, 200);
      break;
  }
  return out;
}

}  // namespace switchyard::sinks
