// The CUDA backend: one device, one worker thread, several streams so that the
// host-to-device copy, the kernels and the device-to-host copy of successive
// pieces of a batch overlap. Batches that queue up while one runs are taken
// together as one GPU run; jobs of a batch that belong on the CPU run on the
// CPU pool meanwhile. Any CUDA error re-runs the affected jobs on the CPU
// backend (nothing lost), logs one line and counts it. Built only with CUDA.
#pragma once
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>

#include "backend/backend.h"
#include "backend/cpu_backend.h"
#include "backend/lazy_pinner.h"

namespace gpo::backend {

class CudaBackend final : public Backend {
 public:
  // cpu runs retries and the jobs a GPU should not take (one long SHA-256 stream).
  CudaBackend(int device, std::shared_ptr<CpuBackend> cpu);
  ~CudaBackend() override;
  std::string name() const override;
  void submit(Batch& batch, Completion done) override;
  Stats stats() const override;
  bool register_memory(void* p, size_t len, Pin when = Pin::now) override;
  void unregister_memory(void* p) override;
  int device() const { return device_; }
  // Tests: the next batch meets a real CUDA error (an invalid copy) mid-way.
  void inject_fault_for_test() { inject_fault_ = true; }
  // Single SHA-256 messages longer than this run on the CPU (sequential on a GPU).
  static constexpr size_t kShaGpuMaxBytes = size_t{4} << 20;
  // Queued batches taken together into one GPU run, up to these bounds (a
  // single larger batch still runs whole).
  static constexpr size_t kMaxGroupJobs = 65536;
  static constexpr uint64_t kMaxGroupBytes = uint64_t{256} << 20;
  // One batch on the GPU and one queued behind it: what arrives meanwhile is
  // better gathered by the batcher into the next one.
  Capacity capacity() const override { return {2, UINT32_MAX, kMaxGroupBytes}; }

 private:
  struct Impl;
  void worker();
  void run_group(std::vector<std::pair<Batch*, Completion>>& group);

  int device_;
  std::shared_ptr<CpuBackend> cpu_;
  std::unique_ptr<Impl> impl_;
  std::unique_ptr<LazyPinner> lazy_;  // slabs registered with Pin::on_first_gpu_use
  std::atomic<bool> inject_fault_{false};
  bool broken_ = false;  // a sticky CUDA error: everything goes to the CPU from then on
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::pair<Batch*, Completion>> queue_;
  bool stop_ = false;
  std::thread worker_;
  mutable std::mutex stats_mu_;
  Stats stats_;
};

}  // namespace gpo::backend
