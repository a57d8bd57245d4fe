// JsonDoc: a reusable, validated JSON document with read-only lookups by path segments.
// Backed by simdjson's DOM parser; the parser's buffers are kept across parses so that a
// thread can parse many request bodies without reallocating.
//
// Thread safety: not thread-safe. One thread at a time may call any method; keep one instance
// per thread (e.g. thread_local) on hot paths.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "common/status.h"

namespace switchyard::json {

class JsonDoc {
 public:
  static constexpr uint32_t kDefaultMaxDepth = 128;
  // The deepest nesting switchyard ever accepts (server.max_json_depth's ceiling). Documents it
  // stored or fetched are re-parsed with this limit, so a webhook accepted at ingest always
  // parses again in the delivery path, whatever max_json_depth was then.
  static constexpr uint32_t kMaxDepth = 1024;

  // `max_depth` is the deepest nesting of objects/arrays accepted: a document with exactly
  // `max_depth` nested containers parses, one more is rejected. No allocation happens here.
  explicit JsonDoc(uint32_t max_depth = kDefaultMaxDepth);
  ~JsonDoc();
  // A moved-from JsonDoc is empty (every lookup reports "missing") and may Parse again.
  JsonDoc(JsonDoc&&) noexcept;
  JsonDoc& operator=(JsonDoc&&) noexcept;
  JsonDoc(const JsonDoc&) = delete;
  JsonDoc& operator=(const JsonDoc&) = delete;

  // Parses and fully validates `bytes` (structure, UTF-8, numbers, no trailing content, depth).
  // `bytes` is copied; the caller may free it after the call. Invalidates every result (in
  // particular every string_view) returned before. Errors:
  //   InvalidArgument "invalid JSON: <reason>" or "JSON nesting deeper than <max_depth>";
  //   ResourceExhausted if memory for the parser cannot be allocated.
  // Integers outside the 64-bit range and numbers outside double range are rejected as invalid.
  // After a failure the document is empty: every lookup reports "missing".
  Status Parse(std::string_view bytes);

  // True after a successful Parse (until the next failed one).
  bool parsed() const;

  // Lookups. Each segment names an object key (exact, case-sensitive; first one wins for
  // duplicate keys), or, when the current value is an array, a decimal index written
  // canonically ("0", "17"; no sign, no leading zeros). No segments means the root value.
  // All lookups report "missing" (nullopt / false) when the path does not resolve or no
  // document is parsed.
  //
  // GetText: a string's unescaped UTF-8 content; true/false/null as those words; an integer
  // as its exact decimal value; a floating-point number in simdjson's shortest round-trip
  // form ("1.5", "100.0" for 1E2, "1e+100"), which is not necessarily the text as written
  // because the DOM keeps only the parsed value; an object or array as compact JSON.
  std::optional<std::string> GetText(std::span<const std::string> path) const;
  std::optional<std::string> GetText(std::initializer_list<std::string_view> path) const;
  // GetJson: the value as compact JSON (strings quoted and escaped; numbers as in GetText).
  std::optional<std::string> GetJson(std::span<const std::string> path) const;
  std::optional<std::string> GetJson(std::initializer_list<std::string_view> path) const;
  // GetString: the content of a string value only (nullopt for any other type). The view
  // points into this object and is valid until the next Parse or destruction. No allocation.
  std::optional<std::string_view> GetString(std::span<const std::string> path) const;
  std::optional<std::string_view> GetString(std::initializer_list<std::string_view> path) const;
  // Has: true if the path resolves to any value, including null.
  bool Has(std::span<const std::string> path) const;
  bool Has(std::initializer_list<std::string_view> path) const;

 private:
  struct Impl;
  uint32_t max_depth_;
  std::unique_ptr<Impl> impl_;  // null until the first Parse and after a move
};

}  // namespace switchyard::json
