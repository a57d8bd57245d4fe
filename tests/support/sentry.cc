#include "support/sentry.h"

#include <boost/json.hpp>
#include <algorithm>
#include <atomic>
#include <cstdio>
#include <ctime>
#include <filesystem>

#include "common/crypto.h"
#include "support/temp_dir.h"

namespace switchyard::testing {
namespace {

// Writes `v` as compact JSON, escaping every non-ASCII code point as \uXXXX (surrogate pairs
// above the BMP), like Python's json.dumps with ensure_ascii=True.
void WriteAscii(const boost::json::value& v, std::string& out);

void WriteString(std::string_view s, std::string& out) {
  out += '"';
  for (size_t i = 0; i < s.size();) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    uint32_t cp;
    size_t len;
    if (c < 0x80) { cp = c; len = 1; }
    else if ((c >> 5) == 6) { cp = c & 0x1f; len = 2; }
    else if ((c >> 4) == 14) { cp = c & 0x0f; len = 3; }
    else { cp = c & 0x07; len = 4; }
    for (size_t k = 1; k < len && i + k < s.size(); ++k) cp = (cp << 6) | (s[i + k] & 0x3f);
    i += len;
    char buf[16];
    if (cp == '"') out += "\\\"";
    else if (cp == '\\') out += "\\\\";
    else if (cp == '\n') out += "\\n";
    else if (cp == '\r') out += "\\r";
    else if (cp == '\t') out += "\\t";
    else if (cp < 0x20 || (cp >= 0x7f && cp < 0x10000)) {
      snprintf(buf, sizeof buf, "\\u%04x", cp);
      out += buf;
    } else if (cp >= 0x10000) {
      uint32_t v = cp - 0x10000;
      snprintf(buf, sizeof buf, "\\u%04x\\u%04x", 0xd800 + (v >> 10), 0xdc00 + (v & 0x3ff));
      out += buf;
    } else {
      out += static_cast<char>(cp);
    }
  }
  out += '"';
}

void WriteAscii(const boost::json::value& v, std::string& out) {
  if (v.is_object()) {
    out += '{';
    bool first = true;
    for (const auto& kv : v.get_object()) {
      if (!first) out += ',';
      first = false;
      WriteString(kv.key(), out);
      out += ':';
      WriteAscii(kv.value(), out);
    }
    out += '}';
  } else if (v.is_array()) {
    out += '[';
    bool first = true;
    for (const auto& e : v.get_array()) {
      if (!first) out += ',';
      first = false;
      WriteAscii(e, out);
    }
    out += ']';
  } else if (v.is_string()) {
    WriteString(v.get_string(), out);
  } else {
    out += boost::json::serialize(v);
  }
}

}  // namespace

std::string CompactPayload(const std::string& file_name) {
  std::string text = ReadFile(std::string(SWITCHYARD_PAYLOADS_DIR) + "/" + file_name);
  std::string out;
  WriteAscii(boost::json::parse(text), out);
  return out;
}

std::vector<std::string> WebhookPayloadFiles() {
  std::vector<std::string> files;
  for (const auto& e : std::filesystem::directory_iterator(SWITCHYARD_PAYLOADS_DIR)) {
    std::string name = e.path().filename().string();
    if (!name.ends_with(".json") || name.starts_with("api.") || name.starts_with("ui-schema")) {
      continue;
    }
    files.push_back(name);
  }
  std::sort(files.begin(), files.end());
  return files;
}

std::string SentrySignature(const std::string& secret, const std::string& body) {
  crypto::Sha256Digest d;
  if (!crypto::HmacSha256(secret, body, &d)) return "hmac-failed";
  return crypto::HexLower(d);
}

std::vector<std::pair<std::string, std::string>> SentryHeaders(const std::string& resource,
                                                               const std::string& signature) {
  static std::atomic<unsigned> counter{0};  // tests post from several threads
  char request_id[40];
  snprintf(request_id, sizeof request_id, "%032x", ++counter);
  return {{"Content-Type", "application/json"},
          {"Request-ID", request_id},
          {"Sentry-Hook-Resource", resource},
          {"Sentry-Hook-Timestamp", std::to_string(time(nullptr))},
          {"Sentry-Hook-Signature", signature}};
}

}  // namespace switchyard::testing
