// Names the calling thread (as `top -H`, `perf` and /proc/<pid>/task/*/comm show it), so an
// operator can tell the I/O, storage and delivery threads apart. Linux keeps the first 15
// characters. Best effort: a failure is ignored.
#pragma once

namespace switchyard {

void NameThisThread(const char* name);

}  // namespace switchyard
