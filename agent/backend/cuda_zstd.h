// The CUDA backend's runner for zstd_compress: stages 1 and 2 of kernels/zstd
// on the GPU (GpuCompressor: the GPU finds the matches and entropy-codes
// them; the CPU does no per-byte work beyond staging pageable buffers).
// Frames are standard zstd frames, valid but not ZSTD_compress()'s bytes; their
// ratio lies between zstd -1 and -3, so only jobs at level <= kGpuMaxLevel
// come here (gpu_takes); the backend runs the others on the CPU with libzstd
// at their level. Called from CudaBackend::run_group on its worker thread
// (device already current), so the backend's error path (CPU retry) covers it.
#pragma once
#include <memory>
#include <vector>

#include "backend/backend.h"

namespace gpo::zstd::entropy {
class GpuCompressor;
}

namespace gpo::backend {

class CudaZstd {
 public:
  // Highest level the GPU serves: its frames are smaller than zstd -1's and
  // larger than zstd -3's on the bench corpus (docs/zstd-gpu.md), so a job
  // asking for more gets libzstd at its level instead.
  static constexpr int kGpuMaxLevel = 3;
  // Whether the GPU takes this zstd_compress job: level <= kGpuMaxLevel (0 and
  // negative levels included) and an output that does not overlap its input
  // (the input must stay intact for a CPU retry).
  static bool gpu_takes(const Job& j);

  CudaZstd();
  ~CudaZstd();
  // Sets every job's status and out_len. A job whose frame did not fit its
  // output runs on the CPU (which then reports it). Throws gpo::cuda::Error
  // on a CUDA error, after the GPU work of the call has stopped (the jobs may
  // hold partial output; the CPU retry rewrites it); inject_fault: a real
  // CUDA error on the first piece.
  void run(std::vector<Job*>& jobs, bool inject_fault);

 private:
  std::unique_ptr<zstd::entropy::GpuCompressor> comp_;
};

}  // namespace gpo::backend
