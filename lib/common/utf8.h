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

// The longest prefix of `s` of at most `max_bytes` that does not end inside a UTF-8 sequence
// (it backs off over continuation bytes; invalid input is cut as bytes).
inline std::string_view Utf8Prefix(std::string_view s, size_t max_bytes) {
  size_t cut = s.size() < max_bytes ? s.size() : max_bytes;
  while (cut > 0 && cut < s.size() && (static_cast<unsigned char>(s[cut]) & 0xC0) == 0x80) --cut;
  return s.substr(0, cut);
}

}  // namespace switchyard
