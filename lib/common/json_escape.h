// JSON string escaping (RFC 8259): the one implementation used for log lines, error bodies and
// template output. Bytes >= 0x80 are copied unchanged, so valid UTF-8 stays valid UTF-8.
#pragma once

#include <string>
#include <string_view>

namespace switchyard {

// Appends `s` escaped for use inside a JSON string literal (no surrounding quotes).
void AppendJsonEscaped(std::string& out, std::string_view s);

// Returns `s` as a quoted JSON string literal.
std::string JsonQuote(std::string_view s);

}  // namespace switchyard
