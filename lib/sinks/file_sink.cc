#include "sinks/file_sink.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <boost/json.hpp>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <ctime>
#include <map>
#include <mutex>
#include <optional>
#include <string_view>
#include <vector>

#include "common/blocking_pool.h"
#include "common/json_escape.h"
#include "common/log.h"

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
  AppendJsonEscaped(out, value);  // repairs invalid UTF-8
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
    line += JsonQuote(e.body);  // repairs invalid UTF-8
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

// Ends a torn last line of a regular file (a write cut short by a kill, or a partial line that
// could not be truncated away) with a newline, so the next line starts on a line of its own.
// `fd` is the append fd; the last byte is read through a separate read-only open.
bool IsRegularFile(int fd) {
  struct stat st {};
  return fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
}

// How long a line that a pipe's reader took part of is waited on to finish (see Append). Short:
// every file sink's deliveries and reopens share one thread (the dispatcher's blocking pool).
constexpr auto kFinishLineTime = std::chrono::seconds(2);

void EndTornLine(const std::string& path, int fd) {
  struct stat st {};
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size == 0) return;
  const int rd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (rd < 0) return;
  char last = '\n';
  const bool torn = pread(rd, &last, 1, st.st_size - 1) == 1 && last != '\n';
  close(rd);
  if (torn && write(fd, "\n", 1) != 1) log::Warn("file sink: could not end a torn line", {});
}

// The paths file sinks of this process write. A sink checks its file for a torn line only when
// no other sink here writes that path: a reload builds the new sink while the old one may still
// be writing a line, which would look torn mid-write.
class LivePaths {
 public:
  // Registers `path`; true if no other sink had it.
  static bool Add(const std::string& path) {
    std::lock_guard lock(mu());
    return ++counts()[path] == 1;
  }
  static void Remove(const std::string& path) {
    std::lock_guard lock(mu());
    if (auto it = counts().find(path); it != counts().end() && --it->second == 0) {
      counts().erase(it);
    }
  }

 private:
  static std::mutex& mu() {
    static std::mutex m;
    return m;
  }
  static std::map<std::string, int>& counts() {
    static std::map<std::string, int> c;
    return c;
  }
};

// Opens `path` for appending, creating it and its parents. Returns the fd or -errno. For a FIFO:
// write-only, so that a reader going away is EPIPE (a retry) rather than unnoticed, and
// non-blocking, so that a FIFO without a reader (ENXIO) or a full one (EAGAIN) is a retry rather
// than a dispatcher thread blocked. Non-blocking changes nothing for a regular file.
int OpenForAppend(const std::string& path, bool end_torn_line) {
  constexpr int kFlags = O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NONBLOCK;
  int fd = open(path.c_str(), kFlags, 0640);
  if (fd < 0 && errno == ENOENT) {
    MakeParentDirs(path);
    fd = open(path.c_str(), kFlags, 0640);
  }
  if (fd < 0) return -errno;
  if (end_torn_line) EndTornLine(path, fd);
  return fd;
}

// One open of the file. Shared by the sink and the syncs of lines written to it, so a Reopen()
// (logrotate) closes the old file only after those lines are synced.
struct OpenFile {
  explicit OpenFile(int f) : fd(f) {}
  ~OpenFile() { close(fd); }
  OpenFile(const OpenFile&) = delete;
  OpenFile& operator=(const OpenFile&) = delete;
  const int fd;
  bool dir_synced = false;  // sync thread only: the directory entry of a new file is durable
};

// fsync(2) of the directory holding `path`, so a newly created file's entry survives a crash.
int SyncParentDir(const std::string& path) {
  const size_t slash = path.rfind('/');
  const std::string dir = slash == std::string::npos ? "."
                          : slash == 0               ? "/"
                                                     : path.substr(0, slash);
  const int fd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return errno;
  const int rc = fsync(fd) == 0 ? 0 : errno;
  close(fd);
  return rc;
}

