// The planner: for a batch (op, mean job size, job count) it predicts the
// completion time on each backend = the work already queued there + the
// batch's cost from the calibrated profile (interpolated in job size and batch
// size), and picks the sooner. Observed batch times refine the predictions
// online (an EWMA of observed/predicted per op, backend and size bucket).
// Without a usable profile it runs on conservative defaults (the GPU only for
// big batches of big jobs) and says so.
#pragma once
#include <array>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "planner/profile.h"

namespace gpo::planner {

enum class Where : uint8_t { cpu = 0, gpu = 1 };
const char* where_name(Where w);

struct Decision {
  Where where = Where::cpu;
  double cpu_cost_ns = 0, gpu_cost_ns = -1;  // the batch alone; gpu < 0: the GPU cannot take it
  double cpu_wait_ns = 0, gpu_wait_ns = 0;   // work queued on each backend before it
  bool cpu_inline = false;  // CPU: run on the submitting thread (small batch: cheaper than waking the pool)
  double cpu_done_ns() const { return cpu_wait_ns + cpu_cost_ns; }
  double gpu_done_ns() const { return gpu_cost_ns < 0 ? -1 : gpu_wait_ns + gpu_cost_ns; }
  std::string source;  // "profile", "defaults (no profile)", "defaults (op not in profile)"
  std::string reason;  // why, in a few words ("GPU sooner", "no GPU kernel", "GPU backlog", ...)
};

struct PlannerOptions {
  bool gpu_usable = false;   // a CUDA backend is there to take batches
  unsigned cpu_threads = 0;  // the CPU backend's pool (defaults model); 0 = all cores
  double ewma_alpha = 0.25;  // weight of a new observation in the online correction
};

// Conservative defaults without a profile: the GPU only for batches of at
// least kDefaultGpuMinBatchBytes made of jobs of at least kDefaultGpuMinJobBytes.
constexpr uint64_t kDefaultGpuMinJobBytes = 64 << 10;
constexpr uint64_t kDefaultGpuMinBatchBytes = 16 << 20;
// A CPU batch predicted to take at most this long on one thread runs inline on
// the submitting thread when that beats the pool (whose wake-up costs more
// than a tiny batch); longer ones go to the pool, so the batcher's loop never
// blocks for long.
constexpr double kInlineMaxNs = 50'000;

// The CPU time of a measured point as the planner runs it: one thread inline
// when that is sooner and short (kInlineMaxNs), else the pool (all threads).
double effective_cpu_ns(const Point& p, bool* inline_cpu = nullptr);

class Planner {
 public:
  // profile: the calibrated profile, or nullopt with why (load_profile()'s reason).
  Planner(std::optional<Profile> profile, std::string why_none, PlannerOptions opt);

  bool has_profile() const { return profile_.has_value(); }
  // "planner: profile PATH (GPU ..., 2026-11-25...)" or "planner: no profile (defaults), run calibrate (why)".
  std::string status_line() const;

  // Decision for a batch of `count` jobs of op (registry name) averaging mean_size bytes,
  // given what is queued now. Unknown op: CPU, reason "unknown op".
  Decision plan(std::string_view op, uint64_t mean_size, uint64_t count) const;
  // The batch's predicted cost on one backend (no queue), online correction applied; < 0: cannot run there.
  double cost_ns(std::string_view op, Where w, uint64_t mean_size, uint64_t count, std::string* source = nullptr,
                 bool* cpu_inline = nullptr) const;

  // Dispatch bookkeeping: a batch decided `d` goes to d.where; its predicted
  // cost joins that backend's queue until finished() takes it off and feeds
  // the observed time (ns the backend spent on it) to the online correction.
  struct Ticket {
    std::string op;
    Where where = Where::cpu;
    uint64_t mean_size = 0, count = 0;
    double predicted_ns = 0;
    bool cpu_inline = false;  // runs on the submitting thread: never queued
  };
  Ticket dispatched(std::string_view op, Where where, uint64_t mean_size, uint64_t count);
  void finished(const Ticket& t, double observed_ns);

  // Tests and `plan`: pretend this much work is queued on a backend.
  void set_backlog_ns(Where w, double ns);
  double backlog_ns(Where w) const;
  // The online correction factor (observed/predicted) now applied to op on w at this size (1 = none yet).
  double correction(std::string_view op, Where w, uint64_t mean_size) const;

  // Per op: batches and jobs sent to each backend (status, metrics).
  nlohmann::json to_json() const;

 private:
  double raw_cost_ns(std::string_view op, Where w, uint64_t mean_size, uint64_t count, std::string* source,
                     bool* cpu_inline = nullptr) const;
  static int bucket(uint64_t size);

  std::optional<Profile> profile_;
  std::string why_none_;
  PlannerOptions opt_;
  mutable std::mutex mu_;
  std::array<double, 2> backlog_{0, 0};
  struct Count {
    uint64_t batches[2] = {0, 0};
    uint64_t jobs[2] = {0, 0};
  };
  std::map<std::string, Count, std::less<>> counts_;
  std::map<std::tuple<std::string, int, int>, double, std::less<>> factor_;  // (op, where, bucket) -> EWMA
};

// The cost of a batch from profile points (one op), interpolated: piecewise
// linear in batch size at each measured job size, then piecewise linear in job
// size; beyond the largest batch or size, linear extrapolation of the last
// throughput; below the smallest size, the smallest size's time. field selects
// cpu1_ns, cpu_ns or gpu_ns. nullopt when no point has that field.
enum class Field { cpu1, cpu, gpu };
std::optional<double> interpolate(const std::vector<Point>& pts, Field f, uint64_t size, uint64_t batch);

}  // namespace gpo::planner
