// The planner: for a batch (op, mean job size, job count) it predicts the
// completion time on each backend from the calibrated profile (interpolated
// in job size and batch size) and the work already queued there, and picks
// by its objective: `time` (the sooner, default) or `cpu` (the GPU whenever
// it finishes at most `slack` later than the CPU would: it frees the cores).
//
// The CPU backend runs batches at once on its threads, so its queue is work
// shared by all threads: done = max(the batch's own time on the pool,
// (queued work + the batch's work) / threads). The GPU runs one after another:
// done = queued + the batch's time. Observed figures refine the predictions
// online (an EWMA of observed/predicted per op, backend and size bucket): the
// CPU's from the thread CPU time a batch took, the GPU's from its wall time.
// Without a usable profile it runs on conservative defaults (the GPU only for
// big batches of big jobs) and says so.
#pragma once
#include <array>
#include <cstdint>
#include <limits>
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

enum class Objective : uint8_t { time = 0, cpu = 1 };
const char* objective_name(Objective o);
std::optional<Objective> parse_objective(std::string_view s);

// Where the GPU may take an op's batches at all, from the profile alone: per
// measured job size the smallest job count from which the GPU takes the batch
// (monotonic: more jobs of that size never move it back to the CPU), chosen
// over that size's measured points to minimise the summed relative loss
// against the better backend at each point, each capped at 0.5 (one noisy
// cell cannot open or close a range by itself; ties keep the CPU); and the
// GPU's round trip (its
// fastest measured batches), which a batch whose CPU time on the cores it
// gets (a worker per chunk of the CPU backend) is shorter than never pays.
struct GpuGate {
  struct Threshold {
    uint64_t size = 0;
    uint64_t min_batch = 0;  // kNever: not at this size
  };
  std::vector<Threshold> by_size;  // ascending size
  double round_trip_ns = -1;       // median of the op's three fastest GPU batches; < 0: none
  // The smallest job count the GPU takes at mean job size `size`: between two
  // measured sizes the larger of their thresholds; beyond them the nearest's.
  uint64_t min_batch(uint64_t size) const;
};
// gpu_weight scales the GPU's times before they are compared with the CPU's:
// 1 + doubt (objective time), 1 / (1 + slack) (objective cpu).
GpuGate gpu_gate(const std::vector<Point>& pts, double gpu_weight);

struct Decision {
  Where where = Where::cpu;
  double cpu_cost_ns = 0, gpu_cost_ns = -1;  // the batch alone; gpu < 0: the GPU cannot take it
  double cpu_work_ns = 0;                    // CPU: thread time of the batch (one thread, all of it)
  double cpu_wait_ns = 0, gpu_wait_ns = 0;   // how much the work queued on each backend delays it
  double cpu_done_ns() const { return cpu_wait_ns + cpu_cost_ns; }
  double gpu_done_ns() const { return gpu_cost_ns < 0 ? -1 : gpu_wait_ns + gpu_cost_ns; }
  std::string source;  // "profile", "defaults (no profile)", "defaults (op not in profile)"
  std::string reason;  // why, in a few words ("GPU sooner", "no GPU kernel", "GPU backlog", ...)
};

struct PlannerOptions {
  bool gpu_usable = false;   // a CUDA backend is there to take batches
  unsigned cpu_threads = 0;  // the CPU backend's pool; 0 = all cores
  double ewma_alpha = 0.25;  // weight of a new observation in the online correction
  Objective objective = Objective::time;
  double slack = 0.25;       // objective cpu: the GPU may finish this fraction later than the CPU
  // Objective time: the GPU's predictions count this fraction longer. A
  // prediction is one calibration pass and a model; a batch misrouted to the
  // GPU costs the round trip and a queue, one misrouted to the CPU only the
  // difference. In doubt, the CPU.
  double doubt = 0.10;
};

// Conservative defaults without a profile: the GPU only for batches of at
// least kDefaultGpuMinBatchBytes made of jobs of at least kDefaultGpuMinJobBytes.
constexpr uint64_t kDefaultGpuMinJobBytes = 64 << 10;
constexpr uint64_t kDefaultGpuMinBatchBytes = 16 << 20;

// What one job costs a client to go through the agent rather than run in its
// own process: a round trip (doorbell, wake-ups, completion; 60-70 us
// measured on a 16-core host with the socket or the uprobe doorbell) and the
// copies into and out of the slab (about 10 GB/s each way).
constexpr double kOffloadRoundTripNs = 60'000;
constexpr double kOffloadCopyNsPerByte = 0.2;
// The plan page's "never" (GPO_PLAN_NEVER).
constexpr uint64_t kNever = std::numeric_limits<uint64_t>::max();

