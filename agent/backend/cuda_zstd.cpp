#include "backend/cuda_zstd.h"

#include "backend/ops.h"
#include "kernels/zstd/zstd_entropy.h"

namespace gpo::backend {

bool CudaZstd::gpu_takes(const Job& j) {
  if (j.level > kGpuMaxLevel) return false;
  if (j.in.empty() || j.out.empty()) return true;
  const uint8_t *i0 = j.in.data(), *i1 = i0 + j.in.size(), *o0 = j.out.data(), *o1 = o0 + j.out.size();
  return o1 <= i0 || i1 <= o0;
}

CudaZstd::CudaZstd() : comp_(std::make_unique<zstd::entropy::GpuCompressor>()) {}
CudaZstd::~CudaZstd() = default;

void CudaZstd::run(std::vector<Job*>& jobs, bool inject_fault) {
  std::vector<std::span<const uint8_t>> ins;
  std::vector<std::span<uint8_t>> outs;
  std::vector<size_t> sizes(jobs.size(), 0);
  ins.reserve(jobs.size());
  outs.reserve(jobs.size());
  for (Job* j : jobs) {
    ins.push_back(j->in);
    outs.push_back(j->out);
  }
  if (inject_fault) comp_->inject_fault_once();
  comp_->compress(ins, outs, sizes);
  for (size_t i = 0; i < jobs.size(); ++i) {
    if (sizes[i]) {
      jobs[i]->out_len = sizes[i];
      jobs[i]->status = Status::ok;
    } else {
      run_on_cpu(*jobs[i]);  // out too small: the CPU gives the reference answer
      jobs[i]->ran = Ran::cpu;
    }
  }
}

}  // namespace gpo::backend
