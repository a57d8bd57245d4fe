// RFC 3339 timestamps in UTC with milliseconds, e.g. 2026-11-26T19:05:40.123Z.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace switchyard {

std::string FormatRfc3339Millis(int64_t unix_ms);
// Parses an RFC 3339 timestamp ("2019-08-08T04:25:09.870Z", fraction optional, "Z" or "+hh:mm")
// into Unix milliseconds. nullopt when malformed.
std::optional<int64_t> ParseRfc3339Millis(std::string_view text);

}  // namespace switchyard
