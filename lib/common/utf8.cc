#include "common/utf8.h"

namespace switchyard {

size_t Utf8SequenceLength(std::string_view s, size_t* bad) {
  const auto c0 = static_cast<unsigned char>(s[0]);
  *bad = 1;
  if (c0 < 0x80) return 1;
  size_t len = 0;
  unsigned char lo = 0x80;
  unsigned char hi = 0xBF;  // allowed range of the second byte
  if (c0 >= 0xC2 && c0 <= 0xDF) {
    len = 2;
  } else if (c0 >= 0xE0 && c0 <= 0xEF) {
    len = 3;
    if (c0 == 0xE0) lo = 0xA0;  // no overlong forms
    if (c0 == 0xED) hi = 0x9F;  // no surrogates
  } else if (c0 >= 0xF0 && c0 <= 0xF4) {
    len = 4;
    if (c0 == 0xF0) lo = 0x90;  // no overlong forms
    if (c0 == 0xF4) hi = 0x8F;  // nothing above U+10FFFF
  } else {
    return 0;  // continuation byte, C0, C1 or F5..FF
  }
  for (size_t i = 1; i < len; ++i) {
    if (i >= s.size()) {
      *bad = i;
      return 0;
    }
    const auto c = static_cast<unsigned char>(s[i]);
    const bool ok = i == 1 ? (c >= lo && c <= hi) : (c & 0xC0) == 0x80;
    if (!ok) {
      *bad = i;
      return 0;
    }
  }
  return len;
}

}  // namespace switchyard
