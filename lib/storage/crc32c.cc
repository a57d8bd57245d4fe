#include "storage/crc32c.h"

#include <array>
#include <cstring>
#include <string>

#if defined(__x86_64__)
#include <nmmintrin.h>
#endif

namespace switchyard::storage::crc32c {
namespace {

constexpr uint32_t kPoly = 0x82f63b78;  // Castagnoli, bit-reversed

constexpr std::array<uint32_t, 256> MakeTable() {
  std::array<uint32_t, 256> t{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ kPoly : c >> 1;
    t[i] = c;
  }
  return t;
}
constexpr std::array<uint32_t, 256> kTable = MakeTable();

#if defined(__x86_64__)
__attribute__((target("sse4.2"))) uint32_t ExtendSse42(uint32_t crc, const char* data, size_t n) {
  uint64_t c = ~crc;
  const char* p = data;
  for (; n >= 8; n -= 8, p += 8) {
    uint64_t word;
    std::memcpy(&word, p, 8);
    c = _mm_crc32_u64(c, word);
  }
  uint32_t c32 = static_cast<uint32_t>(c);
  for (; n > 0; --n, ++p) c32 = _mm_crc32_u8(c32, static_cast<uint8_t>(*p));
  return ~c32;
}

bool HaveSse42() {
  static const bool have = [] {
    __builtin_cpu_init();  // may run before the CPU model's own static constructor
    return __builtin_cpu_supports("sse4.2") != 0;
  }();
  return have;
}
#else
bool HaveSse42() { return false; }
#endif

// a * b modulo the polynomial, both as bit-reversed polynomials (bit 31 is x^0).
constexpr uint32_t MultiplyModP(uint32_t a, uint32_t b) {
  uint32_t product = 0;
  for (uint32_t bit = 1u << 31; bit != 0; bit >>= 1) {
    if (a & bit) product ^= b;
    b = (b & 1) ? (b >> 1) ^ kPoly : b >> 1;  // b *= x
  }
  return product;
}

// kZeroBytes[k] = x^(8 * 2^k) modulo the polynomial: the factor that appends 2^k zero bytes.
constexpr std::array<uint32_t, 64> MakeZeroBytesTable() {
  std::array<uint32_t, 64> t{};
  t[0] = 1u << 23;  // x^8
  for (size_t k = 1; k < t.size(); ++k) t[k] = MultiplyModP(t[k - 1], t[k - 1]);
  return t;
}
constexpr std::array<uint32_t, 64> kZeroBytes = MakeZeroBytesTable();

}  // namespace

const char* Implementation() {
#if defined(SWITCHYARD_ROCKSDB_CRC32C_OVERRIDE)
  return HaveSse42() ? "sse4.2" : "table";
#else
  return "rocksdb";
#endif
}

uint32_t ExtendPortable(uint32_t crc, const char* data, size_t n) {
  uint32_t c = ~crc;
  for (size_t i = 0; i < n; ++i) c = kTable[(c ^ static_cast<uint8_t>(data[i])) & 0xff] ^ (c >> 8);
  return ~c;
}

uint32_t Extend(uint32_t crc, const char* data, size_t n) {
#if defined(__x86_64__)
  if (HaveSse42()) return ExtendSse42(crc, data, n);
#endif
  return ExtendPortable(crc, data, n);
}

uint32_t Combine(uint32_t crc1, uint32_t crc2, size_t len2) {
  // CRC(A B) = CRC(A) * x^(8 len(B)) + CRC(B): the pre- and post-inversions cancel out.
  for (size_t k = 0; len2 != 0; len2 >>= 1, ++k) {
    if (len2 & 1) crc1 = MultiplyModP(kZeroBytes[k], crc1);
  }
  return crc1 ^ crc2;
}

}  // namespace switchyard::storage::crc32c

// The override of RocksDB's util/crc32c.cc (see crc32c.h). Same signatures as RocksDB 7.8.
#if defined(SWITCHYARD_ROCKSDB_CRC32C_OVERRIDE)
namespace rocksdb::crc32c {
std::string IsFastCrc32Supported() {
  return std::string(switchyard::storage::crc32c::HaveSse42() ? "Supported" : "Not supported") +
         " on x86 (switchyard, " + switchyard::storage::crc32c::Implementation() + ")";
}
uint32_t Extend(uint32_t crc, const char* data, size_t n) {
  return switchyard::storage::crc32c::Extend(crc, data, n);
}
uint32_t Crc32cCombine(uint32_t crc1, uint32_t crc2, size_t crc2len) {
  return switchyard::storage::crc32c::Combine(crc1, crc2, crc2len);
}
}  // namespace rocksdb::crc32c
#endif
