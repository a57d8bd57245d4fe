// JSON string escaping (RFC 8259): the one implementation used for log lines, error bodies and
// template output. Valid UTF-8 is copied unchanged; each invalid sequence becomes U+FFFD (as
// SanitizeUtf8 does), so the output is always valid UTF-8 and valid JSON (RFC 8259 8.1), whatever
// bytes an unauthenticated client sent.
#pragma once

#include <string>
#include <string_view>

namespace switchyard {

// Appends `s` escaped for use inside a JSON string literal (no surrounding quotes).
void AppendJsonEscaped(std::string& out, std::string_view s);

// Returns `s` as a quoted JSON string literal.
std::string JsonQuote(std::string_view s);

}  // namespace switchyard
