// When sample mode measures a process with probes: the decisions alone, no
// BPF (unit-tested). Every tick the spotter feeds the cumulative sample counts
// per (process, sampled op); a (process, op) whose share of one CPU over the
// last `hot_ticks` ticks reaches `hot_cpu` is hot, and gets a probe window
// unless it was measured within `cooldown`, or the process is being measured
// already, or `max_windows` are open. A window ends after `max_calls` calls or
// `max_duration`, whichever comes first: its cost is bounded per window, and
// the cooldown spreads it over time.
#pragma once
#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <utility>
#include <vector>

namespace gpo::spot {

struct WindowConfig {
  double hot_cpu = 0.05;      // share of one CPU spent in the op (0.05 = 5%)
  uint64_t min_samples = 5;   // and at least this many samples in the period
  int hot_ticks = 3;          // the period, in ticks
  uint64_t max_calls = 4096;  // calls measured per window
  std::chrono::milliseconds max_duration{2000};
  std::chrono::seconds cooldown{300};
  int max_windows = 4;
};

using SampleKey = std::pair<uint32_t, uint32_t>;  // (tgid, sample op)

class WindowPolicy {
 public:
  explicit WindowPolicy(WindowConfig cfg = {}, uint32_t freq_hz = 97) : cfg_(cfg), freq_(freq_hz) {}

  // Cumulative samples at now_ns (CLOCK_MONOTONIC); keys absent are gone.
  void observe(const std::map<SampleKey, uint64_t>& samples, uint64_t now_ns);
  // Share of one CPU over the last tick and over the hot period (0 when unknown).
  double cpu_last(const SampleKey& k) const;
  double cpu_period(const SampleKey& k) const;
  uint64_t samples_period(const SampleKey& k) const;

  // (process, op) pairs to measure now, hottest first, within max_windows.
  // open_ is the number of windows open now; busy tgids are skipped.
  std::vector<SampleKey> to_open(uint64_t now_ns, int open, const std::vector<uint32_t>& busy) const;
  // Records that a window on k ended (or could not open) at now_ns: cooldown starts.
  void measured(const SampleKey& k, uint64_t now_ns);
  bool cooling(const SampleKey& k, uint64_t now_ns) const;

  const WindowConfig& config() const { return cfg_; }

 private:
  struct History {
    std::deque<std::pair<uint64_t, uint64_t>> points;  // (now_ns, cumulative samples), newest last
  };
  WindowConfig cfg_;
  uint32_t freq_;
  std::map<SampleKey, History> hist_;
  std::map<SampleKey, uint64_t> measured_at_;
};

}  // namespace gpo::spot
