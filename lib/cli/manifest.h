// `switchyard manifest`: what to paste into Sentry's Developer Settings for each source, derived
// from the config (URLs from server.public_url; webhook subscriptions, "Alert Rule Action" and
// permissions from the routes).
#pragma once

#include <string>

#include "config/config.h"

namespace switchyard::cli {

// Pretty-printed JSON. Writes a warning to `warning` when public_url is not set.
std::string BuildManifest(const config::Config& config, std::string* warning);

}  // namespace switchyard::cli
