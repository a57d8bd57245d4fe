#pragma once

#include <cstddef>

// The process's heap allocator. The daemon links jemalloc (see CMakeLists.txt), which then
// replaces malloc for the whole process; the test binaries use glibc's malloc and sanitizer
// builds the sanitizer's. These calls work with each: the library refers to jemalloc only
// through a weak symbol.
namespace switchyard {

// "jemalloc", "glibc" or "sanitizer".
const char* AllocatorName();

// Hands freed heap memory back to the OS. May take milliseconds on a large heap: call it off the
// I/O threads. Thread-safe.
void ReleaseFreeMemory();

// Bytes of heap memory the allocator holds from the OS (in use or cached). Thread-safe.
size_t HeapBytes();

}  // namespace switchyard
