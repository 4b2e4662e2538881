#include "spot/windows.h"

#include <algorithm>

#include "spot/ops.h"

namespace gpo::spot {

void WindowPolicy::observe(const std::map<SampleKey, uint64_t>& samples, uint64_t now_ns) {
  for (auto it = hist_.begin(); it != hist_.end();)
    it = samples.count(it->first) ? std::next(it) : hist_.erase(it);
  for (const auto& [k, n] : samples) {
    auto& h = hist_[k].points;
    h.push_back({now_ns, n});
    while (h.size() > size_t(cfg_.hot_ticks) + 1) h.pop_front();
  }
}

namespace {
double share(uint64_t samples, uint64_t dt_ns, uint32_t freq) {
  return dt_ns && freq ? double(samples) / (double(freq) * double(dt_ns) * 1e-9) : 0;
}
}  // namespace

double WindowPolicy::cpu_last(const SampleKey& k) const {
  auto it = hist_.find(k);
  if (it == hist_.end() || it->second.points.size() < 2) return 0;
  const auto& p = it->second.points;
  const auto& a = p[p.size() - 2];
  const auto& b = p.back();
  return share(b.second - a.second, b.first - a.first, freq_);
}

uint64_t WindowPolicy::samples_period(const SampleKey& k) const {
  auto it = hist_.find(k);
  if (it == hist_.end() || it->second.points.size() < 2) return 0;
  return it->second.points.back().second - it->second.points.front().second;
}

double WindowPolicy::cpu_period(const SampleKey& k) const {
  auto it = hist_.find(k);
  if (it == hist_.end() || it->second.points.size() < 2) return 0;
  const auto& p = it->second.points;
  return share(p.back().second - p.front().second, p.back().first - p.front().first, freq_);
}

bool WindowPolicy::cooling(const SampleKey& k, uint64_t now_ns) const {
  auto it = measured_at_.find(k);
  return it != measured_at_.end() &&
         now_ns - it->second < uint64_t(std::chrono::duration_cast<std::chrono::nanoseconds>(cfg_.cooldown).count());
}

std::vector<SampleKey> WindowPolicy::to_open(uint64_t now_ns, int open, const std::vector<uint32_t>& busy) const {
  std::vector<std::pair<double, SampleKey>> hot;
  for (const auto& [k, h] : hist_) {
    if (h.points.size() < size_t(cfg_.hot_ticks) + 1) continue;  // a full period of history first
    if (probe_ops_of(k.second).empty()) continue;  // nothing to measure it with ("other")
    if (std::find(busy.begin(), busy.end(), k.first) != busy.end() || cooling(k, now_ns)) continue;
    double cpu = cpu_period(k);
    if (cpu >= cfg_.hot_cpu && samples_period(k) >= cfg_.min_samples) hot.push_back({cpu, k});
  }
  std::sort(hot.begin(), hot.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
  std::vector<SampleKey> out;
  std::vector<uint32_t> taken;
  for (const auto& [cpu, k] : hot) {
    if (open + int(out.size()) >= cfg_.max_windows) break;
    if (std::find(taken.begin(), taken.end(), k.first) != taken.end()) continue;  // one window per process
    out.push_back(k);
    taken.push_back(k.first);
  }
  return out;
}

void WindowPolicy::measured(const SampleKey& k, uint64_t now_ns) { measured_at_[k] = now_ns; }

}  // namespace gpo::spot
