#include "ipc/offload_service.h"

#include "backend/cpu_backend.h"
#include "cli/commands.h"
#include "planner/planned_backend.h"
#include "util/log.h"

namespace gpo::ipc {

void add_run_options(CLI::App& cmd, OffloadRunOptions& o) {
  cmd.add_flag("--no-offload", o.disabled, "Do not serve offload clients (libgpuoffload, the LD_PRELOAD shim)");
  cmd.add_option("--offload-socket", o.server.socket_path, "Unix socket offload clients connect to")
      ->capture_default_str();
  cmd.add_option("--offload-batch", o.server.batch_max, "Offload: jobs of one op handed to the backend at once")
      ->check(CLI::Range(1, 65536))
      ->capture_default_str();
  cmd.add_option("--offload-window-us", o.server.batch_window_us,
                 "Offload: wait at most this long for a batch to fill (0 = run at once)")
      ->check(CLI::Range(0, 1000000))
      ->capture_default_str();
  cmd.add_option("--offload-max-slab-mb", o.max_slab_mb, "Offload: largest shared slab one client may register")
      ->check(CLI::Range(1, 65536))
      ->capture_default_str();
  cmd.add_option("--offload-max-inflight", o.server.max_inflight, "Offload: jobs in flight per client")
      ->check(CLI::Range(1, 1 << 20))
      ->capture_default_str();
  cmd.add_option("--profile", o.profile, "Offload: the planner's calibrated profile (gpuoffload-agent calibrate)")
      ->capture_default_str();
  cmd.add_flag("!--no-offload-uprobe", o.server.uprobe_doorbell,
               "Offload: take doorbells from the socket only, not from the uprobe ring buffer");
}

void OffloadService::start(const OffloadRunOptions& o, const std::string& backend_kind, const std::vector<int>& gpus,
                           loop::EventLoop& loop) {
  if (o.disabled) {
    log::info("offload: off (--no-offload)");
    return;
  }
  backend::Options bo;
  bo.kind = backend_kind;
  bo.gpus = gpus;
  try {
    if (backend_kind == "auto") {
      // Both backends, and the planner picks per batch (--backend cpu|cuda forces one).
      std::string why;
      auto cpu = std::make_shared<backend::CpuBackend>(0);
      std::unique_ptr<backend::Backend> gpu;
      if (backend::cuda_device_count(&why) > 0) {
        bo.kind = "cuda";
        gpu = backend::make_backend(bo);
      } else {
        log::info("backend: no usable GPU ({}); serving on the CPU backend ({} threads)", why, cpu->threads());
      }
      auto loaded = planner::load_profile(o.profile, planner::this_machine(gpus.empty() ? 0 : gpus.front()));
      planner::PlannerOptions po;
      po.gpu_usable = gpu != nullptr;
      po.cpu_threads = cpu->threads();
      planner_ = std::make_shared<planner::Planner>(loaded.profile, loaded.why, po);
      log::info("{}", planner_->status_line());
      backend_ = std::make_unique<planner::PlannedBackend>(cpu, std::move(gpu), planner_);
    } else {
      backend_ = backend::make_backend(bo);
    }
  } catch (const std::exception& e) {
    throw CLI::RuntimeError(std::string("offload backend: ") + e.what() + " (or --no-offload)", cli::kFailure);
  }
  ServerOptions so = o.server;
  so.max_slab_bytes = uint64_t(o.max_slab_mb) << 20;
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
    throw CLI::RuntimeError(std::string(e.what()) + "; or run with --no-offload", cli::kFailure);
  }
  log::info("offload: {} on the {} backend", server_->describe(), backend_->name());
}

void OffloadService::stop(loop::EventLoop& loop) {
  if (server_) {
    auto s = server_->stats();
    server_->unregister(loop);
    log::info("offload: {} jobs done, {} rejected, {} over quota, {} clients", s.jobs_done, s.jobs_rejected,
              s.jobs_over_quota, s.clients);
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

}  // namespace gpo::ipc
