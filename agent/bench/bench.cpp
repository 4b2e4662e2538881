// The suite registry and the number formatting shared by every suite.
#include "bench/bench.h"

#include <fmt/format.h>

#include <mutex>

namespace gpo::bench {

// One call per suite file. A new suite: a new agent/bench/<name>.cpp that
// defines register_<name>_bench(), declared and called here.
void register_builtin_suites();

namespace {
std::vector<Suite>& registry() {
  static std::vector<Suite> r;
  return r;
}
}  // namespace

void register_suite(Suite s) { registry().push_back(s); }

std::span<const Suite> suites() {
  static std::once_flag once;
  std::call_once(once, register_builtin_suites);
  return registry();
}

const Suite* find_suite(std::string_view name) {
  for (const auto& s : suites())
    if (s.name == name) return &s;
  return nullptr;
}

std::string fmt_rate(double v) {
  if (v >= 1e9) return fmt::format("{:.2f}G", v / 1e9);
  if (v >= 1e6) return fmt::format("{:.2f}M", v / 1e6);
  if (v >= 1e3) return fmt::format("{:.1f}K", v / 1e3);
  return fmt::format("{:.0f}", v);
}

std::string fmt_gbps(double bytes_per_second) { return fmt::format("{:.2f}", bytes_per_second / 1e9); }

std::string fmt_size(size_t b) {
  if (b >= (size_t{1} << 20) && b % (size_t{1} << 20) == 0) return fmt::format("{} MiB", b >> 20);
  if (b >= 1024 && b % 1024 == 0) return fmt::format("{} KiB", b >> 10);
  return fmt::format("{} B", b);
}

}  // namespace gpo::bench
