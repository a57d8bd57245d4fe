// The `switchyard` command line (CONTRACT.md §2). Parses arguments and dispatches.
#pragma once

namespace switchyard::cli {

// Returns the process exit code: 0 success, 1 user error, 2 runtime failure.
int Main(int argc, char** argv);

}  // namespace switchyard::cli
