// Internal to lib/storage: the binary encoding of DeliveryRecord and the schedule key layout.
#pragma once

#include <string>
#include <string_view>

#include "common/status.h"
#include "storage/delivery_queue.h"

namespace switchyard::storage {

std::string EncodeDelivery(const DeliveryRecord& d);
Result<DeliveryRecord> DecodeDelivery(std::string_view bytes);

// sink \0 be64(due_ms) id: per-sink, due-time ordered.
std::string ScheduleKey(std::string_view sink, int64_t due_ms, std::string_view id);
// The smallest key of `sink` with due >= due_ms.
std::string ScheduleBound(std::string_view sink, int64_t due_ms);
// Parses a schedule key; false if malformed. `sink` and `id` view `key` (no copies).
bool ParseScheduleKey(std::string_view key, std::string_view* sink, int64_t* due_ms,
                      std::string_view* id);

}  // namespace switchyard::storage
