#include "util/log.h"

#include <atomic>
#include <cstdio>
#include <mutex>

namespace gpo::log {
namespace {
std::atomic<Level> g_level{Level::info};
std::mutex g_mu;  // keeps lines whole when several threads log
constexpr const char* kNames[] = {"error", "warn", "info", "debug"};
}  // namespace

Level level() { return g_level.load(std::memory_order_relaxed); }
void set_level(Level l) { g_level.store(l, std::memory_order_relaxed); }

bool parse_level(std::string_view s, Level& out) {
  for (int i = 0; i < 4; i++)
    if (s == kNames[i]) { out = static_cast<Level>(i); return true; }
  return false;
}

void write(Level l, std::string_view msg) {
  std::lock_guard lk(g_mu);
  std::fprintf(stderr, "gpuoffload: %s: %.*s\n", kNames[static_cast<int>(l)], int(msg.size()), msg.data());
}

}  // namespace gpo::log
