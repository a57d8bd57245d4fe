#include "config/interpolate.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <optional>

namespace switchyard::config {
namespace {

bool IsEnvName(std::string_view name) {
  if (name.empty() || (name[0] >= '0' && name[0] <= '9')) return false;
  for (char c : name) {
    bool ok =
        (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
    if (!ok) return false;
  }
  return true;
}

// Reads a regular file of at most kMaxInterpolatedFileBytes and trims one trailing newline.
// The message of an error names `what` (the reference), never the content.
Status ReadFileValue(const std::string& path, std::string_view what, std::string* out) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) {
    return NotFound("cannot read " + std::string(what) + ": " + std::strerror(errno));
  }
  struct stat st;
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return InvalidArgument("cannot read " + std::string(what) + ": not a regular file");
  }
  std::string content;
  char buf[65536];
  while (true) {
    ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n < 0) {
      if (errno == EINTR) continue;
      int saved = errno;
      ::close(fd);
      return Unavailable("cannot read " + std::string(what) + ": " + std::strerror(saved));
    }
    if (n == 0) break;
    content.append(buf, static_cast<size_t>(n));
    if (content.size() > kMaxInterpolatedFileBytes) {
      ::close(fd);
      return ResourceExhausted("cannot read " + std::string(what) + ": larger than 1 MiB");
    }
  }
  ::close(fd);
  if (!content.empty() && content.back() == '\n') {
    content.pop_back();
    if (!content.empty() && content.back() == '\r') content.pop_back();
  }
  *out = std::move(content);
  return Status::Ok();
}

// Expands one reference: `body` is the text between "${" and "}", `ref` the whole reference.
Status Expand(std::string_view body, std::string_view ref, std::string* out) {
  // (Built with append: `"literal" + std::string` trips GCC 12's false -Wrestrict, PR 105329.)
  std::string shown(1, '"');
  shown.append(ref).push_back('"');
  size_t colon = body.find(':');
  if (colon == std::string_view::npos) {
    return InvalidArgument("invalid reference " + shown +
                           ": expected ${env:NAME}, ${env:NAME:-DEFAULT}, ${file:PATH} or "
                           "${credential:NAME} (write $${ for a literal ${)");
  }
  std::string_view kind = body.substr(0, colon);
  std::string_view arg = body.substr(colon + 1);
  if (kind == "env") {
    std::string_view name = arg;
    std::optional<std::string_view> fallback;
    if (size_t dash = arg.find(":-"); dash != std::string_view::npos) {
      name = arg.substr(0, dash);
      fallback = arg.substr(dash + 2);
    }
    if (!IsEnvName(name)) {
      return InvalidArgument("invalid environment variable name in " + shown);
    }
    const char* value = std::getenv(std::string(name).c_str());
    if (fallback && (value == nullptr || *value == '\0')) {
      *out = std::string(*fallback);
    } else if (value == nullptr) {
      return NotFound("environment variable " + std::string(name) + " is not set (in " + shown +
                      "; write ${env:" + std::string(name) + ":-} to default to empty)");
    } else {
      *out = value;
    }
    return Status::Ok();
  }
  if (kind == "file") {
    if (arg.empty()) return InvalidArgument("empty path in " + shown);
    return ReadFileValue(std::string(arg), shown, out);
  }
  if (kind == "credential") {
    if (arg.empty() || arg == "." || arg == ".." || arg.find('/') != std::string_view::npos) {
      return InvalidArgument("invalid credential name in " + shown +
                             " (a file name inside $CREDENTIALS_DIRECTORY)");
    }
    const char* dir = std::getenv("CREDENTIALS_DIRECTORY");
    if (dir == nullptr || *dir == '\0') {
      return FailedPrecondition("cannot resolve " + shown +
                                ": CREDENTIALS_DIRECTORY is not set (systemd LoadCredential=)");
    }
    return ReadFileValue(std::string(dir) + "/" + std::string(arg), shown, out);
  }
  return InvalidArgument("unknown reference kind \"" + std::string(kind) + "\" in " + shown +
                         " (known: env, file, credential)");
}

}  // namespace

Result<std::string> Interpolate(std::string_view text, bool* substituted, size_t* error_offset) {
  *substituted = false;
  std::string out;
  out.reserve(text.size());
  size_t i = 0;
  while (i < text.size()) {
    size_t dollar = text.find('$', i);
    if (dollar == std::string_view::npos) {
      out.append(text.substr(i));
      break;
    }
    out.append(text.substr(i, dollar - i));
    std::string_view rest = text.substr(dollar);
    if (rest.starts_with("$${")) {
      out += "${";
      i = dollar + 3;
      continue;
    }
    if (!rest.starts_with("${")) {
      out += '$';
      i = dollar + 1;
      continue;
    }
    size_t close = text.find('}', dollar + 2);
    if (close == std::string_view::npos) {
      if (error_offset != nullptr) *error_offset = dollar;
      return InvalidArgument("unterminated \"${\" (write $${ for a literal ${)");
    }
    std::string value;
    Status status = Expand(text.substr(dollar + 2, close - dollar - 2),
                           text.substr(dollar, close + 1 - dollar), &value);
    if (!status.ok()) {
      if (error_offset != nullptr) *error_offset = dollar;
      return status;
    }
    out += value;
    *substituted = true;
    i = close + 1;
  }
  return out;
}

}  // namespace switchyard::config
