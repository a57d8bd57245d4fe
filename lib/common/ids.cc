#include "common/ids.h"

#include <random>

#include "common/crypto.h"

namespace switchyard {
namespace {
constexpr char kCrockford[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

std::mt19937_64& ThreadRng() {
  thread_local std::mt19937_64 rng = [] {
    uint64_t seed = 0;
    if (!crypto::RandomBytes(reinterpret_cast<uint8_t*>(&seed), sizeof seed)) {
      seed = std::random_device{}();
    }
    return std::mt19937_64(seed);
  }();
  return rng;
}
}  // namespace

std::string NewUlid(int64_t now_ms) {
  std::string out(26, '0');
  uint64_t t = static_cast<uint64_t>(now_ms) & ((1ULL << 48) - 1);
  for (int i = 9; i >= 0; --i) {
    out[i] = kCrockford[t & 31];
    t >>= 5;
  }
  auto& rng = ThreadRng();
  uint64_t r1 = rng(), r2 = rng();
  // 80 random bits: 16 characters of 5 bits.
  for (int i = 0; i < 16; ++i) {
    uint64_t& src = i < 8 ? r1 : r2;
    out[10 + i] = kCrockford[src & 31];
    src >>= 5;
  }
  return out;
}

std::string UlidLowerBound(int64_t ms) {
  std::string out(26, '0');
  uint64_t t = static_cast<uint64_t>(ms < 0 ? 0 : ms) & ((1ULL << 48) - 1);
  for (int i = 9; i >= 0; --i) {
    out[i] = kCrockford[t & 31];
    t >>= 5;
  }
  return out;
}

int64_t UlidMillis(const std::string& id) {
  if (id.size() != 26) return -1;
  int64_t t = 0;
  for (int i = 0; i < 10; ++i) {
    const char* p = std::char_traits<char>::find(kCrockford, 32, id[i]);
    if (!p) return -1;
    t = (t << 5) | (p - kCrockford);
  }
  return t;
}

}  // namespace switchyard
