// The file sink: appends one JSON object per delivery, one per line (CONTRACT.md §3 "Sinks"):
//   {"id":<the webhook's id>,"received_at":"2026-11-26T19:05:40.123Z","source":…,"resource":…,
//    "action":…,"route":…,"delivery_id":…,"payload":<the original body as a JSON value>}
// The payload bytes are copied verbatim (they were validated at ingest), except that CR and LF,
// which valid JSON can only hold as insignificant whitespace, become spaces so the object stays on
// one line. A body that is not valid JSON (never expected) is written as a JSON string, repaired to
// valid UTF-8. Metadata strings are repaired to valid UTF-8 too.
//
// Lines are never torn or interleaved: each is written with a single write(2) on an O_APPEND fd
// under a mutex, from any number of threads. A short write (e.g. ENOSPC) is completed or, failing
// that, truncated away so no partial line remains.
//
// BLOCKING: Deliver() does file I/O on the calling thread. Without `sync` it calls `done` before
// returning; with it, `done` runs later on the sink's sync thread (and from the destructor, which
// syncs what is pending). The dispatcher must call Deliver for file sinks off the I/O threads.
//
// Durability: with FileSinkOptions::sync (the daemon sets it from storage.sync), a line is
// reported delivered only after fdatasync(2) has returned for it, so a delivery the queue records
// as done cannot be lost to a power cut (the queue's own update is made durable by the next
// group commit, which may come before the page cache is written back). Syncs are grouped: one
// sync thread per sink syncs every line written since its last sync at once, and a new file's
// directory once. A failed sync fails its lines with kRetry (written again: at least once).
// Without `sync` the sink only writes (into the page cache), and reports at once.
//
// The file is created (mode 0640, before umask) along with missing parent directories (0750). If
// it cannot be opened, each Deliver tries again and fails with kRetry. Reopen() opens the path
// afresh (for logrotate: rename, then SIGHUP) and is safe while deliveries are running; if the
// new open fails, the sink keeps writing to the old file and logs a warning.
#pragma once

#include <functional>
#include <memory>

#include "common/status.h"
#include "config/config.h"
#include "sinks/sink.h"

namespace switchyard::sinks {

struct FileSinkOptions {
  bool sync = false;  // see "Durability" above
  // Tests: stands in for fdatasync(2) on the sink's sync thread (returns 0, or -1 with errno).
  std::function<int(int fd)> sync_fn;
};

// Fails with kInvalidArgument when the path is empty. An unopenable path is not an error here
// (logged; retried at delivery).
Result<std::unique_ptr<Sink>> NewFileSink(const config::FileSinkConfig& config,
                                          FileSinkOptions options = {});

}  // namespace switchyard::sinks
