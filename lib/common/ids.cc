#include "common/ids.h"

#include <limits>
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
  // The 80 random bits, as the number hi:lo (16 + 64 bits). Within one millisecond a thread's
  // ids count up from a random start (ULID's monotonic mode), so one thread's ids sort in the
  // order it made them: events of the same millisecond keep their arrival order, and RocksDB's
  // memtable takes each insert at the end instead of searching for its place.
  thread_local int64_t last_ms = std::numeric_limits<int64_t>::min();  // no id made yet
  thread_local uint64_t hi = 0, lo = 0;
  const bool counted_on = now_ms == last_ms && (++lo != 0 || (hi = (hi + 1) & 0xffff) != 0);
  if (!counted_on) {  // a new millisecond (or, once in 2^80, the count ran out): a fresh start
    auto& rng = ThreadRng();
    hi = rng() & 0xffff;
    lo = rng();
    last_ms = now_ms;
  }
  uint64_t h = hi, l = lo;
  for (int i = 25; i >= 10; --i) {  // 16 characters of 5 bits, most significant first
    out[i] = kCrockford[l & 31];
    l = (l >> 5) | (h << 59);
    h >>= 5;
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
