#include "storage/crc32c.h"

#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <string>
#include <vector>

namespace rocksdb::crc32c {
std::string IsFastCrc32Supported();
uint32_t Extend(uint32_t crc, const char* data, size_t n);
}  // namespace rocksdb::crc32c

namespace switchyard::storage::crc32c {
namespace {

uint32_t Of(const std::string& s) { return Extend(0, s.data(), s.size()); }

std::string RandomBytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::string s(n, '\0');
  for (char& c : s) c = static_cast<char>(rng());
  return s;
}

// RFC 3720 appendix B.4 and the usual check value.
TEST(Crc32cTest, MatchesThePublishedCheckValues) {
  EXPECT_EQ(Of("123456789"), 0xE3069283u);
  EXPECT_EQ(Of(std::string(32, '\0')), 0x8A9136AAu);
  EXPECT_EQ(Of(std::string(32, '\xff')), 0x62A8AB43u);
  std::string up(32, '\0'), down(32, '\0');
  for (int i = 0; i < 32; ++i) up[i] = static_cast<char>(i), down[i] = static_cast<char>(31 - i);
  EXPECT_EQ(Of(up), 0x46DD794Eu);
  EXPECT_EQ(Of(down), 0x113FDB5Cu);
  EXPECT_EQ(Of(""), 0u);
  EXPECT_EQ(ExtendPortable(0, "123456789", 9), 0xE3069283u);
}

TEST(Crc32cTest, TheInstructionAgreesWithTheTableAtEveryLengthAndAlignment) {
  const std::string data = RandomBytes(4096 + 8, 1);
  for (size_t offset = 0; offset < 8; ++offset) {
    for (size_t n = 0; n <= 300; ++n) {
      ASSERT_EQ(Extend(0x12345678u, data.data() + offset, n),
                ExtendPortable(0x12345678u, data.data() + offset, n))
          << "offset " << offset << " length " << n;
    }
    ASSERT_EQ(Extend(0, data.data() + offset, 4096), ExtendPortable(0, data.data() + offset, 4096));
  }
}

TEST(Crc32cTest, ExtendingInPiecesEqualsOnePass) {
  const std::string data = RandomBytes(1000, 2);
  const uint32_t whole = Of(data);
  for (size_t cut : {0, 1, 7, 8, 9, 500, 999, 1000}) {
    EXPECT_EQ(Extend(Extend(0, data.data(), cut), data.data() + cut, data.size() - cut), whole)
        << "cut at " << cut;
  }
}

TEST(Crc32cTest, CombineEqualsTheChecksumOfTheConcatenation) {
  std::mt19937 rng(3);
  for (size_t len2 : {0, 1, 2, 3, 8, 64, 255, 256, 1000, 4097, 65536 + 17}) {
    const std::string a = RandomBytes(rng() % 300, rng());
    const std::string b = RandomBytes(len2, rng());
    EXPECT_EQ(Combine(Of(a), Of(b), b.size()), Of(a + b)) << "len2 " << len2;
  }
}

#if defined(SWITCHYARD_ROCKSDB_CRC32C_OVERRIDE)
TEST(Crc32cTest, NamesTheInstructionWhereTheCpuHasIt) {
  EXPECT_EQ(rocksdb::crc32c::Extend(0, "123456789", 9), 0xE3069283u);
  if (__builtin_cpu_supports("sse4.2")) {
    EXPECT_STREQ(Implementation(), "sse4.2");
    EXPECT_EQ(rocksdb::crc32c::IsFastCrc32Supported(), "Supported on x86 (switchyard, sse4.2)");
  }
}
#endif

}  // namespace
}  // namespace switchyard::storage::crc32c
