// The daemon's lifecycle: load config, open storage, bind listeners, serve, reload on SIGHUP,
// drain and exit on SIGTERM/SIGINT. Runs on the calling (main) thread until stopped.
#pragma once

#include <string>

namespace switchyard::app {

// Exit codes (CONTRACT.md §2): 0 success, 1 user error (bad config), 2 runtime failure.
int RunDaemon(const std::string& config_path);

// Validates the config; prints FILE:LINE:COL: message lines to stderr. Returns 0 or 1.
int CheckConfig(const std::string& config_path);

}  // namespace switchyard::app
