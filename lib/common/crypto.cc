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

namespace {

// This thread's HMAC context, keyed with the last key used on the thread. Re-initialising it
// with a null key reuses that key's schedule, so verifying many webhooks of one source costs no
// context allocation, digest fetch or key setup (OpenSSL 3's fetch takes locks and hash lookups).
// The key copy lives as long as the thread and is wiped when the thread ends.
class ThreadHmac {
 public:
  ~ThreadHmac() {
    EVP_MAC_CTX_free(ctx_);
    Forget();
  }

  // Returns a context initialised with `key`, or null if OpenSSL fails.
  EVP_MAC_CTX* Init(std::string_view key) {
    if (!key_.empty() && key == key_) {
      if (EVP_MAC_init(ctx_, nullptr, 0, nullptr) == 1) return ctx_;
    }
    Forget();
    if (ctx_ == nullptr) {
      EVP_MAC* mac = HmacAlgorithm();
      if (mac == nullptr || (ctx_ = EVP_MAC_CTX_new(mac)) == nullptr) return nullptr;
    }
    char digest_name[] = "SHA256";
    OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest_name, 0),
                           OSSL_PARAM_construct_end()};
    if (EVP_MAC_init(ctx_, reinterpret_cast<const unsigned char*>(key.data()), key.size(),
                     params) != 1) {
      return nullptr;
    }
    key_.assign(key);
    return ctx_;
  }

 private:
  // Wipes the remembered key: the context no longer holds a key to reuse.
  void Forget() {
    OPENSSL_cleanse(key_.data(), key_.size());
    key_.clear();
  }

  EVP_MAC_CTX* ctx_ = nullptr;
  std::string key_;  // the key ctx_ is set up with; empty: none to reuse
};

}  // namespace

bool HmacSha256(std::string_view key, std::string_view data, Sha256Digest* out) {
  thread_local ThreadHmac hmac;
  EVP_MAC_CTX* ctx = hmac.Init(key);
  if (ctx == nullptr) return false;
  size_t len = 0;
  return EVP_MAC_update(ctx, reinterpret_cast<const unsigned char*>(data.data()), data.size()) ==
             1 &&
         EVP_MAC_final(ctx, out->data(), &len, out->size()) == 1 && len == out->size();
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
      unsigned is_digit = (c - '0') < 10;
      unsigned is_hex = (c - 'a') < 6;
      bad |= !(is_digit | is_hex);
      v = (v << 4) | ((is_digit ? (c - '0') : (c - 'a' + 10)) & 0xf);
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

std::string Base64(std::string_view in) {
  std::string out(4 * ((in.size() + 2) / 3) + 1, '\0');
  const int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                reinterpret_cast<const unsigned char*>(in.data()),
                                static_cast<int>(in.size()));
  out.resize(n < 0 ? 0 : static_cast<size_t>(n));
  return out;
}

std::string Base64Url(std::string_view in) {
  std::string out = Base64(in);
  while (!out.empty() && out.back() == '=') out.pop_back();
  for (char& c : out) {
    if (c == '+') c = '-';
    if (c == '/') c = '_';
  }
  return out;
}

bool RandomBytes(uint8_t* out, size_t n) { return RAND_bytes(out, static_cast<int>(n)) == 1; }

namespace {
constexpr size_t kAeadKeyBytes = 32;
constexpr size_t kNonceBytes = 12;
constexpr size_t kTagBytes = 16;

struct CipherCtx {
  EVP_CIPHER_CTX* ctx = EVP_CIPHER_CTX_new();
  ~CipherCtx() { EVP_CIPHER_CTX_free(ctx); }
};

const unsigned char* U(std::string_view s) {
  return reinterpret_cast<const unsigned char*>(s.data());
}
}  // namespace

bool AeadSeal(std::string_view key, std::string_view plaintext, std::string_view aad,
              std::string* out) {
  if (key.size() != kAeadKeyBytes || plaintext.size() > (1u << 30)) return false;
  CipherCtx c;
  if (c.ctx == nullptr) return false;
  std::string result(kNonceBytes + plaintext.size() + kTagBytes, '\0');
  auto* bytes = reinterpret_cast<unsigned char*>(result.data());
  if (!RandomBytes(bytes, kNonceBytes)) return false;
  int len = 0;
  if (EVP_EncryptInit_ex(c.ctx, EVP_aes_256_gcm(), nullptr, U(key), bytes) != 1) return false;
  if (!aad.empty() &&
      EVP_EncryptUpdate(c.ctx, nullptr, &len, U(aad), static_cast<int>(aad.size())) != 1) {
    return false;
  }
  if (EVP_EncryptUpdate(c.ctx, bytes + kNonceBytes, &len, U(plaintext),
                        static_cast<int>(plaintext.size())) != 1) {
    return false;
  }
  int tail = 0;
  if (EVP_EncryptFinal_ex(c.ctx, bytes + kNonceBytes + len, &tail) != 1) return false;
  if (EVP_CIPHER_CTX_ctrl(c.ctx, EVP_CTRL_GCM_GET_TAG, kTagBytes,
                          bytes + kNonceBytes + plaintext.size()) != 1) {
    return false;
  }
  *out = std::move(result);
  return true;
}

bool AeadOpen(std::string_view key, std::string_view sealed, std::string_view aad,
              std::string* out) {
  if (key.size() != kAeadKeyBytes || sealed.size() < kNonceBytes + kTagBytes) return false;
  CipherCtx c;
  if (c.ctx == nullptr) return false;
  const size_t n = sealed.size() - kNonceBytes - kTagBytes;
  std::string plain(n, '\0');
  int len = 0;
  if (EVP_DecryptInit_ex(c.ctx, EVP_aes_256_gcm(), nullptr, U(key), U(sealed)) != 1) return false;
  if (!aad.empty() &&
      EVP_DecryptUpdate(c.ctx, nullptr, &len, U(aad), static_cast<int>(aad.size())) != 1) {
    return false;
  }
  if (EVP_DecryptUpdate(c.ctx, reinterpret_cast<unsigned char*>(plain.data()), &len,
                        U(sealed) + kNonceBytes, static_cast<int>(n)) != 1) {
    return false;
  }
  std::string tag(sealed.substr(kNonceBytes + n));
  if (EVP_CIPHER_CTX_ctrl(c.ctx, EVP_CTRL_GCM_SET_TAG, kTagBytes, tag.data()) != 1) return false;
  int tail = 0;
  if (EVP_DecryptFinal_ex(c.ctx, reinterpret_cast<unsigned char*>(plain.data()) + len, &tail) !=
      1) {
    OPENSSL_cleanse(plain.data(), plain.size());
    return false;
  }
  *out = std::move(plain);
  return true;
}

}  // namespace switchyard::crypto
