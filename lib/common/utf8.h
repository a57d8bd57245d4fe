// UTF-8 validation, the one decoder behind SanitizeUtf8 (sinks) and JSON escaping (logs,
// error bodies, template output). Pure; thread-safe.
#pragma once

#include <cstddef>
#include <string_view>

namespace switchyard {

inline constexpr std::string_view kUtf8Replacement = "\xEF\xBF\xBD";  // U+FFFD

// Length of the valid UTF-8 sequence at the start of non-empty `s`, or 0 if it is invalid
// (stray continuation byte, overlong form, surrogate, above U+10FFFF, truncated); then `*bad` is
// the length of the maximal invalid subpart to replace by one U+FFFD (at least 1; Unicode's
// recommended practice).
size_t Utf8SequenceLength(std::string_view s, size_t* bad);

}  // namespace switchyard
