// Built-in sample webhooks (one per Sentry resource) for `switchyard send-test`.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace switchyard::cli {

// The compact JSON body of the sample for `resource`, or nullopt if there is none.
std::optional<std::string> SampleBody(std::string_view resource);
std::vector<std::string> SampleResources();

}  // namespace switchyard::cli
