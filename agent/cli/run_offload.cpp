#include "cli/run_offload.h"

#include "backend/cpu_backend.h"
#include "backend/ops.h"
#include "loop/event_loop.h"
#include "cli/commands.h"
#include "ipc/doorbell_probe.h"
#include "planner/planned_backend.h"
#include "util/log.h"

namespace gpo::cli {
using namespace gpo::ipc;  // this file wires the ipc layer into `run`

void add_run_options(CLI::App& cmd, OffloadRunOptions& o) {
  cmd.add_flag("--no-offload", o.disabled, "Do not serve offload clients (libgpuoffload, the LD_PRELOAD shim)");
  cmd.add_option("--offload-socket", o.server.socket_path, "Unix socket offload clients connect to")
      ->capture_default_str();
  cmd.add_option("--offload-batch", o.server.batch_max, "Offload: jobs of one op handed to the backend at once")
      ->check(CLI::Range(1, 65536))
      ->capture_default_str();
  cmd.add_option("--offload-window-us", o.server.batch_window_us,
                 "Offload: 0 = jobs go to the backend at once while it has room and gather into one batch while it "
                 "has none; US = fixed windows: a batch goes when full or US after its first job")
      ->check(CLI::Range(0, 1000000))
      ->capture_default_str();
  cmd.add_option("--offload-max-slab-mb", o.max_slab_mb, "Offload: largest shared slab one client may register")
      ->check(CLI::Range(1, 65536))
      ->capture_default_str();
  cmd.add_option("--offload-max-inflight", o.server.max_inflight, "Offload: jobs in flight per client")
      ->check(CLI::Range(1, 1 << 20))
      ->capture_default_str();
  cmd.add_option("--offload-group", o.server.socket_group,
                 "Offload: who may connect besides root: members of this group (socket 0660, plan page 0640 in "
                 "it; tools/install-deps creates it); '' = root only")
      ->capture_default_str();
  cmd.add_flag("--offload-allow-all", o.server.allow_all_users,
               "Offload: every local user may connect (socket 0666); the per-uid quotas still hold");
  cmd.add_option("--offload-uid-slab-mb", o.uid_slab_mb, "Offload: slab memory of all connections of one uid")
      ->check(CLI::Range(1, 1 << 20))
      ->capture_default_str();
  cmd.add_option("--offload-uid-inflight", o.server.uid_max_inflight, "Offload: jobs in flight of one uid")
      ->check(CLI::Range(1, 1 << 24))
      ->capture_default_str();
  cmd.add_option("--offload-uid-connections", o.server.uid_max_connections, "Offload: connections of one uid")
      ->check(CLI::Range(1, 1 << 16))
      ->capture_default_str();
  cmd.add_option("--offload-max-slab-total-mb", o.slab_total_mb,
                 "Offload: slab memory of all clients together (the CUDA backend pins it); 0 = a quarter of RAM")
      ->check(CLI::Range(0, 1 << 24))
      ->capture_default_str();
  cmd.add_option("--offload-max-zstd-level", o.server.max_zstd_level,
                 "Offload: highest zstd level the agent compresses at (higher levels cost a worker up to ~1 GB; "
                 "clients run those themselves)")
      ->check(CLI::Range(1, 22))
      ->capture_default_str();
  cmd.add_option("--profile", o.profile, "Offload: the planner's calibrated profile (gpuoffload-agent calibrate)")
      ->capture_default_str();
  cmd.add_flag("!--no-offload-uprobe", o.server.uprobe_doorbell,
               "Offload: take doorbells from the socket only, not from the uprobe ring buffer");
  cmd.add_flag("--offload-cpu-doorbells,!--no-offload-cpu-doorbells", o.server.cpu_doorbells,
               "Offload: a uprobe doorbell wakes a thread of the agent on the CPU the client rang from (a ring "
               "and thread per CPU, default) or, with --no-offload-cpu-doorbells, the event loop wherever it "
               "runs (docs/offload.md, \"Doorbell threads\")");
  cmd.add_option("--offload-cpu-doorbell-sched", o.doorbell_sched,
                 "Offload: how doorbell threads are scheduled, the first the kernel grants from this one on: "
                 "fifo (SCHED_FIFO 1), short-slice (nice -20 and a 0.1 ms slice, which preempts on Linux 6.12+), "
                 "normal")
      ->check(CLI::IsMember({"fifo", "short-slice", "normal"}))
      ->capture_default_str();
  cmd.add_option("--offload-mode", o.mode,
                 "Offload: plan = clients send only the jobs the GPU speeds up (the rest stay in their process, "
                 "no IPC); all = every job over the client's threshold comes here (to measure the service)")
      ->check(CLI::IsMember({"plan", "all"}))
      ->capture_default_str();
  cmd.add_option("--plan-objective", o.objective,
                 "Planner (backend auto): time = the backend that finishes sooner; cpu = the GPU whenever it "
                 "finishes at most --plan-slack later (frees the cores)")
      ->check(CLI::IsMember({"time", "cpu"}))
      ->capture_default_str();
  cmd.add_option("--plan-slack", o.slack_pct, "Planner, objective cpu: percent later than the CPU the GPU may finish")
      ->check(CLI::Range(0.0, 1000.0))
      ->capture_default_str();
}

std::array<uint64_t, GPO_PLAN_OPS> OffloadService::client_plan() const {
  std::array<uint64_t, GPO_PLAN_OPS> t;
  t.fill(GPO_PLAN_NEVER);
  for (const auto& op : backend::ops()) {
    const auto id = size_t(op.id);
    if (id >= t.size()) continue;
    if (mode_ == "all")
      t[id] = 0;
    else if (planner_)
      t[id] = planner_->offload_min_bytes(op.name);
    else if (forced_cuda_ && op.gpu)
      t[id] = 0;  // --backend cuda: what the GPU can take, it gets
    // --backend cpu: the agent would run the client's own code: nothing comes.
  }
  return t;
}

void OffloadService::start(const OffloadRunOptions& o, const std::string& backend_choice, const std::vector<int>& gpus,
                           loop::EventLoop& loop) {
  if (o.disabled) {
    log::info("offload: off (--no-offload)");
    return;
  }
  backend::Options bo;
  bo.choice = backend_choice;
  bo.gpus = gpus;
  try {
    if (backend_choice == "auto") {
      // Both backends, and the planner picks per batch (--backend cpu|cuda forces one).
      std::string why;
      auto cpu = std::make_shared<backend::CpuBackend>(0);
      std::unique_ptr<backend::Backend> gpu;
      if (backend::cuda_device_count(&why) > 0) {
        bo.choice = "cuda";
        bo.cpu = cpu;  // one CPU pool for the planner's CPU side and the GPU's fallback
        gpu = backend::make_backend(bo);
      } else {
        log::info("backend: no usable GPU ({}); serving on the CPU backend ({} threads)", why, cpu->threads());
      }
      auto loaded = planner::load_profile(o.profile, planner::this_machine(gpus.empty() ? 0 : gpus.front()));
      planner::PlannerOptions po;
      po.gpu_usable = gpu != nullptr;
      po.cpu_threads = cpu->threads();
      po.objective = planner::parse_objective(o.objective).value_or(planner::Objective::time);
      po.slack = o.slack_pct / 100;
      planner_ = std::make_shared<planner::Planner>(loaded.profile, loaded.why, po);
      log::info("{}", planner_->status_line());
      backend_ = std::make_unique<planner::PlannedBackend>(cpu, std::move(gpu), planner_);
    } else {
      backend_ = backend::make_backend(bo);
      forced_cuda_ = backend_->name().rfind("cuda", 0) == 0;
    }
  } catch (const std::exception& e) {
    throw CLI::RuntimeError(std::string("offload backend: ") + e.what() + " (or --no-offload)", kFailure);
  }
  mode_ = o.mode;
  ServerOptions so = o.server;
  so.flush_when_idle = so.batch_window_us == 0;
  so.max_slab_bytes = uint64_t(o.max_slab_mb) << 20;
  so.uid_max_slab_bytes = uint64_t(o.uid_slab_mb) << 20;
  so.max_slab_bytes_total = uint64_t(o.slab_total_mb) << 20;
  so.plan_min_bytes = client_plan();
  so.cpu_doorbell_sched = parse_lane_sched(o.doorbell_sched).value_or(LaneSched::fifo);
  server_ = std::make_unique<ClientServer>(so, *backend_);
  try {
    server_->register_with(loop);
  } catch (const SocketBusy& e) {
    // Two agents on one host (tests, a second instance): the first keeps serving.
    log::warn("offload: off: {}; use --offload-socket PATH for a second agent", e.what());
    server_.reset();
    backend_.reset();
    return;
  } catch (const std::exception& e) {
    server_.reset();
    throw CLI::RuntimeError(std::string(e.what()) + "; or run with --no-offload", kFailure);
  }
  log::info("offload: {} on the {} backend", server_->describe(), backend_->name());
  std::string sent;
  for (const auto& op : backend::ops()) {
    const auto id = size_t(op.id);
    if (id >= so.plan_min_bytes.size() || so.plan_min_bytes[id] == GPO_PLAN_NEVER) continue;
    sent += fmt::format("{}{} >= {} B", sent.empty() ? "" : ", ", op.name, so.plan_min_bytes[id]);
  }
  log::info("offload: clients send {} (--offload-mode {}); other jobs stay in their process",
            sent.empty() ? "no jobs" : sent, mode_);
  if (planner_) {
    // The planner learns as it goes: keep the clients' thresholds in step.
    loop.add_timer(std::chrono::seconds(1), [this] {
      if (!server_) return;
      const auto t = client_plan();
      for (uint16_t id = 0; id < t.size(); ++id) server_->set_plan(id, t[id]);
    });
  }
}

void OffloadService::stop(loop::EventLoop& loop) {
  if (server_) {
    auto s = server_->stats();
    server_->unregister(loop);
    const auto t = server_->per_job_us();
    log::info("offload: {} jobs done in {} batches, {} rejected, {} over quota, {} clients; per job {:.1f} us "
              "from the doorbell to the claim, {:.1f} us gathering, {:.1f} us at the backend, {:.1f} us completing; "
              "{} ran on the CPU where their client waited; {} of {} uprobe doorbells handled on the client's CPU",
              s.jobs_done, s.batches, s.jobs_rejected, s.jobs_over_quota, s.clients, t["reaching"].get<double>(),
              t["gathering"].get<double>(), t["at_backend"].get<double>(), t["completing"].get<double>(),
              t["on_client_cpu"].get<uint64_t>(), s.doorbells_on_client_cpu, s.doorbells_uprobe);
    if (planner_) {
      const auto c = planner_->cpu_seconds();
      log::info("planner: {:.2f} CPU seconds saved ({:.2f} s of CPU work moved to the GPU, {:.2f} s of host CPU "
                "spent on it); {:.2f} s on the CPU backend",
                c.saved(), c.moved, c.gpu_host, c.cpu_backend);
    }
  }
  server_.reset();
  backend_.reset();  // runs what is queued, then joins its threads
}

nlohmann::json OffloadService::to_json() const {
  if (!server_) return {{"enabled", false}};
  auto j = server_->to_json();
  j["enabled"] = true;
  j["backend"] = backend_->name();
  j["planner"] = planner_ ? planner_->to_json()
                          : nlohmann::json{{"status", "planner: off (--backend " + backend_->name() + ")"}};
  return j;
}

}  // namespace gpo::cli
