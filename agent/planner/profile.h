// The calibrated profile: what `gpuoffload-agent calibrate` measured on this
// machine, per op of the registry (backend::ops()), per job size and batch
// size: the time of a whole batch on the CPU backend (1 thread and all
// threads) and on the CUDA backend end to end (copies and launches included).
// One versioned JSON file (default /var/lib/gpuoffload/profile.json), keyed by
// the machine it was measured on; the planner and `top` read the same file.
//
//   {"format": "gpuoffload-profile", "version": 1,
//    "machine": {"gpu": "NVIDIA H100 80GB HBM3", "driver": 13000, "cpu": "...", "cores": 16},
//    "created": "2026-11-25T18:00:00Z", "quick": false, "cpu_threads": 16,
//    "ops": {"sha256": {"gpu_kernel": true, "points": [
//        {"size": 4096, "batch": 64, "cpu1_ns": ..., "cpu_ns": ..., "gpu_ns": ...}, ...]}},
//    "classify": {"rules": N, "points": [{"size": 512, "batch": 256, "cpu1_ns": ..., "cpu_ns": ...}]},
//    "notes": ["..."]}
//
// *_ns is the wall time of the whole batch; a missing (or negative) gpu_ns means
// the GPU was not measured (no GPU, or no GPU kernel for the op).
#pragma once
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace gpo::planner {

constexpr int kProfileVersion = 1;
constexpr const char* kProfileFormat = "gpuoffload-profile";
constexpr const char* kDefaultProfilePath = "/var/lib/gpuoffload/profile.json";

// What a profile is valid for: another GPU, driver, CPU or core count means
// other numbers, so such a profile is reported and ignored.
struct MachineKey {
  std::string gpu = "none";  // CUDA device name, or "none"
  int driver = 0;            // cudaDriverGetVersion(), 0 without a driver
  std::string cpu;           // /proc/cpuinfo "model name"
  unsigned cores = 0;        // hardware threads
  bool operator==(const MachineKey&) const = default;
  std::string describe() const;
};

// This machine's key; gpu is the device of ordinal `gpu` (or "none").
MachineKey this_machine(int gpu = 0);

struct Point {
  uint64_t size = 0;    // bytes per job
  uint64_t batch = 0;   // jobs per batch
  double cpu1_ns = -1;  // whole batch, CPU backend with 1 thread
  double cpu_ns = -1;   // whole batch, CPU backend with all threads
  double gpu_ns = -1;   // whole batch, CUDA backend end to end; < 0: not measured
};

struct OpProfile {
  bool gpu_kernel = false;
  std::vector<Point> points;
};

struct Profile {
  MachineKey machine;
  std::string created;  // ISO 8601 UTC
  bool quick = false;   // measured with calibrate --quick (few, short points)
  unsigned cpu_threads = 0;
  std::map<std::string, OpProfile> ops;  // by op name (backend::OpInfo::name)
  OpProfile classify;                    // packet classification (size = frame bytes, batch = frames)
  uint64_t classify_rules = 0;
  std::vector<std::string> notes;

  nlohmann::json to_json() const;
  // Throws std::runtime_error naming what is wrong (format, version, field).
  static Profile from_json(const nlohmann::json& j);
};

// Loading for use: the profile, or why there is none usable ("no profile at
// PATH", "PATH: version 0, this agent reads 1", "PATH: measured on another
// machine (...)"). The planner and top report `why` and use defaults.
struct Loaded {
  std::optional<Profile> profile;
  std::string why;
};
// expect: the machine the profile must match; nullopt accepts any (tests, top on a copied file).
Loaded load_profile(const std::string& path, const std::optional<MachineKey>& expect);
// Writes atomically (temporary file + rename), creating the directory. Throws on error.
void save_profile(const Profile& p, const std::string& path);

}  // namespace gpo::planner
