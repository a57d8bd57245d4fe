#include "common/allocator.h"

#include <malloc.h>

#include <cstdint>

extern "C" {
// jemalloc's control interface (jemalloc.h), declared weak: null unless the executable links
// jemalloc. Debian builds jemalloc without a symbol prefix.
int mallctl(const char* name, void* oldp, size_t* oldlenp, void* newp, size_t newlen) noexcept
    __attribute__((weak));
}

// A sanitizer (ASan, TSan) replaces malloc with its own allocator, so glibc's own arena is set
// up only when malloc_trim() or mallinfo2() first touch it, and glibc marks it initialised before
// it fills it in, without a lock. In one CI run under ASan, the dispatcher's first malloc_trim
// read address 0x8 in mtrim (an empty bin), most likely while a /metrics mallinfo2 set it up;
// an ASan program whose two threads start with malloc_trim and mallinfo2 crashes the same way
// in ~1 % of runs. Under a sanitizer, the sanitizer's allocator answers instead.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)  // GCC
#define SWITCHYARD_SANITIZER_HEAP 1
#elif defined(__has_feature)  // clang (the fuzz build)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define SWITCHYARD_SANITIZER_HEAP 1
#endif
#endif
#ifdef SWITCHYARD_SANITIZER_HEAP
extern "C" size_t __sanitizer_get_heap_size();
#endif

namespace switchyard {
#ifndef SWITCHYARD_SANITIZER_HEAP
namespace {

bool UsingJemalloc() { return mallctl != nullptr; }

}  // namespace
#endif

const char* AllocatorName() {
#ifdef SWITCHYARD_SANITIZER_HEAP
  return "sanitizer";
#else
  return UsingJemalloc() ? "jemalloc" : "glibc";
#endif
}

void ReleaseFreeMemory() {
#ifndef SWITCHYARD_SANITIZER_HEAP  // else: the sanitizer quarantines freed memory by design
  if (UsingJemalloc()) {
    // "arena.<MALLCTL_ARENAS_ALL>.purge": every arena's unused dirty pages go back at once
    // (jemalloc would otherwise return them over dirty_decay_ms, and only while it is called).
    mallctl("arena.4096.purge", nullptr, nullptr, nullptr, 0);
  } else {
    malloc_trim(0);
  }
#endif
}

size_t HeapBytes() {
#ifdef SWITCHYARD_SANITIZER_HEAP
  return __sanitizer_get_heap_size();
#else
  if (UsingJemalloc()) {
    // Statistics are snapshots, refreshed by writing "epoch".
    uint64_t epoch = 1;
    size_t len = sizeof epoch;
    mallctl("epoch", &epoch, &len, &epoch, len);
    size_t resident = 0;
    len = sizeof resident;
    if (mallctl("stats.resident", &resident, &len, nullptr, 0) != 0) return 0;
    return resident;
  }
  struct mallinfo2 mi = mallinfo2();
  return mi.arena + mi.hblkhd;
#endif
}

}  // namespace switchyard
