// The number formatting shared by every suite (the registry is suites.cpp).
#include "bench/bench.h"

#include <fmt/format.h>

#include <sstream>

namespace gpo::bench {

std::string setting(const Options& o, const std::string& key, const std::string& dflt) {
  for (const auto& kv : o.args)
    if (kv.rfind(key + "=", 0) == 0) return kv.substr(key.size() + 1);
  return dflt;
}

bool has_setting(const Options& o, const std::string& key) {
  for (const auto& kv : o.args)
    if (kv.rfind(key + "=", 0) == 0) return true;
  return false;
}

std::vector<uint32_t> setting_list(const Options& o, const std::string& key, std::vector<uint32_t> dflt) {
  if (!has_setting(o, key)) return dflt;
  std::vector<uint32_t> out;
  std::stringstream in(setting(o, key, ""));
  std::string item;
  while (std::getline(in, item, ','))
    if (!item.empty()) out.push_back(uint32_t(std::stoul(item)));
  return out;
}

std::string fmt_rate(double v) {
  if (v >= 1e9) return fmt::format("{:.2f}G", v / 1e9);
  if (v >= 1e6) return fmt::format("{:.2f}M", v / 1e6);
  if (v >= 1e3) return fmt::format("{:.1f}K", v / 1e3);
  return fmt::format("{:.0f}", v);
}

std::string fmt_gbps(double bytes_per_second) { return fmt::format("{:.2f}", bytes_per_second / 1e9); }

std::string fmt_ratio_spread(const std::vector<double>& ratios) {
  if (ratios.empty()) return "-";
  const auto [lo, hi] = std::minmax_element(ratios.begin(), ratios.end());
  if (ratios.size() == 1) return fmt::format("{:.0f}%", 100 * *lo);
  return fmt::format("{:.0f}% ({:.0f}-{:.0f}%)", 100 * median(ratios), 100 * *lo, 100 * *hi);
}

std::string rounds_note(int rounds) {
  if (rounds == 1) return "one round (--set rounds=N for the median of N, every way once per round in rotating order)";
  return fmt::format("the median of {} rounds, every way once per round in rotating order (--set rounds=N)", rounds);
}

std::string fmt_size(size_t b) {
  if (b >= (size_t{1} << 20) && b % (size_t{1} << 20) == 0) return fmt::format("{} MiB", b >> 20);
  if (b >= 1024 && b % 1024 == 0) return fmt::format("{} KiB", b >> 10);
  return fmt::format("{} B", b);
}

}  // namespace gpo::bench
