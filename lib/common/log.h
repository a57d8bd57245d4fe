// Structured, line-oriented logging to stderr (journald-friendly). One call writes one complete
// line with a single write(2), so lines from different threads never interleave. Logging never
// blocks for long: when stderr is a pipe or socket whose reader has stalled, a line waits at most
// 10 ms for room (none while the stall lasts), then is dropped and counted, and the next line
// that gets through is preceded by "log lines dropped" with the count.
// Format: logfmt by default (`ts=... level=info msg="..." k=v`), or JSON lines when configured.
// Never pass secrets as fields: there is no redaction layer behind this.
#pragma once

#include <cstdint>
#include <exception>
#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>

namespace switchyard::log {

enum class Level { kDebug = 0, kInfo, kWarn, kError };
enum class Format { kText, kJson };

// Process-wide settings; call before starting threads.
void Configure(Level min_level, Format format);
// Reads SWITCHYARD_LOG_LEVEL (debug|info|warn|error) and SWITCHYARD_LOG_FORMAT (text|json).
void ConfigureFromEnv();
bool Enabled(Level level);

using Field = std::pair<std::string_view, std::string_view>;

// While alive, this thread's log lines are collected and written with one write(2) when it ends
// (or every 64 KiB). For threads that log once per item of a batch, e.g. the storage writer.
class ScopedBatch {
 public:
  ScopedBatch();
  ~ScopedBatch();
  ScopedBatch(const ScopedBatch&) = delete;
  ScopedBatch& operator=(const ScopedBatch&) = delete;
};
void Write(Level level, std::string_view msg, std::initializer_list<Field> fields = {});

// Logs (as an error) and counts an exception that escaped a coroutine: every co_spawn's
// completion handler calls this, and so do the catch blocks that keep an I/O thread or a request
// alive, so no failure is swallowed. No-op for a null pointer. Thread-safe.
void CoroutineFailure(const char* task, std::exception_ptr e);
// How many failures CoroutineFailure has seen (switchyard_internal_errors_total).
uint64_t CoroutineFailures();
// How many lines were dropped because stderr was not read in time
// (switchyard_log_lines_dropped_total).
uint64_t DroppedLines();
// Tests: treat a pipe on stderr as one that cannot be reopened (what a non-root daemon meets
// on a container runtime's pipe), to exercise the polled path.
void DisablePipeReopenForTest(bool disable);

inline void Debug(std::string_view m, std::initializer_list<Field> f = {}) {
  if (Enabled(Level::kDebug)) Write(Level::kDebug, m, f);
}
inline void Info(std::string_view m, std::initializer_list<Field> f = {}) {
  Write(Level::kInfo, m, f);
}
inline void Warn(std::string_view m, std::initializer_list<Field> f = {}) {
  Write(Level::kWarn, m, f);
}
inline void Error(std::string_view m, std::initializer_list<Field> f = {}) {
  Write(Level::kError, m, f);
}

}  // namespace switchyard::log
