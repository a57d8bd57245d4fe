#include "common/log.h"

#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <mutex>

#include "common/json_escape.h"

namespace switchyard::log {
namespace {

std::atomic<int> g_min_level{static_cast<int>(Level::kInfo)};
std::atomic<int> g_format{static_cast<int>(Format::kText)};

const char* LevelName(Level l) {
  switch (l) {
    case Level::kDebug: return "debug";
    case Level::kInfo: return "info";
    case Level::kWarn: return "warn";
    case Level::kError: return "error";
  }
  return "info";
}

// RFC 3339 UTC with milliseconds. The date and time of day are formatted once per second per
// thread; a busy thread's lines only append the milliseconds.
void AppendTimestamp(std::string& out) {
  const int64_t ms = std::max<int64_t>(  // a clock before 1970 logs 1970
      0, std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
             .count());
  const int64_t secs = ms / 1000;
  thread_local int64_t cached_secs = -1;
  thread_local char cached[32];  // "YYYY-MM-DDTHH:MM:SS."
  thread_local int cached_len = 0;
  if (secs != cached_secs) {
    const time_t t = static_cast<time_t>(secs);
    struct tm tm;
    gmtime_r(&t, &tm);
    cached_len =
        snprintf(cached, sizeof cached, "%04d-%02d-%02dT%02d:%02d:%02d.", tm.tm_year + 1900,
                 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
    if (cached_len < 0 || cached_len >= static_cast<int>(sizeof cached)) cached_len = 0;
    cached_secs = secs;
  }
  const int millis = static_cast<int>(ms % 1000);
  const char frac[5] = {static_cast<char>('0' + millis / 100),
                        static_cast<char>('0' + millis / 10 % 10),
                        static_cast<char>('0' + millis % 10), 'Z', '\0'};
  out.append(cached, static_cast<size_t>(cached_len));
  out.append(frac, 4);
}

bool NeedsQuotes(std::string_view s) {
  if (s.empty()) return true;
  for (unsigned char c : s) {
    if (c <= ' ' || c == '"' || c == '=' || c == '\\' || c >= 0x7f) return true;
  }
  return false;
}

// Appends one formatted line (with its newline) to `line`.
void AppendLine(std::string& line, Level level, std::string_view msg,
                std::initializer_list<Field> fields) {
  if (static_cast<Format>(g_format.load()) == Format::kJson) {
    line += "{\"ts\":\"";
    AppendTimestamp(line);
    line += "\",\"level\":\"";
    line += LevelName(level);
    line += "\",\"msg\":\"";
    AppendJsonEscaped(line, msg);
    line += '"';
    for (const auto& [k, v] : fields) {
      line += ",\"";
      AppendJsonEscaped(line, k);
      line += "\":\"";
      AppendJsonEscaped(line, v);
      line += '"';
    }
    line += "}\n";
  } else {
    line += "ts=";
    AppendTimestamp(line);
    line += " level=";
    line += LevelName(level);
    line += " msg=\"";
    AppendJsonEscaped(line, msg);
    line += '"';
    for (const auto& [k, v] : fields) {
      line += ' ';
      line += k;
      line += '=';
      if (NeedsQuotes(v)) {
        line += '"';
        AppendJsonEscaped(line, v);
        line += '"';
      } else {
        line += v;
      }
    }
    line += '\n';
  }
}

// Where lines go, and what to do when nobody reads them. stderr is written as it is when it is
// a file or a terminal. When it is a pipe or a socket (journald's stream, a container runtime's
// pipe), a reader that stalls must not stop the threads that log (the store's writer, the I/O
// threads): a socket is written with MSG_DONTWAIT, and a pipe through a non-blocking description
// of our own (/proc/self/fd/2; O_NONBLOCK on fd 2 would change it for whoever shares it). Bytes
// that find no room wait at most kMaxStall per write, and not at all while the reader is known
// to be stalled; then they are dropped and counted, and the next write that gets through first
// says how many lines were lost. Every write holds g_out_mu, so lines never interleave.
constexpr int kMaxStallMs = 10;

std::mutex g_out_mu;
std::atomic<uint64_t> g_dropped_lines{0};
struct Output {
  dev_t dev = 0;
  ino_t ino = 0;
  bool known = false;
  // kPipe: our own non-blocking description; kPolledPipe: fd 2 itself, blocking, written only
  // when poll says there is room and at most PIPE_BUF at a time (a pipe another user created,
  // 0600, cannot be reopened: a container's stdio pipe made by root, the daemon as user 10001).
  enum class Kind { kPlain, kSocket, kPipe, kPolledPipe } kind = Kind::kPlain;
  int fd = STDERR_FILENO;   // own non-blocking description for a pipe
  bool stalled = false;     // the last write dropped bytes
  bool mid_line = false;    // bytes of a line were dropped after its start was written
  uint64_t unreported = 0;  // lines dropped since the last write that got through
};
Output g_out;  // GUARDED_BY(g_out_mu)

std::atomic<bool> g_no_pipe_reopen{false};  // tests: take the kPolledPipe path

// With g_out_mu held: (re)learns what fd 2 is when it changed (tests point it elsewhere).
void LearnOutput() {
  struct stat st;
  const bool ok = fstat(STDERR_FILENO, &st) == 0;
  if (ok && g_out.known && st.st_dev == g_out.dev && st.st_ino == g_out.ino) return;
  if (g_out.fd != STDERR_FILENO) ::close(g_out.fd);
  const Output old = g_out;
  g_out = Output{};
  // What was lost is still to be reported, whatever stderr now is.
  g_out.unreported = old.unreported;
  g_out.mid_line = old.mid_line;
  if (!ok) return;  // closed: writes fail and are dropped
  g_out.known = true;
  g_out.dev = st.st_dev;
  g_out.ino = st.st_ino;
  if (S_ISSOCK(st.st_mode)) {
    g_out.kind = Output::Kind::kSocket;
  } else if (S_ISFIFO(st.st_mode)) {
    const int fd =
        g_no_pipe_reopen ? -1 : ::open("/proc/self/fd/2", O_WRONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd >= 0) {
      g_out.kind = Output::Kind::kPipe;
      g_out.fd = fd;
    } else {
      g_out.kind = Output::Kind::kPolledPipe;
    }
  }
}

// With g_out_mu held: one attempt; >= 0 bytes written, or -1 (EAGAIN: no room; other: gone).
ssize_t WriteSome(const char* p, size_t n, bool* no_room) {
  if (g_out.kind == Output::Kind::kPolledPipe) {
    // A pipe polls writable when a whole buffer slot (a page) is free: a write of at most
    // PIPE_BUF bytes then completes without blocking (our writers are serialized by g_out_mu).
    struct pollfd pfd = {g_out.fd, POLLOUT, 0};
    if (::poll(&pfd, 1, 0) != 1 || !(pfd.revents & POLLOUT)) {
      *no_room = !(pfd.revents & (POLLERR | POLLHUP));
      errno = EAGAIN;
      return -1;
    }
    n = std::min<size_t>(n, PIPE_BUF);
  }
  for (;;) {
    ssize_t w = g_out.kind == Output::Kind::kSocket
                    ? ::send(g_out.fd, p, n, MSG_DONTWAIT | MSG_NOSIGNAL)
                    : ::write(g_out.fd, p, n);
    if (w >= 0) return w;
    if (errno == EINTR) continue;
    *no_room = errno == EAGAIN || errno == EWOULDBLOCK;
    return -1;
  }
}

// With g_out_mu held: writes `data` until it is all out, or until it found no room for
// kMaxStallMs (0 while stalled), or stderr is gone. Returns how many bytes went out.
size_t WriteLocked(std::string_view data) {
  const size_t size = data.size();
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::milliseconds(g_out.stalled ? 0 : kMaxStallMs);
  while (!data.empty()) {
    bool no_room = false;
    const ssize_t w = WriteSome(data.data(), data.size(), &no_room);
    if (w > 0) {
      data.remove_prefix(static_cast<size_t>(w));
      continue;
    }
    if (w == 0 || !no_room) break;  // stderr is gone: nothing to wait for
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    struct pollfd pfd = {g_out.fd, POLLOUT, 0};
    ::poll(&pfd, 1, static_cast<int>(left.count()));
  }
  g_out.stalled = !data.empty();
  return size - data.size();
}

// With g_out_mu held: the lines in `s` are lost; the next write that gets through says so.
void Drop(std::string_view s) {
  const auto lines = static_cast<uint64_t>(std::count(s.begin(), s.end(), '\n'));
  g_out.unreported += lines;
  g_dropped_lines.fetch_add(lines, std::memory_order_relaxed);
}

void WriteAll(const std::string& data) {
  std::lock_guard lock(g_out_mu);
  LearnOutput();
  if (g_out.unreported > 0 || g_out.mid_line) {
    // The reader stalled before: end the line it cut, then say what was lost.
    std::string note = g_out.mid_line ? "\n" : "";
    const std::string count = std::to_string(g_out.unreported);
    AppendLine(note, Level::kWarn, "log lines dropped: stderr was not read in time",
               {{"count", count}});
    const size_t sent = WriteLocked(note);
    if (sent < note.size()) {  // still not read (or gone): drop this too, without trying
      if (sent > 0) g_out.mid_line = true;
      Drop(data);
      return;
    }
    g_out.unreported = 0;
    g_out.mid_line = false;
  }
  const size_t sent = WriteLocked(data);
  if (sent == data.size()) return;
  if (sent > 0 && data[sent - 1] != '\n') g_out.mid_line = true;
  Drop(std::string_view(data).substr(sent));  // the lines not started, and the one cut short
}

thread_local std::string* t_batch = nullptr;  // set while a ScopedBatch is alive on this thread

}  // namespace

ScopedBatch::ScopedBatch() {
  if (!t_batch) t_batch = new std::string();
}

ScopedBatch::~ScopedBatch() {
  if (!t_batch) return;
  WriteAll(*t_batch);
  delete t_batch;
  t_batch = nullptr;
}

namespace {
std::atomic<uint64_t> g_coroutine_failures{0};
}  // namespace

uint64_t CoroutineFailures() { return g_coroutine_failures.load(std::memory_order_relaxed); }

void CoroutineFailure(const char* task, std::exception_ptr e) {
  if (!e) return;
  g_coroutine_failures.fetch_add(1, std::memory_order_relaxed);
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& ex) {
    Error("coroutine failed", {{"task", task}, {"error", ex.what()}});
  } catch (...) {
    Error("coroutine failed", {{"task", task}, {"error", "unknown exception"}});
  }
}

void Configure(Level min_level, Format format) {
  g_min_level = static_cast<int>(min_level);
  g_format = static_cast<int>(format);
}

void ConfigureFromEnv() {
  Level level = Level::kInfo;
  if (const char* v = getenv("SWITCHYARD_LOG_LEVEL")) {
    if (!strcmp(v, "debug")) level = Level::kDebug;
    if (!strcmp(v, "warn")) level = Level::kWarn;
    if (!strcmp(v, "error")) level = Level::kError;
  }
  Format format = Format::kText;
  if (const char* v = getenv("SWITCHYARD_LOG_FORMAT"); v && !strcmp(v, "json")) {
    format = Format::kJson;
  }
  Configure(level, format);
}

bool Enabled(Level level) { return static_cast<int>(level) >= g_min_level.load(); }

void Write(Level level, std::string_view msg, std::initializer_list<Field> fields) {
  if (!Enabled(level)) return;
  // Inside a ScopedBatch the line is formatted straight into the batch.
  std::string own;
  std::string& line = t_batch ? *t_batch : own;
  if (!t_batch) line.reserve(128 + msg.size());
  AppendLine(line, level, msg, fields);
  if (t_batch) {
    if (t_batch->size() >= (64u << 10)) {
      WriteAll(*t_batch);
      t_batch->clear();
    }
    return;
  }
  // One write(2) per line: atomic with respect to other writers of the same pipe/file.
  WriteAll(line);
}

uint64_t DroppedLines() { return g_dropped_lines.load(std::memory_order_relaxed); }

void DisablePipeReopenForTest(bool disable) {
  std::lock_guard lock(g_out_mu);
  g_no_pipe_reopen = disable;
  g_out.known = false;  // learn fd 2 again
}

}  // namespace switchyard::log
