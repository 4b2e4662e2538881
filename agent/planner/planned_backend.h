// A Backend that holds the CPU backend and the CUDA backend and sends each
// batch where the planner predicts it finishes sooner. The batcher (the
// offload service's ClientServer) submits to it as to any backend; the
// planner counts the decisions and learns from the observed times.
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
  bool register_memory(void* p, size_t len) override;
  void unregister_memory(void* p) override;
  Planner& planner() { return *planner_; }

 private:
  std::shared_ptr<backend::CpuBackend> cpu_;
  std::unique_ptr<backend::Backend> gpu_;
  std::shared_ptr<Planner> planner_;
  struct Clock;
  std::shared_ptr<Clock> clock_;
  std::atomic<uint64_t> inline_batches_{0}, inline_jobs_{0}, inline_bytes_{0};  // run on the submitting thread
};

}  // namespace gpo::planner
