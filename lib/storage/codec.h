// Internal to lib/storage: the little binary codec of stored records (LEB128 varints and
// length-prefixed byte strings). Decoding never reads past its input.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace switchyard::storage {

inline void PutVarint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}

inline void PutBytes(std::string& out, std::string_view s) {
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
  bool Byte(uint8_t* b) {
    if (in_.empty()) return false;
    *b = static_cast<uint8_t>(in_[0]);
    in_.remove_prefix(1);
    return true;
  }
  std::string_view Rest() const { return in_; }
  void Skip(size_t n) { in_.remove_prefix(n); }
  bool empty() const { return in_.empty(); }

 private:
  std::string_view in_;
};

}  // namespace switchyard::storage
