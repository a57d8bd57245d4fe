#include "sinks/file_sink.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <boost/json.hpp>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <mutex>
#include <string_view>

#include "common/json_escape.h"
#include "common/log.h"
#include "sinks/utf8.h"

namespace switchyard::sinks {
namespace {

std::string ErrnoText(int err) {
  char buf[256];
  // GNU strerror_r returns the message pointer (which may or may not be buf).
  return strerror_r(err, buf, sizeof(buf));
}

// "2026-11-26T19:05:40.123Z" for a Unix time in milliseconds.
std::string Rfc3339Millis(int64_t ms) {
  int64_t secs = ms / 1000;
  int64_t frac = ms % 1000;
  if (frac < 0) {
    frac += 1000;
    secs -= 1;
  }
  const time_t t = static_cast<time_t>(secs);
  struct tm tm {};
  gmtime_r(&t, &tm);
  char buf[64];
  snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
           tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(frac));
  return buf;
}

bool IsValidJson(std::string_view body) {
  // A monotonic resource makes the DOM free to throw away (no per-node deallocation).
  std::array<unsigned char, 4096> buffer;
  boost::json::monotonic_resource mr(buffer.data(), buffer.size());
  boost::json::parse_options options;
  options.max_depth = 1 << 16;
  boost::json::error_code ec;
  boost::json::parse(body, ec, &mr, options);
  return !ec;
}

void AppendString(std::string& out, std::string_view key, std::string_view value) {
  out += '"';
  out += key;
  out += "\":\"";
  AppendJsonEscaped(out, SanitizeUtf8(value));
  out += '"';
}

std::string FormatLine(const Delivery& delivery) {
  const storage::StoredEvent& e = *delivery.event;
  std::string line;
  line.reserve(e.body.size() + 256);
  line += '{';
  // "id" is the webhook's (the id its 202 answered); "delivery_id" tells apart the lines of
  // one webhook sent by several routes, and stays the same when a line is written again after
  // a failed attempt (at least once).
  AppendString(line, "id", e.id);
  line += ',';
  AppendString(line, "received_at", Rfc3339Millis(e.received_at_ms));
  line += ',';
  AppendString(line, "source", e.source);
  line += ',';
  AppendString(line, "resource", e.resource);
  line += ',';
  AppendString(line, "action", e.action);
  line += ',';
  AppendString(line, "route", delivery.route);
  line += ',';
  AppendString(line, "delivery_id", delivery.id);
  line += ",\"payload\":";
  if (IsValidJson(e.body)) {
    const size_t start = line.size();
    line += e.body;
    for (size_t i = start; i < line.size(); ++i) {
      if (line[i] == '\n' || line[i] == '\r') line[i] = ' ';
    }
  } else {
    line += JsonQuote(SanitizeUtf8(e.body));
  }
  line += "}\n";
  return line;
}

// mkdir -p for the parent directories of `path`. Errors surface when the file is opened.
void MakeParentDirs(const std::string& path) {
  for (size_t pos = path.find('/', 1); pos != std::string::npos; pos = path.find('/', pos + 1)) {
    const std::string dir = path.substr(0, pos);
    if (mkdir(dir.c_str(), 0750) != 0 && errno != EEXIST) return;
  }
}

// Opens `path` for appending, creating it and its parents. Returns the fd or -errno.
int OpenForAppend(const std::string& path) {
  int fd = open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
  if (fd < 0 && errno == ENOENT) {
    MakeParentDirs(path);
    fd = open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
  }
  return fd >= 0 ? fd : -errno;
}

class FileSink final : public Sink {
 public:
  explicit FileSink(std::string path) : path_(std::move(path)) {
    std::lock_guard<std::mutex> lock(mu_);
    OpenLocked().IgnoreError();
  }
  ~FileSink() override {
    if (fd_ >= 0) close(fd_);
  }

  void Deliver(const Delivery& delivery, DeliverCallback done) override {
    Outcome out;
    if (delivery.event == nullptr) {
      out = Outcome{Outcome::Kind::kPermanent, "delivery has no event", 0, std::nullopt};
    } else {
      try {
        const std::string line = FormatLine(delivery);
        const Status s = Append(line);
        if (!s.ok()) out = Outcome{Outcome::Kind::kRetry, s.message(), 0, std::nullopt};
      } catch (const std::exception&) {  // allocation failure
        out = Outcome{Outcome::Kind::kRetry, "file sink: internal error", 0, std::nullopt};
      }
    }
    done(std::move(out));
  }

  void Reopen() override {
    const int fd = OpenForAppend(path_);
    if (fd < 0) {
      log::Warn("file sink: reopen failed, still writing to the old file",
                {{"path", path_}, {"error", ErrnoText(-fd)}});
      return;
    }
    int old = -1;
    {
      std::lock_guard<std::mutex> lock(mu_);
      old = fd_;
      fd_ = fd;
    }
    if (old >= 0) close(old);
  }

 private:
  Status OpenLocked() {
    if (fd_ >= 0) return Status::Ok();
    const int fd = OpenForAppend(path_);
    if (fd < 0) {
      log::Warn("file sink: open failed", {{"path", path_}, {"error", ErrnoText(-fd)}});
      return Unavailable("file open failed: " + ErrnoText(-fd));
    }
    fd_ = fd;
    return Status::Ok();
  }

  // Appends `line` as one write(2). Thread-safe.
  Status Append(std::string_view line) {
    std::lock_guard<std::mutex> lock(mu_);
    if (Status s = OpenLocked(); !s.ok()) return s;
    size_t written = 0;
    while (written < line.size()) {
      const ssize_t n = write(fd_, line.data() + written, line.size() - written);
      if (n > 0) {
        written += static_cast<size_t>(n);
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      const int err = n < 0 ? errno : EIO;
      if (written > 0) {
        // Remove the partial line: with O_APPEND under our mutex it is the file's tail.
        struct stat st {};
        if (fstat(fd_, &st) == 0 && st.st_size >= static_cast<off_t>(written)) {
          if (ftruncate(fd_, st.st_size - static_cast<off_t>(written)) != 0) {
            log::Error("file sink: could not remove a partial line", {{"path", path_}});
          }
        }
      }
      return Unavailable("file write failed: " + ErrnoText(err));
    }
    return Status::Ok();
  }

  const std::string path_;
  std::mutex mu_;
  int fd_ = -1;  // guarded by mu_; -1 when not open
};

}  // namespace

Result<std::unique_ptr<Sink>> NewFileSink(const config::FileSinkConfig& config) {
  if (config.path.empty()) return InvalidArgument("file sink: path is empty");
  return std::unique_ptr<Sink>(std::make_unique<FileSink>(config.path));
}

}  // namespace switchyard::sinks
