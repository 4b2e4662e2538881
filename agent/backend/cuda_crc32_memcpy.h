// The CUDA backend's runners for CRC-32 (kernels/crc32, one buffer split
// over many blocks, batches in one grid) and memcpy (the
// bytes go host -> device -> host and nothing else: it exists so the planner
// and `bench zlib-crc32-memcpy` measure what offloading a copy costs, two PCIe crossings).
// Called from CudaBackend::run_group on its worker thread, on its streams, so
// the backend's error path (CPU retry, sticky-error check) covers them.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "backend/backend.h"

namespace gpo::backend {

class CudaCrc32Memcpy {
 public:
  // streams: the backend's streams (cudaStream_t), used round-robin for pieces.
  CudaCrc32Memcpy(void* const* streams, int nstreams);
  ~CudaCrc32Memcpy();
  CudaCrc32Memcpy(const CudaCrc32Memcpy&) = delete;
  CudaCrc32Memcpy& operator=(const CudaCrc32Memcpy&) = delete;
  // Each returns 0, or the CUDA error (cudaError_t) after every piece of work it
  // queued has finished; jobs are then untouched (the caller re-runs them on
  // the CPU). inject_fault: a real CUDA error (an invalid copy) in the first piece.
  int run_crc32(std::vector<Job*>& jobs, bool inject_fault);
  int run_memcpy(std::vector<Job*>& jobs, bool inject_fault);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace gpo::backend