class FileSink final : public Sink {
 public:
  FileSink(std::string path, FileSinkOptions options)
      : path_(std::move(path)),
        sync_(options.sync),
        sync_fn_(std::move(options.sync_fn)),
        end_torn_line_(LivePaths::Add(path_)) {
    if (!sync_fn_) sync_fn_ = [](int fd) { return fdatasync(fd); };
    if (sync_) syncer_ = std::make_unique<BlockingPool>(1);
    std::lock_guard<std::mutex> lock(mu_);
    OpenLocked().IgnoreError();
  }
  ~FileSink() override {
    if (syncer_) syncer_->Stop();  // syncs and reports every line written
    LivePaths::Remove(path_);
  }

  void Deliver(const Delivery& delivery, DeliverCallback done) override {
    Outcome out;
    std::shared_ptr<OpenFile> file;
    if (delivery.event == nullptr) {
      out = Outcome{Outcome::Kind::kPermanent, "delivery has no event", 0, std::nullopt};
    } else {
      try {
        const std::string line = FormatLine(delivery);
        const Status s = Append(line, &file);
        if (!s.ok()) out = Outcome{Outcome::Kind::kRetry, s.message(), 0, std::nullopt};
      } catch (const std::exception&) {  // allocation failure
        out = Outcome{Outcome::Kind::kRetry, "file sink: internal error", 0, std::nullopt};
      }
    }
    if (sync_ && file) return QueueSync(std::move(file), std::move(done));
    done(std::move(out));
  }

  void Reopen() override {
    const int fd = OpenForAppend(path_, /*end_torn_line=*/false);  // after logrotate: a new file
    if (fd < 0) {
      log::Warn("file sink: reopen failed, still writing to the old file",
                {{"path", path_}, {"error", ErrnoText(-fd)}});
      return;
    }
    auto next = std::make_shared<OpenFile>(fd);
    std::lock_guard<std::mutex> lock(mu_);
    file_.swap(next);  // the old one closes when its last pending sync is done
  }

 private:
  struct PendingSync {
    std::shared_ptr<OpenFile> file;
    DeliverCallback done;
  };

  // Queues `done` for the next sync; posts one unless a sync is already queued, which will take
  // this line too (a group: every line written while the previous sync ran).
  void QueueSync(std::shared_ptr<OpenFile> file, DeliverCallback done) {
    bool post;
    {
      std::lock_guard<std::mutex> lock(sync_mu_);
      pending_.push_back({std::move(file), std::move(done)});
      post = !sync_queued_;
      sync_queued_ = true;
    }
    if (post) syncer_->Post([this] { SyncPending(); });
  }

  // On the sync thread: one sync per file the pending lines went to, then their outcomes.
  void SyncPending() {
    std::vector<PendingSync> batch;
    {
      std::lock_guard<std::mutex> lock(sync_mu_);
      batch.swap(pending_);
      sync_queued_ = false;
    }
    std::map<OpenFile*, int> errors;  // errno of each file's sync (0: synced)
    for (const PendingSync& p : batch) {
      auto [it, fresh] = errors.try_emplace(p.file.get(), 0);
      if (!fresh) continue;
      it->second = Unsyncable(sync_fn_(p.file->fd) == 0 ? 0 : errno);
      if (it->second == 0 && !p.file->dir_synced) {
        it->second = Unsyncable(SyncParentDir(path_));
        p.file->dir_synced = it->second == 0;
      }
      if (it->second != 0) {
        log::Warn("file sink: sync failed", {{"path", path_}, {"error", ErrnoText(it->second)}});
      }
    }
    for (PendingSync& p : batch) {
      const int err = errors[p.file.get()];
      p.done(err == 0 ? Outcome{}
                      : Outcome{Outcome::Kind::kRetry, "file sync failed: " + ErrnoText(err), 0,
                                std::nullopt});
    }
  }

