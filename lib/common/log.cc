#include "common/log.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>

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

void WriteAll(const std::string& data) {
  const char* p = data.data();
  size_t left = data.size();
  while (left > 0) {
    ssize_t n = ::write(STDERR_FILENO, p, left);
    if (n <= 0) break;
    p += n;
    left -= static_cast<size_t>(n);
  }
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

}  // namespace switchyard::log
