// Event and delivery ids: ULIDs (26 Crockford base32 characters: 48-bit millisecond timestamp,
// 80 random bits). Lexicographic order is creation order to the millisecond, so ids double as
// time-ordered RocksDB keys. Thread-safe.
#pragma once

#include <cstdint>
#include <string>

namespace switchyard {

// Returns a new ULID for time `now_ms`. Random bits come from a per-thread CSPRNG-seeded engine;
// successive ids of one thread within the same millisecond count up from the first, so they sort
// in the order they were made (ULID's monotonic mode).
std::string NewUlid(int64_t now_ms);

// The smallest ULID of millisecond `ms` (for range bounds over time-ordered keys).
std::string UlidLowerBound(int64_t ms);

// Extracts the millisecond timestamp of a ULID; -1 if `id` is not a ULID.
int64_t UlidMillis(const std::string& id);

}  // namespace switchyard
