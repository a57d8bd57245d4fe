// RFC 3339 timestamps in UTC with milliseconds, e.g. 2026-11-26T19:05:40.123Z.
#pragma once

#include <cstdint>
#include <string>

namespace switchyard {

std::string FormatRfc3339Millis(int64_t unix_ms);

}  // namespace switchyard
