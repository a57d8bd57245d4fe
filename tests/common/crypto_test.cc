#include "common/crypto.h"

#include <gtest/gtest.h>

#include <string>
#include <thread>
#include <vector>

namespace switchyard::crypto {
namespace {

std::string Hmac(std::string_view key, std::string_view data) {
  Sha256Digest d;
  EXPECT_TRUE(HmacSha256(key, data, &d));
  return HexLower(d);
}

// RFC 4231 test cases 2 and 6 (a short key, and a key longer than the block size, which HMAC
// hashes first), plus the RFC 4231 case 1 key.
const std::string kShortKey = "Jefe";
const std::string kShortData = "what do ya want for nothing?";
const std::string kShortMac = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843";
const std::string kLongKey(131, '\xaa');
const std::string kLongData = "Test Using Larger Than Block-Size Key - Hash Key First";
const std::string kLongMac = "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54";
const std::string kCase1Key(20, '\x0b');
const std::string kCase1Data = "Hi There";
const std::string kCase1Mac = "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7";

TEST(HmacSha256Test, MatchesRfc4231Vectors) {
  EXPECT_EQ(Hmac(kShortKey, kShortData), kShortMac);
  EXPECT_EQ(Hmac(kLongKey, kLongData), kLongMac);
  EXPECT_EQ(Hmac(kCase1Key, kCase1Data), kCase1Mac);
}

// The per-thread context keeps the last key's schedule: a different key must never be answered
// with the previous one, and returning to a key must still give its MAC.
TEST(HmacSha256Test, AlternatingKeysOnOneThreadEachGetTheirOwnMac) {
  for (int i = 0; i < 50; ++i) {
    ASSERT_EQ(Hmac(kShortKey, kShortData), kShortMac) << i;
    ASSERT_EQ(Hmac(kShortKey, kShortData), kShortMac) << i;  // same key twice: the reused schedule
    ASSERT_EQ(Hmac(kLongKey, kLongData), kLongMac) << i;
    ASSERT_EQ(Hmac(kCase1Key, kCase1Data), kCase1Mac) << i;
  }
}

TEST(HmacSha256Test, KeysThatShareAPrefixAreDifferentKeys) {
  const std::string mac = Hmac("secret", "body");
  EXPECT_NE(Hmac("secret2", "body"), mac);
  EXPECT_NE(Hmac("secre", "body"), mac);
  EXPECT_EQ(Hmac("secret", "body"), mac);
}

TEST(HmacSha256Test, ThreadsVerifyingWithDifferentKeysDoNotInterfere) {
  std::vector<std::thread> threads;
  std::vector<int> failures(4, 0);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([t, &failures] {
      for (int i = 0; i < 500; ++i) {
        const bool odd = (i + t) % 2 == 1;
        Sha256Digest d;
        const std::string& key = odd ? kShortKey : kLongKey;
        const std::string& data = odd ? kShortData : kLongData;
        const std::string& mac = odd ? kShortMac : kLongMac;
        if (!HmacSha256(key, data, &d) || HexLower(d) != mac) ++failures[t];
      }
    });
  }
  for (auto& th : threads) th.join();
  for (int t = 0; t < 4; ++t) EXPECT_EQ(failures[t], 0) << "thread " << t;
}

TEST(VerifyHmacSha256HexTest, AcceptsOnlyTheLowerCaseHexSignature) {
  EXPECT_TRUE(VerifyHmacSha256Hex(kShortKey, kShortData, kShortMac));
  // CONTRACT.md: the header must equal the lower-case hex HMAC.
  std::string upper = kShortMac;
  for (char& c : upper) c = static_cast<char>(toupper(static_cast<unsigned char>(c)));
  ASSERT_NE(upper, kShortMac);
  EXPECT_FALSE(VerifyHmacSha256Hex(kShortKey, kShortData, upper));
  std::string one_upper = kShortMac;
  for (char& c : one_upper) {
    if (c >= 'a' && c <= 'f') {
      c = static_cast<char>(c - 'a' + 'A');
      break;
    }
  }
  EXPECT_FALSE(VerifyHmacSha256Hex(kShortKey, kShortData, one_upper));
  EXPECT_FALSE(VerifyHmacSha256Hex(kShortKey, kShortData + " ", kShortMac));
  EXPECT_FALSE(VerifyHmacSha256Hex(kLongKey, kShortData, kShortMac));
  EXPECT_FALSE(VerifyHmacSha256Hex(kShortKey, kShortData, kShortMac.substr(1)));
  std::string bad = kShortMac;
  bad[10] = 'g';
  EXPECT_FALSE(VerifyHmacSha256Hex(kShortKey, kShortData, bad));
}

}  // namespace
}  // namespace switchyard::crypto
