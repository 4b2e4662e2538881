// Suite "planner" (GPU): the planner's claim, checked. At each job size,
// batches of every op that has a GPU kernel (enumerated from the registry) are
// submitted all at once, interleaved, three ways: CPU backend only, CUDA
// backend only, and through the planner (PlannedBackend with the calibrated
// profile, or its defaults). Pass/fail: under objective time the planned run
// may be at most `tolerance` (default 5%) slower than the better of the two at
// every size, or the suite fails (exit code 1). It also reports the CPU
// seconds the planner moved to the GPU. Settings: --set profile=PATH,
// --set tolerance=PERCENT, --set objective=time|cpu, --set slack=PERCENT,
// --set doubt=PERCENT (objective time: the GPU's predictions counted longer).
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>

#include "backend/cpu_backend.h"
#include "backend/ops.h"
#include "bench/bench.h"
#include "planner/calibrate.h"
#include "planner/planned_backend.h"
#include "planner/planner.h"
#include "planner/profile.h"
#ifdef GPUOFFLOAD_HAVE_CUDA
#include "backend/cuda_backend.h"
#endif

namespace gpo::bench {
namespace {

using Clock = std::chrono::steady_clock;

// Submits every batch to be at once and waits for all; returns seconds.
double run_all(backend::Backend& be, std::vector<backend::Batch>& batches) {
  std::mutex mu;
  std::condition_variable cv;
  size_t left = batches.size();
  auto t0 = Clock::now();
  for (auto& b : batches) {
    for (auto& j : b.jobs) j.status = backend::Status::pending;
    be.submit(b, [&](backend::Batch&) {
      std::lock_guard lk(mu);
      if (--left == 0) cv.notify_all();
    });
  }
  std::unique_lock lk(mu);
  cv.wait(lk, [&] { return left == 0; });
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

}  // namespace

int run_planner(const Options& opt, std::vector<Table>& out) {
#ifndef GPUOFFLOAD_HAVE_CUDA
  (void)opt;
  (void)out;
  fmt::print(stderr, "planner: this build has no CUDA support\n");
  return 1;
#else
  const std::string profile_path = setting(opt, "profile", planner::kDefaultProfilePath);
  const std::vector<uint64_t> sizes = opt.quick ? std::vector<uint64_t>{4096, 1 << 20, 16 << 20}
                                                : std::vector<uint64_t>{4096, 65536, 1 << 20, 4 << 20, 16 << 20};
  // Full mode stays under a minute on an H100 (7 ops x 4 batches x 16 MiB per run, 3 runs per mode and size).
  const uint64_t batch_bytes = opt.quick ? (uint64_t{8} << 20) : (uint64_t{16} << 20);
  const int batches_per_op = 4;
  const int reps = opt.quick ? 2 : 5;
  const double tolerance = std::stod(setting(opt, "tolerance", "5")) / 100;
  const auto objective = planner::parse_objective(setting(opt, "objective", "time"));
  if (!objective) {
    fmt::print(stderr, "planner: --set objective=time|cpu\n");
    return 1;
  }

  struct OpJobs {
    const backend::OpInfo* op;
    planner::JobShape shape;
  };
  std::vector<OpJobs> ops;
  std::string names;
  for (const auto& op : backend::ops()) {
    if (!op.gpu) continue;
    auto sh = planner::probe_job_shape(op);
    if (!sh) continue;
    ops.push_back({&op, *sh});
    names += (names.empty() ? "" : ", ") + std::string(op.name);
  }
  // One input buffer shared by all batches (read only); one output region per op.
  const uint64_t max_out = std::max<uint64_t>(batch_bytes, 16 << 20) * 9 / 8 + 4096 * 4096;
  const uint64_t in_bytes = std::max(batch_bytes, *std::max_element(sizes.begin(), sizes.end())) + 4096;
  std::vector<uint8_t> in(in_bytes), outbuf(max_out * ops.size());
  for (size_t i = 0; i < in.size(); ++i) in[i] = uint8_t(i * 2654435761u >> 13);
  auto km = planner::job_key_material();

  const unsigned threads = opt.threads ? opt.threads : 1;
  auto cpu = std::make_shared<backend::CpuBackend>(threads);
  auto cuda = std::make_unique<backend::CudaBackend>(opt.gpu, cpu);
  auto loaded = planner::load_profile(profile_path, planner::this_machine(opt.gpu));
  planner::PlannerOptions po;
  po.gpu_usable = true;
  po.cpu_threads = threads;
  po.objective = *objective;
  po.slack = std::stod(setting(opt, "slack", "25")) / 100;
  po.doubt = std::stod(setting(opt, "doubt", "10")) / 100;
  auto pl = std::make_shared<planner::Planner>(loaded.profile, loaded.why, po);
  // The planned backend gets its own pair, so that the one-backend runs leave it no backlog.
  auto pcpu = std::make_shared<backend::CpuBackend>(threads);
  planner::PlannedBackend planned(pcpu, std::make_unique<backend::CudaBackend>(opt.gpu, pcpu), pl);
  // Pinned once (portable: every backend of the process DMAs it), as client slabs are.
  cuda->register_memory(in.data(), in.size());
  cuda->register_memory(outbuf.data(), outbuf.size());

  Table t;
  t.title = fmt::format("Mixed workload ({} batches of each op, interleaved, submitted at once), GB/s of input", batches_per_op);
  t.columns = {"job size",           "jobs/batch", "CPU only", "GPU only", "planned",
               fmt::format("planned >= {:.0f}% of max(CPU, GPU)", 100 * (1 - tolerance)),
               "planned: GPU batches", "planned: CPU s saved per run"};
  int rc = 0;
  for (uint64_t size : sizes) {
    const uint64_t per_batch = std::clamp<uint64_t>(batch_bytes / size, 1, 4096);
    std::vector<backend::Batch> batches;
    uint64_t total = 0;
    for (int k = 0; k < batches_per_op; ++k)
      for (size_t o = 0; o < ops.size(); ++o) {
        backend::Batch b;
        b.jobs.resize(per_batch);
        uint64_t out_off = 0;
        for (uint64_t i = 0; i < per_batch; ++i) {
          auto& j = b.jobs[i];
          j.op = ops[o].op->id;
          j.level = 3;
          j.key = km.subspan(0, ops[o].shape.key);
          j.iv = km.subspan(32, ops[o].shape.iv);
          j.in = {in.data() + (i * size) % (in.size() - size + 1), size};
          const size_t ob = ops[o].shape.out_bytes(size);
          j.out = {outbuf.data() + o * max_out + out_off, ob};
          out_off += ob;
          total += size;
        }
        batches.push_back(std::move(b));
      }
    // Each backend warmed, then their runs interleaved (CPU, GPU, planned, and
    // again): a drift of the host's speed over the rows (other tenants, clocks)
    // reaches the three alike, instead of whichever block it fell on.
    const auto before = pl->to_json()["ops"];
    const auto saved0 = pl->cpu_seconds().saved();
    backend::Backend* bes[3] = {cpu.get(), cuda.get(), &planned};
    double best_s[3] = {1e30, 1e30, 1e30};
    for (auto* be : bes) run_all(*be, batches);  // warm-up
    // A row that misses the bound gets up to two more rounds, bests kept
    // across rounds: a host's noise (one slow run of the planned backend
    // routing exactly as CPU-only does) passes, a plan that is slower stays so.
    int rounds = 0;
    double c = 0, g = 0, p = 0, best = 0;
    bool ok = false;
    do {
      for (int r = 0; r < reps; ++r)
        for (int k = 0; k < 3; ++k) best_s[k] = std::min(best_s[k], run_all(*bes[k], batches));
      c = double(total) / best_s[0];
      g = double(total) / best_s[1];
      p = double(total) / best_s[2];
      best = std::max(c, g);
      ok = p >= best * (1 - tolerance);
    } while (++rounds < 3 && !ok && *objective == planner::Objective::time);
    const double saved = (pl->cpu_seconds().saved() - saved0) / (reps * rounds + 1);
    const auto after = pl->to_json()["ops"];
    uint64_t gb = 0, all = 0;
    for (const auto& [op, v] : after.items()) {
      const uint64_t g0 = before.contains(op) ? before[op]["gpu_batches"].get<uint64_t>() : 0;
      const uint64_t c0 = before.contains(op) ? before[op]["cpu_batches"].get<uint64_t>() : 0;
      gb += v["gpu_batches"].get<uint64_t>() - g0;
      all += v["gpu_batches"].get<uint64_t>() - g0 + v["cpu_batches"].get<uint64_t>() - c0;
    }
    // Objective cpu trades time for cores on purpose: reported, not failed.
    if (!ok && *objective == planner::Objective::time) rc = 1;
    t.rows.push_back({fmt_size(size), std::to_string(per_batch), fmt_gbps(c), fmt_gbps(g), fmt_gbps(p),
                      ok ? fmt::format("yes ({:.0f}%{})", 100 * p / best, rounds > 1 ? fmt::format(", {} rounds", rounds) : "")
                         : fmt::format("{} ({:.0f}% of best)", *objective == planner::Objective::time ? "FAIL" : "no",
                                       100 * p / best),
                      fmt::format("{} of {}", gb, all), fmt::format("{:.3f}", saved)});
  }
  t.notes.push_back("ops: " + names);
  t.notes.push_back(pl->status_line());
  t.notes.push_back(fmt::format("CPU backend {} threads; best of {} runs each after a warm-up, the three backends taking turns "
                                "(a row under the bound: up to 3 such rounds, bests kept); planned = PlannedBackend "
                                "(CPU and CUDA backends, the planner refining online as it goes)",
                                threads, reps));
  cuda->unregister_memory(in.data());
  cuda->unregister_memory(outbuf.data());
  if (rc) t.notes.push_back(fmt::format("FAILED: planned slower than the better backend by more than {:.0f}%", 100 * tolerance));
  out.push_back(std::move(t));
  if (rc) fmt::print(stderr, "planner: planned slower than the better of CPU-only and GPU-only by more than {:.0f}%\n",
                     100 * tolerance);
  return rc;
#endif
}

}  // namespace gpo::bench
