#include "common/json_escape.h"
#include "rules/event_view.h"

#include <string_view>

namespace switchyard::rules {

namespace {

bool EqualsIgnoreAsciiCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    char x = a[i];
    char y = b[i];
    if (x >= 'A' && x <= 'Z') x = static_cast<char>(x - 'A' + 'a');
    if (y >= 'A' && y <= 'Z') y = static_cast<char>(y - 'A' + 'a');
    if (x != y) return false;
  }
  return true;
}

bool NonEmpty(const std::string& in, std::string* value) {
  if (in.empty()) return false;
  *value = in;
  return true;
}

}  // namespace

bool PayloadEventView::Meta(const Path& path, std::string* value) const {
  switch (path.root) {
    case Path::Root::kSource:
      return NonEmpty(meta_->source, value);
    case Path::Root::kResource:
      return NonEmpty(meta_->resource, value);
    case Path::Root::kAction:
      return NonEmpty(meta_->action, value);
    case Path::Root::kInstallationOrg:
      return NonEmpty(meta_->installation_org, value);
    case Path::Root::kHeader: {
      if (path.segments.size() != 1) return false;
      bool found = false;
      value->clear();
      for (const auto& [name, header_value] : meta_->headers) {
        if (!EqualsIgnoreAsciiCase(name, path.segments[0])) continue;
        if (found) *value += ", ";
        *value += header_value;
        found = true;
      }
      return found;
    }
    case Path::Root::kPayload:
    case Path::Root::kIssue:
      break;
  }
  return false;
}

const json::JsonDoc* PayloadEventView::Doc(const Path& path) const {
  if (path.root == Path::Root::kPayload) return payload_;
  if (path.root == Path::Root::kIssue) return issue_;
  return nullptr;
}

std::string PayloadEventView::Lookup(const Path& path) const {
  if (path.root == Path::Root::kPayload || path.root == Path::Root::kIssue) {
    const json::JsonDoc* doc = Doc(path);
    if (doc == nullptr) return "";
    return doc->GetText(path.segments).value_or("");
  }
  std::string value;
  return Meta(path, &value) ? value : "";
}

std::string PayloadEventView::LookupJson(const Path& path) const {
  if (path.root == Path::Root::kPayload || path.root == Path::Root::kIssue) {
    const json::JsonDoc* doc = Doc(path);
    if (doc == nullptr) return "null";
    return doc->GetJson(path.segments).value_or("null");
  }
  std::string value;
  return Meta(path, &value) ? JsonQuote(value) : "null";
}

bool PayloadEventView::Has(const Path& path) const {
  if (path.root == Path::Root::kPayload || path.root == Path::Root::kIssue) {
    const json::JsonDoc* doc = Doc(path);
    return doc != nullptr && doc->Has(path.segments);
  }
  std::string value;
  return Meta(path, &value);
}

}  // namespace switchyard::rules
