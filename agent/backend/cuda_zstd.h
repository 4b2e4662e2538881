// The CUDA backend's runner for zstd_compress (stage 1 of kernels/zstd: the
// GPU finds the matches of every block of the batch in one launch, libzstd
// entropy-codes each job on CPU threads from those sequences; frames are
// standard). Called from CudaBackend::run_batch on its worker thread (device
// already current), so the backend's error path (CPU retry) covers it.
#pragma once
#include <memory>
#include <vector>

#include "backend/backend.h"

namespace gpo::zstd::gpu {
class Pipeline;
}

namespace gpo::backend {

class CudaZstd {
 public:
  explicit CudaZstd(unsigned cpu_threads);  // entropy threads; 0 = all cores
  ~CudaZstd();
  // Sets every job's status and out_len. A job whose frame did not fit its
  // output runs on the CPU (which then reports it). Throws on a CUDA error
  // with the jobs untouched; inject_fault: throws before any work.
  void run(std::vector<Job*>& jobs, bool inject_fault);

 private:
  std::unique_ptr<zstd::gpu::Pipeline> pipe_;
};

}  // namespace gpo::backend
