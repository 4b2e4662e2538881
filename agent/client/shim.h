// What the shim's files share (shim.cpp: one-shot calls; shim_zstd.cpp: zstd
// contexts and streams): the recursion guard, the size threshold, and lookup
// of the real functions.
#pragma once
#include <dlfcn.h>

#include <atomic>
#include <cstddef>

namespace gpo::shim {

// True while the shim is on this thread's stack: calls made from inside it
// (the library's own CPU fallback calls libzstd and zlib, libzstd's wrappers
// call each other) go to the real functions.
extern thread_local bool t_inside;

struct Guard {
  Guard() { t_inside = true; }
  ~Guard() { t_inside = false; }
  Guard(const Guard&) = delete;
  Guard& operator=(const Guard&) = delete;
};

// GPO_SHIM_MIN_BYTES (default 64 KiB): one-shot calls below it are not offered.
size_t threshold();

// Resolves the next definition once; safe from many threads (a racing second
// lookup stores the same pointer). lib: the library that defines it, opened
// when no later object of the global scope does (the program loaded it
// RTLD_LOCAL, e.g. from a plugin; the shim does not bring libcrypto along).
template <typename F>
F real(std::atomic<F>& slot, const char* name, const char* lib = nullptr) {
  F f = slot.load(std::memory_order_acquire);
  if (!f) {
    f = reinterpret_cast<F>(dlsym(RTLD_NEXT, name));
    if (!f && lib)
      if (void* h = dlopen(lib, RTLD_NOW | RTLD_LOCAL)) f = reinterpret_cast<F>(dlsym(h, name));
    slot.store(f, std::memory_order_release);
  }
  return f;
}

// Nanoseconds of a steady clock, for the time of offloaded calls (gpo_account).
unsigned long long now_ns();

}  // namespace gpo::shim
