// `gpuoffload-agent calibrate` and `gpuoffload-agent plan`: measure this
// machine into the planner's profile, and ask the planner what it would do.
#include <fmt/format.h>

#include <chrono>

#include "backend/backend.h"
#include "backend/ops.h"
#include "cli/commands.h"
#include "planner/calibrate.h"
#include "planner/planner.h"
#include "planner/profile.h"

namespace gpo::cli {
namespace {

struct CalibrateArgs {
  planner::CalibrateOptions opt;
  std::string profile = planner::kDefaultProfilePath;
  bool cpu_only = false;
  bool no_write = false;
  bool json = false;
};

void run_calibrate(CalibrateArgs& a) {
  for (const auto& name : a.opt.only)
    if (name != "classify" && !backend::find_op(name)) {
      std::string names;
      for (const auto& op : backend::ops()) names += std::string(op.name) + ", ";
      throw CLI::RuntimeError(fmt::format("calibrate: unknown op '{}'; ops: {}classify", name, names), kUsage);
    }
  a.opt.use_gpu = !a.cpu_only;
  std::string why;
  const int ngpu = backend::cuda_device_count(&why);
  if (ngpu > 0 && !a.cpu_only && (a.opt.gpu < 0 || a.opt.gpu >= ngpu))
    throw CLI::RuntimeError(fmt::format("calibrate: --gpu {}: this host has GPUs 0..{}", a.opt.gpu, ngpu - 1), kUsage);
  const auto t0 = std::chrono::steady_clock::now();
  planner::Profile p;
  try {
    p = planner::calibrate(a.opt);
  } catch (const std::exception& e) {
    throw CLI::RuntimeError(fmt::format("calibrate: {}", e.what()), kFailure);
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (a.json) {
    fmt::print("{}\n", p.to_json().dump(1));
  } else {
    fmt::print("calibrated in {:.1f} s on {}{}\n", secs, p.machine.describe(), p.quick ? " (quick)" : "");
    fmt::print("{}", planner::format_crossover(planner::crossover(p)));
    for (const auto& n : p.notes) fmt::print("  note: {}\n", n);
  }
  if (!a.no_write) {
    try {
      planner::save_profile(p, a.profile);
    } catch (const std::exception& e) {
      throw CLI::RuntimeError(fmt::format("calibrate: {} (choose another file with --profile PATH, or --no-write)",
                                          e.what()),
                              kFailure);
    }
    if (!a.json) fmt::print("profile written to {}\n", a.profile);
  }
}

struct PlanArgs {
  std::string op;
  uint64_t size = 0;
  uint64_t batch = 1;
  std::string profile = planner::kDefaultProfilePath;
  std::string backlog_gpu_us, backlog_cpu_us;
  bool json = false;
  bool assume_gpu = false;
  std::string objective = "time";
  double slack_pct = 25;
};

void run_plan(PlanArgs& a) {
  const auto* info = backend::find_op(a.op);
  if (!info) {
    std::string names;
    for (const auto& op : backend::ops()) names += (names.empty() ? "" : ", ") + std::string(op.name);
    throw CLI::RuntimeError(fmt::format("plan: unknown op '{}'; ops: {}", a.op, names), kUsage);
  }
  if (a.size == 0) throw CLI::RuntimeError("plan: --size must be at least 1 byte", kUsage);
  if (a.batch == 0) throw CLI::RuntimeError("plan: --batch must be at least 1", kUsage);
  std::string why;
  const bool gpu = backend::cuda_device_count(&why) > 0 || a.assume_gpu;
  auto loaded = planner::load_profile(a.profile, planner::this_machine(0));
  planner::PlannerOptions po;
  po.gpu_usable = gpu;
  po.objective = *planner::parse_objective(a.objective);
  po.slack = a.slack_pct / 100;
  if (loaded.profile && loaded.profile->cpu_threads) po.cpu_threads = loaded.profile->cpu_threads;
  planner::Planner pl(loaded.profile, loaded.why, po);
  auto parse_us = [](const std::string& s, planner::Where w, planner::Planner& p) {
    if (s.empty()) return;
    try {
      p.set_backlog_ns(w, std::stod(s) * 1e3);
    } catch (const std::exception&) {
      throw CLI::RuntimeError(fmt::format("plan: backlog '{}' is not a number of microseconds", s), kUsage);
    }
  };
  parse_us(a.backlog_cpu_us, planner::Where::cpu, pl);
  parse_us(a.backlog_gpu_us, planner::Where::gpu, pl);
  auto d = pl.plan(a.op, a.size, a.batch);
  const uint64_t min_offload = pl.offload_min_bytes(a.op);
  auto us = [](double ns) { return ns < 0 ? std::string("-") : fmt::format("{:.1f} us", ns / 1e3); };
  if (a.json) {
    nlohmann::json j{{"op", a.op},
                     {"size", a.size},
                     {"batch", a.batch},
                     {"decision", planner::where_name(d.where)},
                     {"reason", d.reason},
                     {"source", d.source},
                     {"objective", planner::objective_name(po.objective)},
                     {"profile", pl.status_line()},
                     {"client_offload_min_bytes",
                      min_offload == planner::kNever ? nlohmann::json("never") : nlohmann::json(min_offload)},
                     {"cpu",
                      {{"cost_ns", d.cpu_cost_ns},
                       {"work_ns", d.cpu_work_ns},
                       {"queued_ns", d.cpu_wait_ns},
                       {"done_ns", d.cpu_done_ns()}}},
                     {"gpu", d.gpu_cost_ns < 0 ? nlohmann::json(nullptr)
                                               : nlohmann::json{{"cost_ns", d.gpu_cost_ns},
                                                                {"queued_ns", d.gpu_wait_ns},
                                                                {"done_ns", d.gpu_done_ns()}}}};
    if (!gpu) j["gpu_why"] = why;
    fmt::print("{}\n", j.dump(2));
    return;
  }
  fmt::print("{} x{} of {} B ({} B in all): {} ({})\n", a.op, a.batch, a.size, a.size * a.batch,
             d.where == planner::Where::gpu ? "GPU" : "CPU", d.reason);
  fmt::print("  CPU: {} queued + {} this batch = done in {} ({} of thread time)\n", us(d.cpu_wait_ns),
             us(d.cpu_cost_ns), us(d.cpu_done_ns()), us(d.cpu_work_ns));
  if (d.gpu_cost_ns >= 0)
    fmt::print("  GPU: {} queued + {} this batch = done in {}\n", us(d.gpu_wait_ns), us(d.gpu_cost_ns),
               us(d.gpu_done_ns()));
  else
    fmt::print("  GPU: cannot take it ({})\n", !info->gpu ? "no GPU kernel" : "no usable GPU: " + why);
  fmt::print("  predictions from: {}\n  {}\n", d.source, pl.status_line());
  fmt::print("  clients: {} jobs {}\n", a.op,
             min_offload == planner::kNever ? "stay in the calling process (the GPU does not win one job alone)"
                                            : fmt::format("of at least {} B go through the agent", min_offload));
}

}  // namespace

void add_calibrate(CLI::App& app) {
  auto a = std::make_shared<CalibrateArgs>();
  auto* cmd = app.add_subcommand(
      "calibrate",
      "Measure every op on this machine (CPU 1 thread, all threads, GPU end to end) over job and batch sizes, "
      "write the planner's profile and print from which size the GPU wins.");
  cmd->footer(
      "Examples:\n"
      "  sudo gpuoffload-agent calibrate            # a few minutes; writes /var/lib/gpuoffload/profile.json\n"
      "  gpuoffload-agent calibrate --quick --profile /tmp/p.json\n"
      "  gpuoffload-agent calibrate --op sha256 --op aes-256-ctr --no-write");
  cmd->add_flag("--quick", a->opt.quick, "small sizes, short measurements (seconds; for tests)");
  cmd->add_option("--profile", a->profile, "where to write the profile")->capture_default_str();
  cmd->add_flag("--no-write", a->no_write, "measure and print only");
  cmd->add_flag("--json", a->json, "print the profile JSON instead of the table");
  cmd->add_flag("--cpu-only", a->cpu_only, "do not measure the GPU");
  cmd->add_option("--gpu", a->opt.gpu, "CUDA device ordinal")->capture_default_str();
  cmd->add_option("--threads", a->opt.threads, "CPU backend threads (default: all)");
  cmd->add_option("--rules", a->opt.rules, "rule file for the classification figures (default: built-in)");
  cmd->add_option("--op", a->opt.only, "measure only this op (repeatable; \"classify\" for classification)");
  cmd->add_flag("!--no-progress", a->opt.progress, "no progress bar on stderr");
  cmd->callback([a] { run_calibrate(*a); });
}

void add_plan(CLI::App& app) {
  auto a = std::make_shared<PlanArgs>();
  auto* cmd = app.add_subcommand("plan", "Print what the planner would do with a batch: CPU or GPU, and why.");
  cmd->footer(
      "Examples:\n"
      "  gpuoffload-agent plan --op sha256 --size 65536 --batch 256\n"
      "  gpuoffload-agent plan --op aes-256-gcm-encrypt --size 1048576 --batch 64 --gpu-queued-us 5000");
  cmd->add_option("--op", a->op, "op name (gpuoffload-agent plan --op help lists them)")->required();
  cmd->add_option("--size", a->size, "bytes per job")->required();
  cmd->add_option("--batch", a->batch, "jobs in the batch")->capture_default_str();
  cmd->add_option("--profile", a->profile, "the calibrated profile")->capture_default_str();
  cmd->add_option("--cpu-queued-us", a->backlog_cpu_us, "pretend this much work is queued on the CPU backend");
  cmd->add_option("--gpu-queued-us", a->backlog_gpu_us, "pretend this much work is queued on the GPU backend");
  cmd->add_flag("--assume-gpu", a->assume_gpu, "plan as if a GPU were usable (what-if on a machine without one)");
  cmd->add_option("--plan-objective", a->objective, "time: the sooner backend; cpu: the GPU while at most --plan-slack later")
      ->check(CLI::IsMember({"time", "cpu"}))
      ->capture_default_str();
  cmd->add_option("--plan-slack", a->slack_pct, "objective cpu: percent later than the CPU the GPU may finish")
      ->check(CLI::Range(0.0, 1000.0))
      ->capture_default_str();
  cmd->add_flag("--json", a->json, "print JSON");
  cmd->callback([a] { run_plan(*a); });
}

}  // namespace gpo::cli
