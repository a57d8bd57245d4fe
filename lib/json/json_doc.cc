#include "json/json_doc.h"

#include <simdjson.h>

#include <algorithm>
#include <charconv>
#include <cstring>
#include <vector>

namespace switchyard::json {

namespace {

// Initial parser capacity in bytes; the parser grows to the largest document seen and keeps it.
constexpr size_t kInitialCapacity = 16 * 1024;

// Short messages for the errors simdjson reports while parsing a whole document.
const char* ParseErrorReason(simdjson::error_code err) {
  switch (err) {
    case simdjson::TAPE_ERROR:
    case simdjson::INCOMPLETE_ARRAY_OR_OBJECT:
    case simdjson::TRAILING_CONTENT:
      return "bad structure (missing or extra comma, colon, brace or bracket, or trailing content)";
    case simdjson::STRING_ERROR:
      return "bad string (invalid escape or unpaired surrogate)";
    case simdjson::UNESCAPED_CHARS:
      return "unescaped control character in string";
    case simdjson::UNCLOSED_STRING:
      return "unterminated string";
    case simdjson::T_ATOM_ERROR:
    case simdjson::F_ATOM_ERROR:
    case simdjson::N_ATOM_ERROR:
      return "bad literal (expected true, false or null)";
    case simdjson::NUMBER_ERROR:
    case simdjson::NUMBER_OUT_OF_RANGE:
      return "bad number or number out of range";
    case simdjson::UTF8_ERROR:
      return "invalid UTF-8";
    case simdjson::EMPTY:
      return "empty document";
    case simdjson::CAPACITY:
      return "document too large";
    default:
      return nullptr;
  }
}

// True if `seg` is a canonical decimal index ("0", "12"; no sign or leading zero) that fits
// in size_t; stores it in *index.
bool ParseIndex(std::string_view seg, size_t* index) {
  if (seg.empty() || (seg.size() > 1 && seg[0] == '0')) return false;
  const char* end = seg.data() + seg.size();
  auto [ptr, ec] = std::from_chars(seg.data(), end, *index);
  return ec == std::errc() && ptr == end;
}

}  // namespace

struct JsonDoc::Impl {
  simdjson::dom::parser parser;
  std::vector<char> buffer;  // copy of the input plus SIMDJSON_PADDING, reused across parses
  simdjson::dom::element root;
  bool parsed = false;
  bool allocated = false;

  // Resolves `path` from the root. Returns false if any segment does not resolve.
  template <typename Range>
  bool Find(const Range& path, simdjson::dom::element* out) const {
    if (!parsed) return false;
    simdjson::dom::element cur = root;
    for (const auto& segment : path) {
      const std::string_view seg(segment);
      simdjson::dom::object obj;
      simdjson::dom::array arr;
      if (cur.get_object().get(obj) == simdjson::SUCCESS) {
        if (obj.at_key(seg).get(cur) != simdjson::SUCCESS) return false;
      } else if (cur.get_array().get(arr) == simdjson::SUCCESS) {
        size_t index = 0;
        if (!ParseIndex(seg, &index) || index >= arr.size()) return false;
        if (arr.at(index).get(cur) != simdjson::SUCCESS) return false;
      } else {
        return false;
      }
    }
    *out = cur;
    return true;
  }

  template <typename Range>
  std::optional<std::string> GetText(const Range& path) const {
    simdjson::dom::element e;
    if (!Find(path, &e)) return std::nullopt;
    switch (e.type()) {
      case simdjson::dom::element_type::STRING: {
        std::string_view s;
        if (e.get_string().get(s) != simdjson::SUCCESS) return std::nullopt;
        return std::string(s);
      }
      case simdjson::dom::element_type::INT64: {
        int64_t v = 0;
        if (e.get_int64().get(v) != simdjson::SUCCESS) return std::nullopt;
        return std::to_string(v);
      }
      case simdjson::dom::element_type::UINT64: {
        uint64_t v = 0;
        if (e.get_uint64().get(v) != simdjson::SUCCESS) return std::nullopt;
        return std::to_string(v);
      }
      case simdjson::dom::element_type::BOOL: {
        bool v = false;
        if (e.get_bool().get(v) != simdjson::SUCCESS) return std::nullopt;
        return std::string(v ? "true" : "false");
      }
      case simdjson::dom::element_type::NULL_VALUE:
        return std::string("null");
      case simdjson::dom::element_type::DOUBLE:
      case simdjson::dom::element_type::ARRAY:
      case simdjson::dom::element_type::OBJECT:
        return simdjson::to_string(e);
    }
    return std::nullopt;
  }