// The CPU time of a measured point as the CPU backend runs it: its pool, or
// one thread when the pool measured slower (a batch of one chunk runs on one
// worker; a pool figure above that is a wake-up or noise).
double effective_cpu_ns(const Point& p);

class Planner {
 public:
  // profile: the calibrated profile, or nullopt with why (load_profile()'s reason).
  Planner(std::optional<Profile> profile, std::string why_none, PlannerOptions opt);

  bool has_profile() const { return profile_.has_value(); }
  const PlannerOptions& options() const { return opt_; }
  // "planner: profile of ... (objective time)" or "planner: no profile (defaults), run calibrate (why)".
  std::string status_line() const;

  // Decision for a batch of `count` jobs of op (registry name) averaging mean_size bytes,
  // given what is queued now. Unknown op: CPU, reason "unknown op".
  Decision plan(std::string_view op, uint64_t mean_size, uint64_t count) const;
  // The batch's predicted cost on one backend (no queue), online correction
  // applied; < 0: cannot run there. CPU: its time on the pool; work: its
  // thread time (one thread, the whole batch).
  double cost_ns(std::string_view op, Where w, uint64_t mean_size, uint64_t count, std::string* source = nullptr) const;
  double cpu_work_ns(std::string_view op, uint64_t mean_size, uint64_t count) const;

  // For clients (the plan page): the smallest job size of op from which one
  // job sent through the agent (kOffloadRoundTripNs and the copies included),
  // alone or with one from every core in the same GPU batch, is better on the
  // GPU than in the client's own thread under the objective, for that size
  // and every larger measured one; kNever when
  // none is (no GPU, no GPU kernel, the CPU wins at every size, or no
  // measured point of the op: without a profile nothing leaves the client).
  uint64_t offload_min_bytes(std::string_view op) const;

  // Dispatch bookkeeping: a batch decided `d` goes to d.where; its predicted
  // cost joins that backend's queue until finished() takes it off.
  struct Ticket {
    std::string op;
    Where where = Where::cpu;
    uint64_t mean_size = 0, count = 0;
    double predicted_ns = 0;  // CPU: the batch's work; GPU: its time
    double queued_ns = 0;     // what it added to the backend's queue
    double cpu_work_ns = 0;   // what it would cost the CPU (for CPU seconds saved)
  };
  Ticket dispatched(std::string_view op, Where where, uint64_t mean_size, uint64_t count);
  // observed_ns: CPU: the thread CPU time the batch took; GPU: its wall time
  // on the GPU backend. host_cpu_ns: host CPU time the backend spent on it.
  void finished(const Ticket& t, double observed_ns, double host_cpu_ns = 0);

  // Tests and `plan`: pretend the backend is busy for this long (the CPU: all its threads).
  void set_backlog_ns(Where w, double ns);
  double backlog_ns(Where w) const;
  // The online correction factor (observed/predicted) now applied to op on w at this size (1 = none yet).
  double correction(std::string_view op, Where w, uint64_t mean_size) const;

  // CPU seconds: what the GPU batches would have cost the CPU (predicted
  // work), the host CPU time they did cost, and the difference (saved).
  struct CpuSeconds {
    double moved = 0, gpu_host = 0, cpu_backend = 0;
    double saved() const { return moved - gpu_host; }
  };
  CpuSeconds cpu_seconds() const;

  // Per op: batches and jobs sent to each backend, CPU seconds (status, metrics).
  nlohmann::json to_json() const;

 private:
  double raw_cost_ns(std::string_view op, Where w, uint64_t mean_size, uint64_t count, std::string* source) const;
  double raw_cpu_work_ns(std::string_view op, uint64_t mean_size, uint64_t count) const;
  static int bucket(uint64_t size);

  std::optional<Profile> profile_;
  std::string why_none_;
  PlannerOptions opt_;
  mutable std::mutex mu_;
  std::array<double, 2> backlog_{0, 0};  // ns of the whole backend
  CpuSeconds seconds_;
  struct Count {
    uint64_t batches[2] = {0, 0};
    uint64_t jobs[2] = {0, 0};
  };
  std::map<std::string, Count, std::less<>> counts_;
  std::map<std::tuple<std::string, int, int>, double, std::less<>> factor_;  // (op, where, bucket) -> EWMA
  std::map<std::string, GpuGate, std::less<>> gates_;  // per op of the profile, for these options
};

// The cost of a batch from profile points (one op), interpolated: piecewise
// linear in batch size at each measured job size, then piecewise linear in job
// size; beyond the largest batch or size, linear extrapolation of the last
// throughput; below the smallest size, the smallest size's time. field selects
// cpu1_ns, cpu_ns or gpu_ns. nullopt when no point has that field.
enum class Field { cpu1, cpu, gpu };
std::optional<double> interpolate(const std::vector<Point>& pts, Field f, uint64_t size, uint64_t batch);

}  // namespace gpo::planner
