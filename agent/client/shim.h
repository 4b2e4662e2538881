// What the shim core's files share (shim.cpp: one-shot calls; shim_zstd.cpp:
// zstd contexts and streams): the recursion guard, the size threshold, and
// lookup of the real functions. The core is opened by the shim's front
// (shim_front.c), which users preload and which gives it the last two.
#pragma once
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

// What the front gives the core when it opens it (gpo_shim_core_attach):
// the next definition of a function after the front (the program's own), and
// the threshold (GPO_SHIM_MIN_BYTES, default 64 KiB) below which one-shot
// calls are not offered; and the two calls that let the front send a
// stream's calls straight to libzstd while the core has left its frame to
// libzstd (pass: this thread's context c is in such a frame; end_pass: some
// frame ended or some context went, so the front forgets every such note).
// Atomic: threads that open the core at once each attach it, with the same
// pointers.
struct Front {
  std::atomic<void* (*)(const char* name)> next{nullptr};
  std::atomic<size_t (*)()> min_bytes{nullptr};
  std::atomic<void (*)(void* c)> pass{nullptr};
  std::atomic<void (*)()> end_pass{nullptr};
};
extern Front g_front;

inline size_t threshold() { return g_front.min_bytes.load(std::memory_order_relaxed)(); }
inline void front_pass(void* c) {
  if (auto f = g_front.pass.load(std::memory_order_relaxed)) f(c);
}
inline void front_end_pass() {
  if (auto f = g_front.end_pass.load(std::memory_order_relaxed)) f();
}

// Resolves the next definition once; safe from many threads (a racing second
// lookup stores the same pointer).
template <typename F>
F real(std::atomic<F>& slot, const char* name) {
  F f = slot.load(std::memory_order_acquire);
  if (!f) {
    f = reinterpret_cast<F>(g_front.next.load(std::memory_order_relaxed)(name));
    slot.store(f, std::memory_order_release);
  }
  return f;
}

// Nanoseconds of a steady clock, for the time of offloaded calls (gpo_account).
unsigned long long now_ns();

}  // namespace gpo::shim
