// ASCII-only case mapping, independent of the C locale: for HTTP field names, host names, the
// template filters and other protocol text. Bytes outside A-Z / a-z, including every byte of a
// UTF-8 multi-byte sequence, are left unchanged.
#pragma once

#include <string>
#include <string_view>

namespace switchyard {

inline void AsciiLowerInPlace(std::string& s) {
  for (char& c : s) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
}

inline void AsciiUpperInPlace(std::string& s) {
  for (char& c : s) {
    if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
  }
}

inline std::string AsciiLower(std::string_view s) {
  std::string out(s);
  AsciiLowerInPlace(out);
  return out;
}

}  // namespace switchyard
