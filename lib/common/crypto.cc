#include "common/crypto.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

namespace switchyard::crypto {

Sha256Digest Sha256(std::string_view data) {
  Sha256Digest out;
  SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(), out.data());
  return out;
}

Sha256Digest HmacSha256(std::string_view key, std::string_view data) {
  Sha256Digest out{};
  unsigned int len = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(data.data()), data.size(), out.data(), &len);
  return out;
}

std::string HexLower(const uint8_t* data, size_t n) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string s(n * 2, '\0');
  for (size_t i = 0; i < n; ++i) {
    s[2 * i] = kHex[data[i] >> 4];
    s[2 * i + 1] = kHex[data[i] & 0xf];
  }
  return s;
}

bool HexDigestEquals(std::string_view received_hex, const Sha256Digest& expected) {
  if (received_hex.size() != expected.size() * 2) return false;
  // Decode without data-dependent branches on the secret side; invalid characters poison `bad`.
  uint8_t decoded[32];
  unsigned bad = 0;
  for (size_t i = 0; i < expected.size(); ++i) {
    unsigned v = 0;
    for (int k = 0; k < 2; ++k) {
      unsigned c = static_cast<unsigned char>(received_hex[2 * i + k]);
      unsigned lc = c | 0x20;
      unsigned is_digit = (c - '0') < 10;
      unsigned is_hex = (lc - 'a') < 6;
      bad |= !(is_digit | is_hex);
      v = (v << 4) | ((is_digit ? (c - '0') : (lc - 'a' + 10)) & 0xf);
    }
    decoded[i] = static_cast<uint8_t>(v);
  }
  return (CRYPTO_memcmp(decoded, expected.data(), expected.size()) == 0) & (bad == 0);
}

bool RandomBytes(uint8_t* out, size_t n) { return RAND_bytes(out, static_cast<int>(n)) == 1; }

}  // namespace switchyard::crypto
