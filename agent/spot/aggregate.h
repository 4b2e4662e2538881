// The live profile: spotted calls (ring buffer descriptors) aggregated per
// process and op: calls, bytes, log2 size distribution and a byte rate.
// Pure bookkeeping, no BPF: unit-tested on its own.
#pragma once
#include <array>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "spot.h"

namespace gpo::spot {

// Slot k counts lengths in [2^k, 2^(k+1)); 0 goes to slot 0 (as in spot.bpf.c).
uint32_t log2_slot(uint64_t len);

struct OpStats {
  uint64_t calls = 0;
  uint64_t bytes = 0;
  uint64_t max_len = 0;
  std::array<uint64_t, GPO_SPOT_HIST_SLOTS> slots{};
  double rate_bps = 0;       // bytes per second over the last tick interval
  uint64_t bytes_at_tick = 0;
  uint64_t last_ns = 0;      // ts_ns of the last call
  uint64_t mean_len() const { return calls ? bytes / calls : 0; }
};

// CPU time in one sampled op (enum gpo_sample_op), from sampling.
struct SampledOp {
  uint64_t samples = 0;  // since the process was first seen
  double cpu = 0;        // share of one CPU over the last tick
  double cpu_period = 0; // ... over the window policy's hot period
};

// A probe window on the process (sample mode): open, or the last one.
struct WindowInfo {
  bool open = false;
  uint32_t sample_op = 0;   // what made it hot
  uint64_t started_ns = 0;  // CLOCK_MONOTONIC
  uint64_t ended_ns = 0;
  uint64_t calls = 0;       // calls counted in it
  int probes = 0;
  std::string ended_by;     // "calls", "time", "exit", "stop", or why it could not open
};

struct ProcessStats {
  uint32_t tgid = 0;
  std::string comm;
  uint64_t cgroup_id = 0;
  bool kernel = false;  // some calls came from kernel entry points
  std::map<uint32_t, OpStats> ops;  // op -> large calls (ring buffer descriptors)
  // Every call's size while probed (per-process histograms in the kernel):
  // all the time in probe mode, during windows in sample mode.
  std::map<uint32_t, gpo_spot_hist> sizes;
  std::string sizes_from;             // "probe" or "window"
  std::map<uint32_t, SampledOp> sampled;  // sample op -> CPU time (sample mode)
  std::optional<WindowInfo> window;
  // Hook for the offload paths: who offloads this process's work ("" = nobody),
  // e.g. an OpenSSL provider or `exec`; `top` marks such rows. Set through
  // Aggregator::mark_offloaded; spotting itself never sets it.
  std::string offloaded_by;
  uint64_t last_seen_ns = 0;
  uint64_t bytes() const;
  double rate_bps() const;
};

class Aggregator {
 public:
  void add(const gpo_spot_event& e);
  // Updates the byte rates over [last tick, now_ns] (CLOCK_MONOTONIC) and
  // forgets processes idle for longer than idle_ns (0 = keep all).
  void tick(uint64_t now_ns, uint64_t idle_ns = 0);

  // Sampling: the process's comm and its CPU time per sampled op.
  void set_sampled(uint32_t tgid, const std::string& comm, uint32_t op, const SampledOp& s, uint64_t now_ns);
  // Probes: the process's per-op size histogram (all calls).
  void set_sizes(uint32_t tgid, uint32_t op, const gpo_spot_hist& h, const std::string& from, uint64_t now_ns);
  void set_window(uint32_t tgid, const WindowInfo& w, uint64_t now_ns);
  // The hook for the offload paths (see ProcessStats::offloaded_by); "" clears it.
  void mark_offloaded(uint32_t tgid, const std::string& by);
  void forget(uint32_t tgid) { procs_.erase(tgid); }

  const std::map<uint32_t, ProcessStats>& processes() const { return procs_; }
  const ProcessStats* process(uint32_t tgid) const;
  uint64_t events() const { return events_; }

  // Processes ordered by bytes/s then bytes, as `top` shows them.
  std::vector<const ProcessStats*> ranked() const;
  nlohmann::json to_json() const;

 private:
  std::map<uint32_t, ProcessStats> procs_;
  uint64_t events_ = 0;
  uint64_t last_tick_ns_ = 0;
};

}  // namespace gpo::spot