  template <typename Range>
  std::optional<std::string> GetJson(const Range& path) const {
    simdjson::dom::element e;
    if (!Find(path, &e)) return std::nullopt;
    return simdjson::to_string(e);
  }

  template <typename Range>
  std::optional<std::string_view> GetString(const Range& path) const {
    simdjson::dom::element e;
    std::string_view s;
    if (!Find(path, &e) || e.get_string().get(s) != simdjson::SUCCESS) return std::nullopt;
    return s;
  }

  template <typename Range>
  bool Has(const Range& path) const {
    simdjson::dom::element e;
    return Find(path, &e);
  }
};

JsonDoc::JsonDoc(uint32_t max_depth) : max_depth_(max_depth) {}
JsonDoc::~JsonDoc() = default;
JsonDoc::JsonDoc(JsonDoc&&) noexcept = default;
JsonDoc& JsonDoc::operator=(JsonDoc&&) noexcept = default;

Status JsonDoc::Parse(std::string_view bytes) {
  if (!impl_) impl_ = std::make_unique<Impl>();
  Impl& impl = *impl_;
  impl.parsed = false;
  if (!impl.allocated) {
    // simdjson counts the document itself as one level, so allow one more than max_depth_.
    const simdjson::error_code err = impl.parser.allocate(std::max(kInitialCapacity, bytes.size()),
                                                          static_cast<size_t>(max_depth_) + 1);
    if (err != simdjson::SUCCESS) {
      return ResourceExhausted(std::string("cannot allocate JSON parser: ") +
                               simdjson::error_message(err));
    }
    impl.allocated = true;
  }
  impl.buffer.resize(bytes.size() + simdjson::SIMDJSON_PADDING);
  if (!bytes.empty()) std::memcpy(impl.buffer.data(), bytes.data(), bytes.size());
  // Zero padding keeps the bytes after the input deterministic.
  std::memset(impl.buffer.data() + bytes.size(), 0, simdjson::SIMDJSON_PADDING);
  const simdjson::error_code err =
      impl.parser.parse(impl.buffer.data(), bytes.size(), /*realloc_if_needed=*/false)
          .get(impl.root);
  if (err == simdjson::SUCCESS) {
    impl.parsed = true;
    return Status::Ok();
  }
  if (err == simdjson::DEPTH_ERROR) {
    return InvalidArgument("JSON nesting deeper than " + std::to_string(max_depth_));
  }
  if (err == simdjson::MEMALLOC) {
    return ResourceExhausted("out of memory while parsing JSON");
  }
  const char* reason = ParseErrorReason(err);
  return InvalidArgument(std::string("invalid JSON: ") +
                         (reason != nullptr ? reason : simdjson::error_message(err)));
}

bool JsonDoc::parsed() const { return impl_ != nullptr && impl_->parsed; }

std::optional<std::string> JsonDoc::GetText(std::span<const std::string> path) const {
  return impl_ ? impl_->GetText(path) : std::nullopt;
}
std::optional<std::string> JsonDoc::GetText(std::initializer_list<std::string_view> path) const {
  return impl_ ? impl_->GetText(path) : std::nullopt;
}
std::optional<std::string> JsonDoc::GetJson(std::span<const std::string> path) const {
  return impl_ ? impl_->GetJson(path) : std::nullopt;
}
std::optional<std::string> JsonDoc::GetJson(std::initializer_list<std::string_view> path) const {
  return impl_ ? impl_->GetJson(path) : std::nullopt;
}
std::optional<std::string_view> JsonDoc::GetString(std::span<const std::string> path) const {
  return impl_ ? impl_->GetString(path) : std::nullopt;
}
std::optional<std::string_view> JsonDoc::GetString(
    std::initializer_list<std::string_view> path) const {
  return impl_ ? impl_->GetString(path) : std::nullopt;
}
bool JsonDoc::Has(std::span<const std::string> path) const { return impl_ && impl_->Has(path); }
bool JsonDoc::Has(std::initializer_list<std::string_view> path) const {
  return impl_ && impl_->Has(path);
}

}  // namespace switchyard::json
