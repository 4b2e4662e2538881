// A Backend that holds the CPU backend and the CUDA backend and sends each
// batch where the planner says (planner.h: the sooner, or under objective
// cpu the GPU while it is not much later). The batcher (the offload service's
// ClientServer) submits to it as to any backend; the planner counts the
// decisions, the CPU seconds they moved, and learns from the observed times.
// Nothing runs on the submitting thread (the agent's event loop).
#pragma once
#include <atomic>
#include <memory>

#include "backend/backend.h"
#include "backend/cpu_backend.h"
#include "planner/planner.h"

namespace gpo::planner {

class PlannedBackend final : public backend::Backend {
 public:
  // gpu may be null (then everything runs on cpu, and the planner says why).
  PlannedBackend(std::shared_ptr<backend::CpuBackend> cpu, std::unique_ptr<backend::Backend> gpu,
                 std::shared_ptr<Planner> planner);
  ~PlannedBackend() override;
  std::string name() const override;
  void submit(backend::Batch& batch, backend::Completion done) override;
  backend::Stats stats() const override;
  // The CPU's threads, and the GPU's batches besides.
  backend::Capacity capacity() const override;
  bool register_memory(void* p, size_t len, Pin when = Pin::now) override;
  void unregister_memory(void* p) override;
  Planner& planner() { return *planner_; }

 private:
  std::shared_ptr<backend::CpuBackend> cpu_;
  std::unique_ptr<backend::Backend> gpu_;
  std::shared_ptr<Planner> planner_;
};

}  // namespace gpo::planner
