#include "common/crypto.h"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/rand.h>

namespace switchyard::crypto {
namespace {

// The HMAC implementation, fetched once (EVP_MAC_fetch is costly; the handle is thread-safe).
EVP_MAC* HmacAlgorithm() {
  static EVP_MAC* mac = EVP_MAC_fetch(nullptr, "HMAC", nullptr);
  return mac;
}

}  // namespace

Sha256Digest Sha256(std::string_view data) {
  Sha256Digest out{};
  unsigned int len = 0;
  if (EVP_Digest(data.data(), data.size(), out.data(), &len, EVP_sha256(), nullptr) != 1 ||
      len != out.size()) {
    // Never reached in practice; a zero digest only weakens dedupe, never authentication.
    out.fill(0);
  }
  return out;
}

bool HmacSha256(std::string_view key, std::string_view data, Sha256Digest* out) {
  EVP_MAC* mac = HmacAlgorithm();
  if (mac == nullptr) return false;
  EVP_MAC_CTX* ctx = EVP_MAC_CTX_new(mac);
  if (ctx == nullptr) return false;
  char digest_name[] = "SHA256";
  OSSL_PARAM params[] = {
      OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest_name, 0),
      OSSL_PARAM_construct_end()};
  size_t len = 0;
  bool ok = EVP_MAC_init(ctx, reinterpret_cast<const unsigned char*>(key.data()), key.size(),
                         params) == 1 &&
            EVP_MAC_update(ctx, reinterpret_cast<const unsigned char*>(data.data()),
                           data.size()) == 1 &&
            EVP_MAC_final(ctx, out->data(), &len, out->size()) == 1 && len == out->size();
  EVP_MAC_CTX_free(ctx);
  return ok;
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
  // Decode without data-dependent branches; invalid characters poison `bad`.
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

bool VerifyHmacSha256Hex(std::string_view key, std::string_view data,
                         std::string_view received_hex) {
  Sha256Digest expected;
  if (!HmacSha256(key, data, &expected)) return false;  // a crypto failure never authenticates
  return HexDigestEquals(received_hex, expected);
}

bool RandomBytes(uint8_t* out, size_t n) { return RAND_bytes(out, static_cast<int>(n)) == 1; }

}  // namespace switchyard::crypto
