#include "planner/planner.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <thread>

#include "backend/cpu_backend.h"
#include "backend/ops.h"

namespace gpo::planner {

const char* where_name(Where w) { return w == Where::gpu ? "gpu" : "cpu"; }

namespace {

double field_of(const Point& p, Field f) {
  switch (f) {
    case Field::cpu1: return p.cpu1_ns;
    case Field::cpu: return p.cpu_ns;
    case Field::gpu: return p.gpu_ns;
  }
  return -1;
}

// Time of `batch` jobs at one measured size: (batch, ns) sorted by batch.
double along_batch(const std::vector<std::pair<uint64_t, double>>& v, uint64_t batch) {
  if (batch <= v.front().first) return v.front().second * double(batch) / double(v.front().first);
  if (batch >= v.back().first) return v.back().second * double(batch) / double(v.back().first);
  for (size_t i = 1; i < v.size(); ++i)
    if (batch <= v[i].first) {
      const auto& [b0, t0] = v[i - 1];
      const auto& [b1, t1] = v[i];
      return t0 + (t1 - t0) * double(batch - b0) / double(b1 - b0);
    }
  return v.back().second;
}

// Defaults without a profile: a plain CPU (1 GB/s and 1 us per job per
// thread) and a GPU behind PCIe (50 us launch and sync, 20 GB/s end to end).
// Rough on purpose; the gate in plan() keeps small work on the CPU.
double default_cpu_ns(uint64_t size, uint64_t count, unsigned threads) {
  const double per_job = 1000.0 + double(size) / 1.0;  // ns at 1 GB/s
  const double rounds = std::ceil(double(count) / double(std::max(1u, threads)));
  return rounds * per_job;
}
double default_gpu_ns(uint64_t size, uint64_t count) { return 50'000.0 + double(size) * double(count) / 20.0; }

}  // namespace

double effective_cpu_ns(const Point& p) {
  if (p.cpu_ns > 0 && p.cpu1_ns > 0) return std::min(p.cpu_ns, p.cpu1_ns);
  return p.cpu_ns > 0 ? p.cpu_ns : p.cpu1_ns;
}

GpuGate gpu_gate(const std::vector<Point>& pts, double gpu_weight) {
  GpuGate g;
  std::map<uint64_t, std::vector<const Point*>> by_size;
  std::vector<double> gpu;
  for (const auto& p : pts) {
    if (p.gpu_ns <= 0 || effective_cpu_ns(p) <= 0) continue;
    by_size[p.size].push_back(&p);
    gpu.push_back(p.gpu_ns);
  }
  // The round trip: the median of the three fastest GPU batches, so that one
  // lucky measurement does not set it.
  std::sort(gpu.begin(), gpu.end());
  if (!gpu.empty()) g.round_trip_ns = gpu[std::min<size_t>(1, gpu.size() - 1)];
  for (auto& [size, v] : by_size) {
    std::sort(v.begin(), v.end(), [](const Point* a, const Point* b) { return a->batch < b->batch; });
    // Loss of each choice at each point, relative to the better choice there.
    const size_t n = v.size();
    std::vector<double> loss_cpu(n), loss_gpu(n);
    for (size_t i = 0; i < n; ++i) {
      const double c = effective_cpu_ns(*v[i]), gp = v[i]->gpu_ns * gpu_weight, best = std::min(c, gp);
      // A point's loss counts at most as a 1.5x loss: one cell, however far
      // off (a wake-up caught, a lucky GPU run), weighs no more than its
      // neighbours' moderate losses.
      loss_cpu[i] = std::min(0.5, c / best - 1);
      loss_gpu[i] = std::min(0.5, gp / best - 1);
    }
    // Threshold k: the CPU below v[k], the GPU from v[k] on; k = n: never.
    // Scanned from "never" down, so that a tie keeps the larger threshold.
    double below = 0, from = 0;
    for (size_t i = 0; i < n; ++i) below += loss_cpu[i];
    size_t best_k = n;
    double best_loss = below;
    for (size_t k = n; k-- > 0;) {
      below -= loss_cpu[k];
      from += loss_gpu[k];
      if (below + from < best_loss - 1e-12) best_loss = below + from, best_k = k;
    }
    g.by_size.push_back({size, best_k == n ? kNever : (best_k == 0 ? 1 : v[best_k]->batch)});
  }
  return g;
}

uint64_t GpuGate::min_batch(uint64_t size) const {
  if (by_size.empty()) return kNever;
  if (size <= by_size.front().size) return by_size.front().min_batch;
  if (size >= by_size.back().size) return by_size.back().min_batch;
  for (size_t i = 1; i < by_size.size(); ++i)
    if (size <= by_size[i].size)
      return size == by_size[i].size ? by_size[i].min_batch
                                     : std::max(by_size[i - 1].min_batch, by_size[i].min_batch);
  return kNever;
}

const char* objective_name(Objective o) { return o == Objective::cpu ? "cpu" : "time"; }

std::optional<Objective> parse_objective(std::string_view s) {
  if (s == "time") return Objective::time;
  if (s == "cpu") return Objective::cpu;
  return std::nullopt;
}

std::optional<double> interpolate(const std::vector<Point>& pts, Field f, uint64_t size, uint64_t batch) {
  std::map<uint64_t, std::vector<std::pair<uint64_t, double>>> by_size;
  for (const auto& p : pts) {
    double t = field_of(p, f);
    if (t > 0) by_size[p.size].push_back({p.batch, t});
  }
  if (by_size.empty()) return std::nullopt;
  for (auto& [s, v] : by_size) std::sort(v.begin(), v.end());
  batch = std::max<uint64_t>(batch, 1);
  auto first = by_size.begin();
  auto last = std::prev(by_size.end());
  if (size <= first->first) return along_batch(first->second, batch);
  if (size >= last->first) return along_batch(last->second, batch) * double(size) / double(last->first);
  auto hi = by_size.lower_bound(size);
  if (hi->first == size) return along_batch(hi->second, batch);
  auto lo = std::prev(hi);
  const double t0 = along_batch(lo->second, batch), t1 = along_batch(hi->second, batch);
  return t0 + (t1 - t0) * double(size - lo->first) / double(hi->first - lo->first);
}

Planner::Planner(std::optional<Profile> profile, std::string why_none, PlannerOptions opt)
    : profile_(std::move(profile)), why_none_(std::move(why_none)), opt_(opt) {
  if (opt_.cpu_threads == 0) opt_.cpu_threads = std::max(1u, std::thread::hardware_concurrency());
  const double weight =
      opt_.objective == Objective::cpu ? 1.0 / (1.0 + std::max(0.0, opt_.slack)) : 1.0 + std::max(0.0, opt_.doubt);
  if (profile_)
    for (const auto& [name, op] : profile_->ops) gates_[name] = gpu_gate(op.points, weight);
}

std::string Planner::status_line() const {
  const std::string obj = opt_.objective == Objective::cpu
                              ? fmt::format("objective cpu: the GPU when at most {:.0f}% later", opt_.slack * 100)
                              : "objective time";
  if (profile_)
    return fmt::format("planner: profile of {} ({}{}), {}", profile_->created, profile_->machine.describe(),
                       profile_->quick ? ", quick calibration" : "", obj);
  return fmt::format("planner: no profile (defaults), run calibrate ({}), {}", why_none_, obj);
}

int Planner::bucket(uint64_t size) { return size ? int(std::log2(double(size))) : 0; }

double Planner::raw_cost_ns(std::string_view op, Where w, uint64_t mean_size, uint64_t count,
                            std::string* source) const {
  const auto* info = backend::find_op(op);
  if (!info) return -1;
  if (w == Where::gpu && (!info->gpu || !opt_.gpu_usable)) return -1;
  if (profile_) {
    auto it = profile_->ops.find(std::string(op));
    if (it != profile_->ops.end()) {
      auto t = interpolate(it->second.points, w == Where::gpu ? Field::gpu : Field::cpu, mean_size, count);
      if (w == Where::cpu) {
        // The pool never takes longer than one thread doing it all (a batch of
        // one chunk runs on one worker): a pool figure above that is noise.
        auto one = interpolate(it->second.points, Field::cpu1, mean_size, count);
        if (one && (!t || *one < *t)) t = one;
      }
      if (t) {
        if (source) *source = "profile";
        return *t;
      }
    }
  }
  if (source) *source = profile_ ? "defaults (op not in profile)" : "defaults (no profile)";
  return w == Where::gpu ? default_gpu_ns(mean_size, count) : default_cpu_ns(mean_size, count, opt_.cpu_threads);
}

double Planner::raw_cpu_work_ns(std::string_view op, uint64_t mean_size, uint64_t count) const {
  if (profile_) {
    auto it = profile_->ops.find(std::string(op));
    if (it != profile_->ops.end())
      if (auto t = interpolate(it->second.points, Field::cpu1, mean_size, count)) return *t;
  }
  return default_cpu_ns(mean_size, count, 1);
}

double Planner::correction(std::string_view op, Where w, uint64_t mean_size) const {
  std::lock_guard lk(mu_);
  auto it = factor_.find(std::make_tuple(std::string(op), int(w), bucket(mean_size)));
  return it == factor_.end() ? 1.0 : it->second;
}

double Planner::cost_ns(std::string_view op, Where w, uint64_t mean_size, uint64_t count, std::string* source) const {
  double raw = raw_cost_ns(op, w, mean_size, count, source);
  return raw < 0 ? raw : raw * correction(op, w, mean_size);
}

double Planner::cpu_work_ns(std::string_view op, uint64_t mean_size, uint64_t count) const {
  return raw_cpu_work_ns(op, mean_size, count) * correction(op, Where::cpu, mean_size);
}

Decision Planner::plan(std::string_view op, uint64_t mean_size, uint64_t count) const {
  Decision d;
  const auto* info = backend::find_op(op);
  if (!info) {
    d.reason = "unknown op";
    d.source = "none";
    return d;
  }
  d.cpu_cost_ns = cost_ns(op, Where::cpu, mean_size, count, &d.source);
  d.cpu_work_ns = cpu_work_ns(op, mean_size, count);
  std::string gsrc;
  d.gpu_cost_ns = cost_ns(op, Where::gpu, mean_size, count, &gsrc);
  if (d.gpu_cost_ns >= 0 && gsrc != d.source) d.source += ", GPU " + gsrc;
  {
    // The CPU's queue is shared by its threads: the batch is done when its own
    // pool time has passed, or when all threads got through the queue and it.
    const double threads = std::max(1u, opt_.cpu_threads);
    const double cpu_q = backlog_ns(Where::cpu);
    const double shared = cpu_q + d.cpu_work_ns / threads;
    d.cpu_wait_ns = std::max(0.0, shared - d.cpu_cost_ns);
    d.gpu_wait_ns = backlog_ns(Where::gpu);
  }
  if (!info->gpu) {
    d.reason = "no GPU kernel";
    return d;
  }
  if (!opt_.gpu_usable) {
    d.reason = "no GPU";
    return d;
  }
  if (gsrc != "profile" &&
      (mean_size < kDefaultGpuMinJobBytes || mean_size * count < kDefaultGpuMinBatchBytes)) {
    d.reason = fmt::format("defaults: GPU only for batches >= {} MiB of jobs >= {} KiB", kDefaultGpuMinBatchBytes >> 20,
                           kDefaultGpuMinJobBytes >> 10);
    return d;
  }
  // Objective time: the GPU's figures count `doubt` longer (in doubt, the CPU).
  const double w = opt_.objective == Objective::time ? 1.0 + std::max(0.0, opt_.doubt) : 1.0;
  const double allow = opt_.objective == Objective::cpu ? 1.0 + std::max(0.0, opt_.slack) : 1.0;
  // The gate (gpu_gate()): where the measured points say the GPU loses this
  // batch alone, no queue sends it there; where they say it wins, it goes
  // there unless the GPU's queue makes it later, even where the interpolated
  // model alone disagrees (so that more jobs never move a batch back).
  std::string closed;  // why the gate keeps the batch on the CPU; empty: open
  bool gated = false;
  if (gsrc == "profile") {
    auto g = gates_.find(op);
    if (g != gates_.end()) {
      gated = true;
      const GpuGate& gate = g->second;
      // The batch's time on the CPU cores it gets, against the GPU's fixed
      // round trip. The CPU backend gives a batch one worker per chunk of at
      // least kMinChunkBytes (jobs are not split below that).
      const uint64_t bytes = mean_size * std::max<uint64_t>(count, 1);
      const uint64_t chunks = std::max<uint64_t>(
          1, (bytes + backend::CpuBackend::kMinChunkBytes - 1) / backend::CpuBackend::kMinChunkBytes);
      const double cores =
          double(std::min<uint64_t>({std::max(1u, opt_.cpu_threads), std::max<uint64_t>(count, 1), chunks}));
      const double on_cores = std::min(d.cpu_cost_ns, d.cpu_work_ns / cores);
      const uint64_t min_batch = gate.min_batch(mean_size);
      if (gate.round_trip_ns > 0 && on_cores < gate.round_trip_ns * w / allow)
        closed = fmt::format("CPU sooner (the GPU's round trip of {:.0f} us is longer than the batch on the CPU)",
                             gate.round_trip_ns / 1e3);
      else if (count < min_batch)
        closed = min_batch == kNever
                     ? std::string("CPU sooner (profile: the GPU loses at this job size)")
                     : fmt::format("CPU sooner (profile: the GPU from {} jobs at this job size)", min_batch);
    }
  }
  const bool gpu_cheaper = d.gpu_cost_ns * w < d.cpu_cost_ns * allow;
  // An open gate: the GPU alone at most as slow as the CPU allows, times what
  // the GPU's observations say of the profile (so that they can still close it).
  const double gpu_alone = gated && closed.empty()
                               ? std::min(d.gpu_cost_ns * w, d.cpu_cost_ns * allow * correction(op, Where::gpu, mean_size))
                               : d.gpu_cost_ns * w;
  const double gpu_done = d.gpu_wait_ns + gpu_alone, cpu_done = d.cpu_done_ns();
  const bool gpu_sooner = gated && closed.empty() ? gpu_done <= cpu_done : gpu_done < cpu_done;
  const bool frees_cpu = opt_.objective == Objective::cpu && gpu_done <= cpu_done * allow;
  if (!gpu_sooner && !frees_cpu) {
    d.reason = gpu_cheaper || (gated && closed.empty()) ? "GPU backlog" : "CPU sooner";
    return d;
  }
  if (!closed.empty()) {
    d.reason = closed;
    return d;
  }
  d.where = Where::gpu;
  if (gpu_sooner)
    d.reason = gpu_cheaper || d.cpu_wait_ns <= 0 ? "GPU sooner" : "CPU backlog";
  else
    d.reason = fmt::format("GPU frees the CPU (at most {:.0f}% later)", opt_.slack * 100);
  return d;
}

uint64_t Planner::offload_min_bytes(std::string_view op) const {
  const auto* info = backend::find_op(op);
  if (!info || !info->gpu || !opt_.gpu_usable) return kNever;
  // Measured sizes of the op (or the defaults' sizes), smallest first; one job alone.
  std::vector<uint64_t> sizes;
  if (profile_) {
    auto it = profile_->ops.find(std::string(op));
    if (it != profile_->ops.end())
      for (const auto& p : it->second.points)
        if (p.gpu_ns > 0) sizes.push_back(p.size);
  }
  // Nothing measured: nothing says the GPU beats the client's own thread, so
  // every call stays in its process (the agent's defaults still route what
  // clients send with --offload-mode all).
  if (sizes.empty()) return kNever;
  std::sort(sizes.begin(), sizes.end());
  sizes.erase(std::unique(sizes.begin(), sizes.end()), sizes.end());
  const double allow = opt_.objective == Objective::cpu ? 1.0 + std::max(0.0, opt_.slack) : 1.0;
  uint64_t min = kNever;
  // The GPU must win twice: one job alone (a program with one busy thread),
  // and one job from every core at once, which the GPU takes as one batch
  // while each core would have done its own (a program with a thread per
  // core; 1 MiB zstd jobs won alone on the H200 and lost 16 at a time).
  const uint64_t cores = std::max(1u, opt_.cpu_threads);
  for (auto s = sizes.rbegin(); s != sizes.rend(); ++s) {
    const double trip = kOffloadRoundTripNs + kOffloadCopyNsPerByte * double(*s);
    const double gpu = std::max(cost_ns(op, Where::gpu, *s, 1), cost_ns(op, Where::gpu, *s, cores)) + trip;
    const double here = cpu_work_ns(op, *s, 1);  // the client's own thread
    const bool better = opt_.objective == Objective::cpu ? gpu <= here * allow : gpu < here;
    if (better)
      min = *s;
    else
      break;  // from here down the client keeps it
  }
  return min;
}

Planner::Ticket Planner::dispatched(std::string_view op, Where where, uint64_t mean_size, uint64_t count) {
  Ticket t;
  t.op = std::string(op);
  t.where = where;
  t.mean_size = mean_size;
  t.count = count;
  t.cpu_work_ns = std::max(0.0, cpu_work_ns(op, mean_size, count));
  if (where == Where::cpu) {
    t.predicted_ns = t.cpu_work_ns;
    t.queued_ns = t.cpu_work_ns / std::max(1u, opt_.cpu_threads);
  } else {
    t.predicted_ns = std::max(0.0, cost_ns(op, where, mean_size, count));
    t.queued_ns = t.predicted_ns;
  }
  std::lock_guard lk(mu_);
  backlog_[int(where)] += t.queued_ns;
  auto& c = counts_[t.op];
  c.batches[int(where)]++;
  c.jobs[int(where)] += count;
  return t;
}

void Planner::finished(const Ticket& t, double observed_ns, double host_cpu_ns) {
  const double raw = t.where == Where::cpu ? raw_cpu_work_ns(t.op, t.mean_size, t.count)
                                           : raw_cost_ns(t.op, t.where, t.mean_size, t.count, nullptr);
  std::lock_guard lk(mu_);
  backlog_[int(t.where)] = std::max(0.0, backlog_[int(t.where)] - t.queued_ns);
  if (t.where == Where::gpu) {
    seconds_.moved += t.cpu_work_ns / 1e9;
    seconds_.gpu_host += host_cpu_ns / 1e9;
  } else {
    seconds_.cpu_backend += host_cpu_ns / 1e9;
  }
  if (raw <= 0 || observed_ns <= 0) return;
  // Ratio observed/model, clamped so that one odd batch (a page fault storm,
  // a preempted thread) cannot flip decisions for long.
  const double ratio = std::clamp(observed_ns / raw, 0.02, 50.0);
  auto key = std::make_tuple(t.op, int(t.where), bucket(t.mean_size));
  auto it = factor_.find(key);
  if (it == factor_.end())
    factor_[key] = ratio;
  else
    it->second += opt_.ewma_alpha * (ratio - it->second);
}

void Planner::set_backlog_ns(Where w, double ns) {
  std::lock_guard lk(mu_);
  backlog_[int(w)] = ns;
}

double Planner::backlog_ns(Where w) const {
  std::lock_guard lk(mu_);
  return backlog_[int(w)];
}

Planner::CpuSeconds Planner::cpu_seconds() const {
  std::lock_guard lk(mu_);
  return seconds_;
}

nlohmann::json Planner::to_json() const {
  nlohmann::json j;
  j["profile"] = profile_.has_value();
  j["status"] = status_line();
  j["gpu_usable"] = opt_.gpu_usable;
  j["objective"] = objective_name(opt_.objective);
  j["slack"] = opt_.slack;
  std::lock_guard lk(mu_);
  j["backlog_ns"] = {{"cpu", backlog_[0]}, {"gpu", backlog_[1]}};
  j["cpu_seconds"] = {{"saved", seconds_.saved()},
                      {"moved_to_gpu", seconds_.moved},
                      {"gpu_host", seconds_.gpu_host},
                      {"cpu_backend", seconds_.cpu_backend}};
  j["ops"] = nlohmann::json::object();
  for (const auto& [op, c] : counts_)
    j["ops"][op] = {{"cpu_batches", c.batches[0]}, {"gpu_batches", c.batches[1]}, {"cpu_jobs", c.jobs[0]},
                    {"gpu_jobs", c.jobs[1]}};
  return j;
}

}  // namespace gpo::planner
