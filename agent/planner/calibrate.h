// `gpuoffload-agent calibrate`: measures every op of the registry
// (backend::ops()) on this machine over job sizes and batch sizes, on the CPU
// backend (1 thread, all threads) and on the CUDA backend end to end (copies
// and launches included), plus packet classification at the loaded rule set,
// and returns the profile the planner reads (profile.h).
#pragma once
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "backend/ops.h"
#include "planner/profile.h"

namespace gpo::planner {

struct CalibrateOptions {
  bool quick = false;          // seconds: a few small sizes, short measurements (tests)
  int gpu = 0;                 // CUDA device ordinal
  bool use_gpu = true;         // false: CPU only even when a GPU is usable
  unsigned threads = 0;        // CPU backend threads for the "all threads" figures; 0 = all
  std::string rules;           // rule file for classification; empty = built-in default.rules
  std::vector<std::string> only;  // op names to measure (default: all); "classify" for classification
  bool progress = true;        // progress bar on stderr
};

// The job shape of an op (key and iv sizes, output size), from its
// op_params(), once a CPU run of one such job succeeded: ops added to the
// registry later are measured without a list of ops here. Decompressors need
// real frames (calibrate makes them with the matching compressor).
struct JobShape {
  size_t key = 0, iv = 0;
  bool out_bound = false;  // out capacity in + in/8 + 4 KiB (compressors), else out_fixed
  size_t out_fixed = 0;    // 0: out = in.size()
  size_t out_bytes(size_t in) const { return out_bound ? in + in / 8 + 4096 : out_fixed ? out_fixed : in; }
};
std::optional<JobShape> probe_job_shape(const backend::OpInfo& op);
// 64 bytes of key material: key = first shape.key bytes, iv = from byte 32.
std::span<const uint8_t> job_key_material();

// Measures and returns the profile (machine key, points, notes). Throws
// std::runtime_error on a setup problem (bad rule file, GPU that fails).
Profile calibrate(const CalibrateOptions& opt);

// The crossover table: per op and batch size, the smallest measured job size
// from which the planner lets the GPU take a batch of that many jobs, or
// "never" (each size's threshold in jobs, at measured batch sizes or not).
struct Crossover {
  std::vector<uint64_t> batches;  // columns
  struct Row {
    std::string op;
    std::vector<std::string> cells;  // "64 KiB", "never", "-" (not measured)
    std::string best;                // best GPU speedup seen, "2.3x at 1 MiB x256", or why none
  };
  std::vector<Row> rows;
};
Crossover crossover(const Profile& p);
std::string format_crossover(const Crossover& c);

}  // namespace gpo::planner
