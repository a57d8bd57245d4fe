// UTF-8 helpers for sinks: repair invalid input and cut text to a number of Unicode code points
// without splitting a UTF-8 sequence. Pure functions; thread-safe.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace switchyard::sinks {

// Returns `s` with every invalid UTF-8 sequence (stray continuation bytes, overlong forms,
// surrogates, code points above U+10FFFF, truncated sequences) replaced by U+FFFD, one U+FFFD per
// maximal invalid subpart (Unicode's recommended practice). Valid input is returned unchanged.
std::string SanitizeUtf8(std::string_view s);

// Number of code points in `s`, which must be valid UTF-8 (e.g. the output of SanitizeUtf8).
size_t CountCodePoints(std::string_view utf8);

// Sanitizes `s` (as SanitizeUtf8) and, if it then has more than `max_code_points` code points,
// cuts it on a code point boundary and appends "…" (U+2026) so the result has exactly
// `max_code_points` code points. Combining marks and the parts of emoji sequences count as
// separate code points and may be separated by the cut. With max_code_points == 0 returns "".
std::string TruncateCodePoints(std::string_view s, size_t max_code_points);

}  // namespace switchyard::sinks
