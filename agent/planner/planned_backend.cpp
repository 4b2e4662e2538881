#include "planner/planned_backend.h"

#include <chrono>
#include <mutex>

#include "backend/ops.h"

namespace gpo::planner {

// Each backend runs its batches one after another, so a batch's own time is
// from max(its submit, the previous batch's end on that backend) to its end.
struct PlannedBackend::Clock {
  std::mutex mu;
  std::chrono::steady_clock::time_point last_end[2];
};

PlannedBackend::PlannedBackend(std::shared_ptr<backend::CpuBackend> cpu, std::unique_ptr<backend::Backend> gpu,
                               std::shared_ptr<Planner> planner)
    : cpu_(std::move(cpu)), gpu_(std::move(gpu)), planner_(std::move(planner)), clock_(std::make_shared<Clock>()) {}

PlannedBackend::~PlannedBackend() {
  // Both run what is queued, then join: the GPU first (its retries use the CPU).
  gpu_.reset();
  cpu_.reset();
}

std::string PlannedBackend::name() const {
  return gpu_ ? "planned(" + cpu_->name() + "|" + gpu_->name() + ")" : "planned(" + cpu_->name() + ")";
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
  if (ticket.cpu_inline) {
    // A small batch: one thread, here, costs less than waking the pool (the
    // planner only says so below kInlineMaxNs, so the caller is not held long).
    for (auto& j : batch.jobs) backend::run_on_cpu(j);
    batch.ran_on = "cpu-inline";
    planner_->finished(ticket, std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - submitted).count());
    inline_batches_++;
    inline_jobs_ += count;
    inline_bytes_ += bytes;
    done(batch);
    return;
  }
  auto wrapped = [done = std::move(done), ticket = std::move(ticket), submitted, clock = clock_,
                  planner = planner_](backend::Batch& b) {
    const auto end = std::chrono::steady_clock::now();
    double ns;
    {
      std::lock_guard lk(clock->mu);
      auto& last = clock->last_end[int(ticket.where)];
      ns = std::chrono::duration<double, std::nano>(end - std::max(submitted, last)).count();
      last = end;
    }
    planner->finished(ticket, ns);
    done(b);
  };
  (w == Where::gpu ? *gpu_ : static_cast<backend::Backend&>(*cpu_)).submit(batch, std::move(wrapped));
}

backend::Stats PlannedBackend::stats() const {
  backend::Stats s = cpu_->stats();
  s.batches += inline_batches_, s.jobs += inline_jobs_, s.bytes += inline_bytes_;
  if (gpu_) {
    auto g = gpu_->stats();
    s.batches += g.batches, s.jobs += g.jobs, s.bytes += g.bytes;
    s.gpu_errors += g.gpu_errors, s.cpu_retries += g.cpu_retries;
  }
  return s;
}

bool PlannedBackend::register_memory(void* p, size_t len) { return gpu_ ? gpu_->register_memory(p, len) : true; }

void PlannedBackend::unregister_memory(void* p) {
  if (gpu_) gpu_->unregister_memory(p);
}

}  // namespace gpo::planner
