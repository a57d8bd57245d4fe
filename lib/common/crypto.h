// Small cryptographic helpers over OpenSSL. All functions are thread-safe and allocation-light.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

namespace switchyard::crypto {

using Sha256Digest = std::array<uint8_t, 32>;

Sha256Digest Sha256(std::string_view data);
// Computes HMAC-SHA256(key, data) into *out. Returns false if OpenSSL fails (out is then unusable).
[[nodiscard]] bool HmacSha256(std::string_view key, std::string_view data, Sha256Digest* out);

// Lower-case hex of `n` bytes.
std::string HexLower(const uint8_t* data, size_t n);
inline std::string HexLower(const Sha256Digest& d) { return HexLower(d.data(), d.size()); }

// Compares a received lower-case hex HMAC (what Sentry sends, and what CONTRACT.md requires)
// against the expected digest in time that does not depend on where they differ. Returns false
// on any length or character mismatch, upper-case hex included.
bool HexDigestEquals(std::string_view received_hex, const Sha256Digest& expected);

// True only if `received_hex` is the hex HMAC-SHA256 of `data` under `key`. Constant time in the
// position of the first difference. Any internal failure answers false.
bool VerifyHmacSha256Hex(std::string_view key, std::string_view data,
                         std::string_view received_hex);

// Base64 (RFC 4648 §4, padded) and base64url (§5, unpadded, as JWTs use) of `in`.
std::string Base64(std::string_view in);
std::string Base64Url(std::string_view in);

// Fills `out` with cryptographically secure random bytes. Returns false on failure.
bool RandomBytes(uint8_t* out, size_t n);

// AES-256-GCM authenticated encryption. `key` must be 32 bytes. Seal returns
// nonce(12) || ciphertext || tag(16) with a fresh random nonce; `aad` is authenticated but not
// stored (pass the same value to Open, e.g. the record's key, to bind a value to its key).
// Returns false on a bad key size or an OpenSSL failure.
[[nodiscard]] bool AeadSeal(std::string_view key, std::string_view plaintext, std::string_view aad,
                            std::string* out);
// Reverses AeadSeal. False if the key, aad or any byte differs (tampering) or on failure.
[[nodiscard]] bool AeadOpen(std::string_view key, std::string_view sealed, std::string_view aad,
                            std::string* out);

}  // namespace switchyard::crypto
