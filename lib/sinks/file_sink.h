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
// BLOCKING: Deliver() does file I/O on the calling thread and calls `done` before returning. The
// dispatcher must call Deliver for file sinks off the I/O threads.
//
// Durability: the sink writes with write(2) only (into the page cache) and never calls fsync or
// fdatasync; durability of the file is the filesystem's. The event itself stays in the store until
// the dispatcher records the delivery.
//
// The file is created (mode 0640, before umask) along with missing parent directories (0750). If
// it cannot be opened, each Deliver tries again and fails with kRetry. Reopen() opens the path
// afresh (for logrotate: rename, then SIGHUP) and is safe while deliveries are running; if the
// new open fails, the sink keeps writing to the old file and logs a warning.
#pragma once

#include <memory>

#include "common/status.h"
#include "config/config.h"
#include "sinks/sink.h"

namespace switchyard::sinks {

// Fails with kInvalidArgument when the path is empty. An unopenable path is not an error here
// (logged; retried at delivery).
Result<std::unique_ptr<Sink>> NewFileSink(const config::FileSinkConfig& config);

}  // namespace switchyard::sinks
