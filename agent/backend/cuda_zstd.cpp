#include "backend/cuda_zstd.h"

#include <stdexcept>

#include "backend/ops.h"
#include "zstd/zstd_gpu.h"

namespace gpo::backend {

CudaZstd::CudaZstd(unsigned cpu_threads) : pipe_(std::make_unique<zstd::gpu::Pipeline>(cpu_threads)) {}
CudaZstd::~CudaZstd() = default;

void CudaZstd::run(std::vector<Job*>& jobs, bool inject_fault) {
  if (inject_fault) throw std::runtime_error("zstd: injected fault");
  std::vector<std::span<const uint8_t>> ins;
  std::vector<std::span<uint8_t>> outs;
  std::vector<int> levels;
  std::vector<size_t> sizes(jobs.size(), 0);
  for (Job* j : jobs) {
    ins.push_back(j->in);
    outs.push_back(j->out);
    levels.push_back(j->level);
  }
  pipe_->compress(ins, outs, levels, sizes);
  for (size_t i = 0; i < jobs.size(); ++i) {
    if (sizes[i]) {
      jobs[i]->out_len = sizes[i];
      jobs[i]->status = Status::ok;
    } else {
      run_on_cpu(*jobs[i]);  // out too small: the CPU gives the reference answer
    }
  }
}

}  // namespace gpo::backend
