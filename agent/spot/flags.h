// The spotting flags `run` and `top` share, and their translation to SpotOptions.
#pragma once
#include <CLI/CLI.hpp>

#include <string>
#include <vector>

#include "spot/spotter.h"

namespace gpo::spot {

constexpr const char* kDefaultSnapshot = "/run/gpuoffload/spot.json";
constexpr const char* kDefaultProfile = "/var/lib/gpuoffload/profile.json";

struct SpotFlags {
  std::vector<std::string> thresholds;  // "op=bytes"
  std::vector<std::string> libs;        // extra library files
  bool no_kernel = false;
  bool no_proc_scan = false;
  std::string mode = "sample";
  uint32_t sample_hz = 97;
  double hot = 0.05;
  uint64_t window_calls = 4096;
  uint32_t remeasure_s = 300;
};

// Adds --spot-mode, --spot-threshold, --spot-lib, --spot-no-kernel,
// --spot-no-proc-scan and the sample-mode knobs to cmd.
void add_spot_flags(CLI::App* cmd, SpotFlags& f);

// Throws CLI::ValidationError on a bad threshold.
SpotOptions make_spot_options(const SpotFlags& f);

}  // namespace gpo::spot
