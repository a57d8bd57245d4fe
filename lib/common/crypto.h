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

// Compares a received lower/upper-case hex HMAC against the expected digest in time that does
// not depend on where they differ. Returns false on any length or character mismatch.
bool HexDigestEquals(std::string_view received_hex, const Sha256Digest& expected);

// True only if `received_hex` is the hex HMAC-SHA256 of `data` under `key`. Constant time in the
// position of the first difference. Any internal failure answers false.
bool VerifyHmacSha256Hex(std::string_view key, std::string_view data,
                         std::string_view received_hex);

// Fills `out` with cryptographically secure random bytes. Returns false on failure.
bool RandomBytes(uint8_t* out, size_t n);

}  // namespace switchyard::crypto
