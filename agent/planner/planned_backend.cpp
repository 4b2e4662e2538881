#include "planner/planned_backend.h"

#include <chrono>

#include "backend/ops.h"

namespace gpo::planner {

PlannedBackend::PlannedBackend(std::shared_ptr<backend::CpuBackend> cpu, std::unique_ptr<backend::Backend> gpu,
                               std::shared_ptr<Planner> planner)
    : cpu_(std::move(cpu)), gpu_(std::move(gpu)), planner_(std::move(planner)) {}

PlannedBackend::~PlannedBackend() {
  // Both run what is queued, then join: the GPU first (its retries use the CPU).
  gpu_.reset();
  cpu_.reset();
}

std::string PlannedBackend::name() const {
  return gpu_ ? "planned(" + cpu_->name() + "|" + gpu_->name() + ")" : "planned(" + cpu_->name() + ")";
}

backend::Capacity PlannedBackend::capacity() const {
  backend::Capacity c = cpu_->capacity();
  if (gpu_) {
    c.batches += gpu_->capacity().batches;
    c.queue_bytes = gpu_->capacity().queue_bytes;
  }
  return c;
}

void PlannedBackend::submit(backend::Batch& batch, backend::Completion done) {
  if (batch.jobs.empty()) {
    cpu_->submit(batch, std::move(done));
    return;
  }
  // The batcher hands over jobs of one op; a mixed batch is planned as its first op.
  const auto* info = backend::find_op(batch.jobs.front().op);
  std::string op = info ? std::string(info->name) : "?";
  uint64_t bytes = 0;
  for (const auto& j : batch.jobs) bytes += j.in.size();
  const uint64_t count = batch.jobs.size(), mean = bytes / count;
  Decision d = planner_->plan(op, mean, count);
  Where w = gpu_ && d.where == Where::gpu ? Where::gpu : Where::cpu;
  auto ticket = planner_->dispatched(op, w, mean, count);
  const auto submitted = std::chrono::steady_clock::now();
  auto wrapped = [done = std::move(done), ticket = std::move(ticket), submitted,
                  planner = planner_](backend::Batch& b) {
    // The CPU's figure is the work the batch took (its threads run several
    // batches at once, so wall time says little); the GPU's is its run time.
    double observed = 0;
    if (ticket.where == Where::cpu)
      observed = double(b.cpu_ns);
    else if (b.run_ns)
      observed = double(b.run_ns);
    else
      observed = std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - submitted).count();
    // A GPU batch whose jobs all went back to the CPU (an error) says nothing of the GPU.
    if (ticket.where == Where::gpu && b.ran_on.rfind("cuda", 0) != 0) observed = 0;
    planner->finished(ticket, observed, double(b.cpu_ns));
    done(b);
  };
  (w == Where::gpu ? *gpu_ : static_cast<backend::Backend&>(*cpu_)).submit(batch, std::move(wrapped));
}

backend::Stats PlannedBackend::stats() const {
  backend::Stats s = cpu_->stats();
  if (gpu_) {
    auto g = gpu_->stats();
    s.batches += g.batches, s.jobs += g.jobs, s.bytes += g.bytes;
    s.gpu_errors += g.gpu_errors, s.cpu_retries += g.cpu_retries, s.cpu_ns += g.cpu_ns;
  }
  return s;
}

bool PlannedBackend::register_memory(void* p, size_t len, Pin when) {
  return gpu_ ? gpu_->register_memory(p, len, when) : true;
}

void PlannedBackend::unregister_memory(void* p) {
  if (gpu_) gpu_->unregister_memory(p);
}

}  // namespace gpo::planner
