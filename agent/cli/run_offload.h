// The offload service as `gpuoffload-agent run` starts it: its options
// (--no-offload, --offload-socket, batching, quotas), its backend, the
// ClientServer on the run loop, and its part of the status JSON. Keeps the
// hook in cli/cmd_run.cpp to a few lines.
#pragma once
#include <array>
#include <memory>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "backend/backend.h"
#include "ipc/client_server.h"
#include "planner/planner.h"

namespace gpo::loop {
class EventLoop;
}

namespace gpo::cli {

struct OffloadRunOptions {
  bool disabled = false;
  ipc::ServerOptions server = [] {
    ipc::ServerOptions s;
    s.batch_window_us = 0;  // `run`: batches gather while the backend is busy (--offload-window-us for windows)
    return s;
  }();
  uint32_t max_slab_mb = 256;
  uint32_t uid_slab_mb = 1024;
  uint32_t slab_total_mb = 0;  // 0: a quarter of the machine's memory
  std::string profile = "/var/lib/gpuoffload/profile.json";  // the planner's (backend auto)
  // plan: clients send only the jobs the GPU can speed up (the plan page);
  // all: every job over the client's own threshold (to measure the service).
  std::string mode = "plan";
  std::string objective = "time";  // the planner's: time | cpu
  double slack_pct = 25;           // objective cpu: how much later the GPU may finish
  std::string doorbell_sched = "fifo";  // doorbell threads: fifo | short-slice | normal (ipc::LaneSched)
};

// Adds the offload options to the run subcommand.
void add_run_options(CLI::App& cmd, OffloadRunOptions& o);

class OffloadService {
 public:
  // Builds the backend (choice: auto|cpu|cuda) and serves clients on loop,
  // unless disabled. Throws CLI::RuntimeError with a one-line reason.
  void start(const OffloadRunOptions& o, const std::string& backend_choice, const std::vector<int>& gpus,
             loop::EventLoop& loop);
  void stop(loop::EventLoop& loop);
  nlohmann::json to_json() const;

 private:
  // Per op id, the size from which clients send jobs to the agent.
  std::array<uint64_t, GPO_PLAN_OPS> client_plan() const;

  std::unique_ptr<backend::Backend> backend_;
  std::shared_ptr<planner::Planner> planner_;  // backend auto: CPU or GPU per batch
  std::unique_ptr<ipc::ClientServer> server_;
  std::string mode_ = "plan";
  bool forced_cuda_ = false;  // --backend cuda: every job of an op with a GPU kernel
};

}  // namespace gpo::cli