  // A file that cannot be synced at all (a FIFO, /dev/stdout: EINVAL) is written as without
  // `sync`: warned about once, then reported delivered. Returns the errno that still counts.
  int Unsyncable(int err) {
    // EACCES/EPERM: the directory cannot be opened to sync it (the file itself was synced).
    if (err != EINVAL && err != ENOTSUP && err != EACCES && err != EPERM) return err;
    if (!warned_unsyncable_) {
      warned_unsyncable_ = true;
      log::Warn("file sink: the file cannot be synced; lines are reported delivered once written",
                {{"path", path_}, {"error", ErrnoText(err)}});
    }
    return 0;
  }

  Status OpenLocked() {
    if (file_) return Status::Ok();
    const int fd = OpenForAppend(path_, end_torn_line_);
    if (fd < 0) {
      log::Warn("file sink: open failed", {{"path", path_}, {"error", ErrnoText(-fd)}});
      return Unavailable("file open failed: " + ErrnoText(-fd));
    }
    file_ = std::make_shared<OpenFile>(fd);
    end_torn_line_ = false;  // once, at the first open
    return Status::Ok();
  }

  // Appends `line` as one write(2); `*written_to` is the file it went to. Thread-safe.
  Status Append(std::string_view line, std::shared_ptr<OpenFile>* written_to) {
    std::lock_guard<std::mutex> lock(mu_);
    if (Status s = OpenLocked(); !s.ok()) return s;
    const int fd = file_->fd;
    size_t written = 0;
    std::optional<std::chrono::steady_clock::time_point> finish_by;
    while (written < line.size()) {
      const ssize_t n = write(fd, line.data() + written, line.size() - written);
      if (n > 0) {
        written += static_cast<size_t>(n);
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      const int err = n < 0 ? errno : EIO;
      // A FIFO or pipe (its reader behind) took part of the line: what it took cannot be taken
      // back, and a retry would write the whole line after the half. Finish it instead, as the
      // reader makes room, for at most kFinishLineTime (then the line stays torn).
      if (written > 0 && (err == EAGAIN || err == EWOULDBLOCK) && !IsRegularFile(fd)) {
        if (!finish_by) finish_by = std::chrono::steady_clock::now() + kFinishLineTime;
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
            *finish_by - std::chrono::steady_clock::now());
        pollfd p{fd, POLLOUT, 0};
        const int ready = left.count() > 0 ? poll(&p, 1, static_cast<int>(left.count())) : 0;
        if ((ready > 0 && (p.revents & POLLOUT)) || (ready < 0 && errno == EINTR)) continue;
        log::Error(
            "file sink: the reader of a pipe took part of a line and no more; the line is "
            "torn",
            {{"path", path_}});
      }
      if (written > 0) {
        // Remove the partial line: with O_APPEND under our mutex it is the file's tail.
        struct stat st {};
        if (fstat(fd, &st) == 0 && st.st_size >= static_cast<off_t>(written)) {
          if (ftruncate(fd, st.st_size - static_cast<off_t>(written)) != 0) {
            log::Error("file sink: could not remove a partial line", {{"path", path_}});
            EndTornLine(path_, fd);  // at least the next line starts on its own
          }
        }
      }
      return Unavailable("file write failed: " + ErrnoText(err));
    }
    *written_to = file_;
    return Status::Ok();
  }

  const std::string path_;
  const bool sync_;
  std::function<int(int)> sync_fn_;
  bool end_torn_line_;  // guarded by mu_: at the first open, unless another sink has the path
  std::mutex mu_;
  std::shared_ptr<OpenFile> file_;  // guarded by mu_; null when not open
  std::mutex sync_mu_;
  std::vector<PendingSync> pending_;      // guarded by sync_mu_
  bool sync_queued_ = false;              // guarded by sync_mu_
  bool warned_unsyncable_ = false;        // sync thread only
  std::unique_ptr<BlockingPool> syncer_;  // last: stopped (in the destructor) before the rest goes
};

}  // namespace

Result<std::unique_ptr<Sink>> NewFileSink(const config::FileSinkConfig& config,
                                          FileSinkOptions options) {
  if (config.path.empty()) return InvalidArgument("file sink: path is empty");
  return std::unique_ptr<Sink>(std::make_unique<FileSink>(config.path, std::move(options)));
}

}  // namespace switchyard::sinks
