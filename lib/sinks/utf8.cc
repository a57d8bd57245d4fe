#include "sinks/utf8.h"

#include "common/utf8.h"

namespace switchyard::sinks {
namespace {

constexpr std::string_view kEllipsis = "\xE2\x80\xA6";     // U+2026

bool IsContinuation(unsigned char c) { return (c & 0xC0) == 0x80; }

}  // namespace

std::string SanitizeUtf8(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    size_t bad = 1;
    const size_t n = Utf8SequenceLength(s.substr(i), &bad);
    if (n > 0) {
      out.append(s.substr(i, n));
      i += n;
    } else {
      out.append(kUtf8Replacement);
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
