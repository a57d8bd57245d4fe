#include "storage/delivery_record.h"

#include "storage/codec.h"

namespace switchyard::storage {
namespace {

constexpr uint8_t kVersion = 1;

void PutBe64(std::string& out, uint64_t v) {
  for (int i = 7; i >= 0; --i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

}  // namespace

std::string EncodeDelivery(const DeliveryRecord& d) {
  std::string out;
  out.reserve(96 + d.last_error.size());
  out.push_back(static_cast<char>(kVersion));
  PutBytes(out, d.id);
  PutBytes(out, d.event_id);
  PutBytes(out, d.route);
  PutBytes(out, d.sink);
  PutVarint(out, (d.deferred ? 1 : 0) | (d.dead ? 2 : 0) | (d.counts_match ? 4 : 0));
  PutVarint(out, d.attempts);
  PutVarint(out, static_cast<uint64_t>(d.created_ms));
  PutVarint(out, static_cast<uint64_t>(d.first_attempt_ms));
  PutVarint(out, static_cast<uint64_t>(d.last_attempt_ms));
  PutVarint(out, static_cast<uint64_t>(d.due_ms));
  PutBytes(out, d.last_error);
  return out;
}

Result<DeliveryRecord> DecodeDelivery(std::string_view in) {
  if (in.empty() || static_cast<uint8_t>(in[0]) != kVersion) {
    return Corruption("stored delivery has an unknown encoding version");
  }
  Reader r(in.substr(1));
  DeliveryRecord d;
  uint64_t flags, attempts, created, first, last, due;
  bool ok = r.Bytes(&d.id) && r.Bytes(&d.event_id) && r.Bytes(&d.route) && r.Bytes(&d.sink) &&
            r.Varint(&flags) && r.Varint(&attempts) && r.Varint(&created) && r.Varint(&first) &&
            r.Varint(&last) && r.Varint(&due) && r.Bytes(&d.last_error) && r.empty();
  if (!ok) return Corruption("stored delivery is truncated or malformed");
  d.deferred = flags & 1;
  d.dead = flags & 2;
  d.counts_match = flags & 4;
  d.attempts = static_cast<uint32_t>(attempts);
  d.created_ms = static_cast<int64_t>(created);
  d.first_attempt_ms = static_cast<int64_t>(first);
  d.last_attempt_ms = static_cast<int64_t>(last);
  d.due_ms = static_cast<int64_t>(due);
  return d;
}

std::string ScheduleBound(std::string_view sink, int64_t due_ms) {
  std::string k;
  k.reserve(sink.size() + 1 + 8 + 26);
  k.append(sink).push_back('\0');
  PutBe64(k, static_cast<uint64_t>(due_ms < 0 ? 0 : due_ms));
  return k;
}

std::string ScheduleKey(std::string_view sink, int64_t due_ms, std::string_view id) {
  std::string k = ScheduleBound(sink, due_ms);
  k.append(id);
  return k;
}

bool ParseScheduleKey(std::string_view key, std::string_view* sink, int64_t* due_ms,
                      std::string_view* id) {
  auto nul = key.find('\0');
  if (nul == std::string_view::npos || key.size() < nul + 1 + 8) return false;
  *sink = key.substr(0, nul);
  uint64_t v = 0;
  for (size_t i = 0; i < 8; ++i) v = (v << 8) | static_cast<uint8_t>(key[nul + 1 + i]);
  *due_ms = static_cast<int64_t>(v);
  *id = key.substr(nul + 9);
  return true;
}

}  // namespace switchyard::storage
