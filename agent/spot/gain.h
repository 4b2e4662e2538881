// What offload would gain a spotted process, from the planner's calibrated
// profile (`gpuoffload-agent calibrate`). Without a profile the answer is
// "no profile: run calibrate"; nothing is guessed.
//
// The profile is the planner's (agent/planner/profile.h, docs/planner.md),
// accepted only when measured on this machine. Per op and job size it uses the
// largest batch the GPU was measured on: time per job on all CPU threads vs the
// GPU end to end (transfers and launch included). The nearest size (log scale) is used.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace gpo::spot {

// The planner key (op registry name) of a spotted op ("aes-256-gcm-encrypt", "sha256",
// "zstd-compress"), or "" when
// no GPU implementation exists for it (decompress, deflate, crc32). EVP cipher
// updates do not say which cipher they run (see docs/spotting.md): AES-256-GCM
// is assumed, the op the GPU path implements.
std::string planner_key(uint32_t op);

class GainModel {
 public:
  struct Point { uint64_t size; double cpu_ns; double gpu_ns; };
  // Empty model (has_profile() false) when path is missing or unreadable; why in error().
  static GainModel load(const std::string& path);
  bool has_profile() const { return loaded_; }
  const std::string& error() const { return error_; }
  // "2.3x faster on GPU", "CPU faster (GPU 0.4x)", "no profile: run calibrate", "no GPU kernel".
  std::string describe(uint32_t op, uint64_t mean_len) const;
  // Predicted speedup (cpu/gpu time); 0 when unknown.
  double speedup(uint32_t op, uint64_t mean_len) const;

  void add_point(const std::string& key, Point p) { loaded_ = true; ops_[key].push_back(p); }

 private:
  bool loaded_ = false;
  std::string error_;
  std::map<std::string, std::vector<Point>> ops_;
};

}  // namespace gpo::spot
