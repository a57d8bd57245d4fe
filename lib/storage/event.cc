#include "storage/event.h"

#include <cstring>

namespace switchyard::storage {
namespace {

constexpr uint8_t kVersion = 1;

void PutVarint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}

void PutBytes(std::string& out, std::string_view s) {
  PutVarint(out, s.size());
  out.append(s);
}

class Reader {
 public:
  explicit Reader(std::string_view in) : in_(in) {}
  bool Varint(uint64_t* v) {
    *v = 0;
    for (int shift = 0; shift <= 63 && !in_.empty(); shift += 7) {
      uint8_t b = static_cast<uint8_t>(in_[0]);
      in_.remove_prefix(1);
      *v |= static_cast<uint64_t>(b & 0x7f) << shift;
      if (!(b & 0x80)) return true;
    }
    return false;
  }
  bool Bytes(std::string* s) {
    uint64_t n;
    if (!Varint(&n) || n > in_.size()) return false;
    s->assign(in_.substr(0, n));
    in_.remove_prefix(n);
    return true;
  }
  bool empty() const { return in_.empty(); }

 private:
  std::string_view in_;
};

}  // namespace

std::string EncodeEvent(const StoredEvent& e) {
  std::string out;
  out.reserve(64 + e.body.size() + e.source.size() + e.id.size());
  out.push_back(static_cast<char>(kVersion));
  PutBytes(out, e.id);
  PutBytes(out, e.source);
  PutBytes(out, e.resource);
  PutBytes(out, e.action);
  PutVarint(out, static_cast<uint64_t>(e.received_at_ms));
  PutBytes(out, e.installation_uuid);
  PutVarint(out, e.headers.size());
  for (const auto& [k, v] : e.headers) {
    PutBytes(out, k);
    PutBytes(out, v);
  }
  PutBytes(out, e.body);
  return out;
}

Result<StoredEvent> DecodeEvent(std::string_view bytes) {
  if (bytes.empty() || static_cast<uint8_t>(bytes[0]) != kVersion) {
    return Corruption("stored event has an unknown encoding version");
  }
  Reader r(bytes.substr(1));
  StoredEvent e;
  uint64_t received = 0, n_headers = 0;
  bool ok = r.Bytes(&e.id) && r.Bytes(&e.source) && r.Bytes(&e.resource) && r.Bytes(&e.action) &&
            r.Varint(&received) && r.Bytes(&e.installation_uuid) && r.Varint(&n_headers);
  if (ok && n_headers > 1024) ok = false;
  for (uint64_t i = 0; ok && i < n_headers; ++i) {
    std::string k, v;
    ok = r.Bytes(&k) && r.Bytes(&v);
    e.headers.emplace_back(std::move(k), std::move(v));
  }
  ok = ok && r.Bytes(&e.body) && r.empty();
  if (!ok) return Corruption("stored event is truncated or malformed");
  e.received_at_ms = static_cast<int64_t>(received);
  return e;
}

}  // namespace switchyard::storage
