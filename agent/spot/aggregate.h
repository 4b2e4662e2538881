// The live profile: spotted calls (ring buffer descriptors) aggregated per
// process and op: calls, bytes, log2 size distribution and a byte rate.
// Pure bookkeeping, no BPF: unit-tested on its own.
#pragma once
#include <array>
#include <cstdint>
#include <map>
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

struct ProcessStats {
  uint32_t tgid = 0;
  std::string comm;
  uint64_t cgroup_id = 0;
  bool kernel = false;  // some calls came from kernel entry points
  std::map<uint32_t, OpStats> ops;  // op -> stats
  uint64_t bytes() const;
  double rate_bps() const;
};

class Aggregator {
 public:
  void add(const gpo_spot_event& e);
  // Updates the byte rates over [last tick, now_ns] (CLOCK_MONOTONIC) and
  // forgets processes idle for longer than idle_ns (0 = keep all).
  void tick(uint64_t now_ns, uint64_t idle_ns = 0);

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
