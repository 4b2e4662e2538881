// The offload service as `gpuoffload-agent run` starts it: its options
// (--no-offload, --offload-socket, batching, quotas), its backend, the
// ClientServer on the run loop, and its part of the status JSON. Keeps the
// hook in cli/cmd_run.cpp to a few lines.
#pragma once
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

namespace gpo::ipc {

struct OffloadRunOptions {
  bool disabled = false;
  ServerOptions server;
  uint32_t max_slab_mb = 256;
  std::string profile = "/var/lib/gpuoffload/profile.json";  // the planner's (backend auto)
};

// Adds the offload options to the run subcommand.
void add_run_options(CLI::App& cmd, OffloadRunOptions& o);

class OffloadService {
 public:
  // Builds the backend (kind: auto|cpu|cuda) and serves clients on loop,
  // unless disabled. Throws CLI::RuntimeError with a one-line reason.
  void start(const OffloadRunOptions& o, const std::string& backend_kind, const std::vector<int>& gpus,
             loop::EventLoop& loop);
  void stop(loop::EventLoop& loop);
  nlohmann::json to_json() const;

 private:
  std::unique_ptr<backend::Backend> backend_;
  std::shared_ptr<planner::Planner> planner_;  // backend auto: CPU or GPU per batch
  std::unique_ptr<ClientServer> server_;
};

}  // namespace gpo::ipc
