// Expansion of ${...} references in config scalars (CONTRACT.md §3). Internal to lib/config.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "common/status.h"

namespace switchyard::config {

// Largest file or credential a ${file:...} / ${credential:...} reference may read.
inline constexpr size_t kMaxInterpolatedFileBytes = 1 << 20;

// Expands every reference in `text`:
//   ${env:NAME}            the variable's value; an error if it is unset
//   ${env:NAME:-DEFAULT}   the variable's value, or DEFAULT (may be empty) if unset or empty
//   ${file:PATH}           the file's content, one trailing newline removed (PATH relative to the
//                          working directory)
//   ${credential:NAME}     the file $CREDENTIALS_DIRECTORY/NAME, read like ${file:...}
//   $${                    a literal "${"
// A reference ends at the first '}', so DEFAULT and PATH cannot contain '}'. Expanded values are
// never expanded again. Sets *substituted when at least one reference was expanded (the result
// may then hold a secret). On error, the message names the reference but never a value read from
// the environment or a file, and *error_offset (if given) is the offset in `text` of the fault.
Result<std::string> Interpolate(std::string_view text, bool* substituted,
                                size_t* error_offset = nullptr);

}  // namespace switchyard::config
