#include "sinks/utf8.h"

namespace switchyard::sinks {
namespace {

constexpr std::string_view kReplacement = "\xEF\xBF\xBD";  // U+FFFD
constexpr std::string_view kEllipsis = "\xE2\x80\xA6";     // U+2026

bool IsContinuation(unsigned char c) { return (c & 0xC0) == 0x80; }

// Length of the valid UTF-8 sequence at the start of `s`, or 0 if it is invalid; in that case
// `*bad` is the length of the maximal invalid subpart to replace (at least 1).
size_t ValidSequenceLength(std::string_view s, size_t* bad) {
  const auto c0 = static_cast<unsigned char>(s[0]);
  *bad = 1;
  if (c0 < 0x80) return 1;
  size_t len = 0;
  unsigned char lo = 0x80;
  unsigned char hi = 0xBF;  // allowed range of the second byte
  if (c0 >= 0xC2 && c0 <= 0xDF) {
    len = 2;
  } else if (c0 >= 0xE0 && c0 <= 0xEF) {
    len = 3;
    if (c0 == 0xE0) lo = 0xA0;  // no overlong forms
    if (c0 == 0xED) hi = 0x9F;  // no surrogates
  } else if (c0 >= 0xF0 && c0 <= 0xF4) {
    len = 4;
    if (c0 == 0xF0) lo = 0x90;  // no overlong forms
    if (c0 == 0xF4) hi = 0x8F;  // nothing above U+10FFFF
  } else {
    return 0;  // continuation byte, C0, C1 or F5..FF
  }
  for (size_t i = 1; i < len; ++i) {
    if (i >= s.size()) {
      *bad = i;
      return 0;
    }
    const auto c = static_cast<unsigned char>(s[i]);
    const bool ok = i == 1 ? (c >= lo && c <= hi) : IsContinuation(c);
    if (!ok) {
      *bad = i;
      return 0;
    }
  }
  return len;
}

}  // namespace

std::string SanitizeUtf8(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    size_t bad = 1;
    const size_t n = ValidSequenceLength(s.substr(i), &bad);
    if (n > 0) {
      out.append(s.substr(i, n));
      i += n;
    } else {
      out.append(kReplacement);
      i += bad;
    }
  }
  return out;
}

size_t CountCodePoints(std::string_view utf8) {
  size_t n = 0;
  for (char c : utf8) {
    if (!IsContinuation(static_cast<unsigned char>(c))) ++n;
  }
  return n;
}

std::string TruncateCodePoints(std::string_view s, size_t max_code_points) {
  std::string clean = SanitizeUtf8(s);
  if (CountCodePoints(clean) <= max_code_points) return clean;
  if (max_code_points == 0) return "";
  // Keep max_code_points - 1 code points, then the ellipsis.
  size_t kept = 0;
  size_t end = 0;
  while (end < clean.size()) {
    if (!IsContinuation(static_cast<unsigned char>(clean[end]))) {
      if (kept == max_code_points - 1) break;
      ++kept;
    }
    ++end;
  }
  clean.resize(end);
  clean.append(kEllipsis);
  return clean;
}

}  // namespace switchyard::sinks
