// Helpers shared by the sink implementations (not part of the sinks API). Thread-safe.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace switchyard::sinks {

// ASCII case-insensitive equality (header names).
bool EqualsIgnoreCase(std::string_view a, std::string_view b);

// First value of header `name` (any case) in `headers`; empty if absent. Does not rely on the
// client having lower-cased the names.
std::string_view FindHeader(const std::vector<std::pair<std::string, std::string>>& headers,
                            std::string_view name);

// Returns `text` with every occurrence of each non-empty secret replaced by "[redacted]" (a
// secret under 8 bytes only where no letter or digit touches it on either side), then
// cut to at most `max_bytes` bytes (on a UTF-8 boundary). For error strings that end up in logs
// and the DLQ.
std::string Redact(std::string text, const std::vector<std::string>& secrets,
                   size_t max_bytes = 512);

}  // namespace switchyard::sinks
