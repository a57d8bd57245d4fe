#include "rules/path.h"

#include <string>

#include "common/ascii.h"

namespace switchyard::rules {

namespace {

constexpr char kValidRoots[] =
    "$source, $resource, $action, $header.<name>, $installation.org, $issue.<path>";

// Bytes that may not appear in a segment: whitespace and control characters, and the
// characters that delimit paths inside matchers and templates.
bool IsForbidden(unsigned char c) {
  if (c <= 0x20 || c == 0x7f) return true;
  switch (c) {
    case '=':
    case '!':
    case '|':
    case '{':
    case '}':
    case '"':
    case '\'':
      return true;
    default:
      return false;
  }
}

Status ErrorAt(size_t offset, size_t* error_offset, std::string message) {
  if (error_offset != nullptr) *error_offset = offset;
  return InvalidArgument(std::move(message));
}

// Splits text[begin, end) into dot-separated segments appended to *out. `text` is the whole
// path (for offsets and messages).
Status SplitSegments(std::string_view text, size_t begin, std::vector<std::string>* out,
                     size_t* error_offset) {
  if (begin >= text.size()) {
    return ErrorAt(text.size(), error_offset, "path '" + std::string(text) + "' ends early");
  }
  size_t seg_start = begin;
  for (size_t i = begin; i <= text.size(); ++i) {
    if (i == text.size() || text[i] == '.') {
      if (i == seg_start) {
        // Point at the dot that makes the empty segment: the leading dot, the second of two
        // dots, or the trailing dot.
        const size_t at = i == text.size() ? i - 1 : i;
        return ErrorAt(at, error_offset, "empty segment in path '" + std::string(text) + "'");
      }
      out->emplace_back(text.substr(seg_start, i - seg_start));
      seg_start = i + 1;
      continue;
    }
    const auto c = static_cast<unsigned char>(text[i]);
    if (IsForbidden(c)) {
      std::string what = c <= 0x20 || c == 0x7f ? "whitespace or control character"
                                                : std::string("'") + text[i] + "'";
      return ErrorAt(i, error_offset, what + " in path '" + std::string(text) + "'");
    }
  }
  return Status::Ok();
}

}  // namespace

Result<Path> ParsePath(std::string_view text, size_t* error_offset) {
  Path path;
  path.text = std::string(text);
  if (text.empty()) return ErrorAt(0, error_offset, "empty path");
  if (text[0] != '$') {
    Status st = SplitSegments(text, 0, &path.segments, error_offset);
    if (!st.ok()) return st;
    return path;
  }

  const size_t dot = text.find('.');
  const std::string_view root = text.substr(1, dot == std::string_view::npos ? text.npos : dot - 1);
  const bool has_sub = dot != std::string_view::npos;
  auto no_sub_path = [&]() -> Status {
    return ErrorAt(dot, error_offset,
                   "metadata path '$" + std::string(root) + "' takes no sub-path (in '" +
                       std::string(text) + "')");
  };

  if (root == "source" || root == "resource" || root == "action") {
    if (has_sub) return no_sub_path();
    path.root = root == "source"     ? Path::Root::kSource
                : root == "resource" ? Path::Root::kResource
                                     : Path::Root::kAction;
    return path;
  }
  if (root == "header") {
    if (!has_sub) {
      return ErrorAt(text.size(), error_offset,
                     "'$header' needs a header name, e.g. $header.user-agent");
    }
    path.root = Path::Root::kHeader;
    Status st = SplitSegments(text, dot + 1, &path.segments, error_offset);
    if (!st.ok()) return st;
    if (path.segments.size() != 1) {
      return ErrorAt(text.find('.', dot + 1), error_offset,
                     "'$header.<name>' takes exactly one name (in '" + std::string(text) + "')");
    }
    AsciiLowerInPlace(path.segments[0]);
    return path;
  }
  if (root == "installation") {
    if (!has_sub || text.substr(dot + 1) != "org") {
      const size_t at = has_sub ? dot + 1 : text.size();
      return ErrorAt(
          at, error_offset,
          "'$installation' supports only '$installation.org' (got '" + std::string(text) + "')");
    }
    path.root = Path::Root::kInstallationOrg;
    return path;
  }
  if (root == "issue") {
    if (!has_sub) {
      return ErrorAt(text.size(), error_offset, "'$issue' needs a field, e.g. $issue.title");
    }
    path.root = Path::Root::kIssue;
    Status st = SplitSegments(text, dot + 1, &path.segments, error_offset);
    if (!st.ok()) return st;
    return path;
  }
  return ErrorAt(1, error_offset,
                 "unknown metadata path '" + std::string(text) + "'; valid: " + kValidRoots);
}

}  // namespace switchyard::rules
