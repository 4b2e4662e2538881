// make_backend(): CUDA when usable, else the CPU, and one line saying which.
#include <fmt/format.h>

#include <stdexcept>

#include "backend/cpu_backend.h"
#include "util/log.h"
#ifdef GPUOFFLOAD_HAVE_CUDA
#include "backend/cuda_backend.h"
#include "kernels/common/cuda_check.h"
#endif

namespace gpo::backend {
namespace {

// Several GPUs of one host: batches go round-robin to one backend per device.
class MultiBackend final : public Backend {
 public:
  explicit MultiBackend(std::vector<std::unique_ptr<Backend>> parts) : parts_(std::move(parts)) {}
  std::string name() const override {
    std::string n;
    for (auto& p : parts_) n += (n.empty() ? "" : ",") + p->name();
    return n;
  }
  void submit(Batch& batch, Completion done) override {
    parts_[next_.fetch_add(1) % parts_.size()]->submit(batch, std::move(done));
  }
  Stats stats() const override {
    Stats s;
    for (auto& p : parts_) {
      Stats x = p->stats();
      s.batches += x.batches, s.jobs += x.jobs, s.bytes += x.bytes;
      s.gpu_errors += x.gpu_errors, s.cpu_retries += x.cpu_retries, s.cpu_ns += x.cpu_ns;
      s.split_jobs += x.split_jobs, s.jobs_on_waiter_cpu += x.jobs_on_waiter_cpu;
    }
    return s;
  }
  Capacity capacity() const override {
    Capacity c = parts_.front()->capacity();
    c.batches *= uint32_t(parts_.size());
    return c;
  }
  // Pinned memory is registered portable: one registration serves every device.
  // Now, whatever was asked: a background pin starts on the first device's
  // use only, and the others would stage every copy until then.
  bool register_memory(void* p, size_t len, Pin) override { return parts_.front()->register_memory(p, len, Pin::now); }
  void unregister_memory(void* p) override { parts_.front()->unregister_memory(p); }

 private:
  std::vector<std::unique_ptr<Backend>> parts_;
  std::atomic<size_t> next_{0};
};

}  // namespace

int cuda_device_count(std::string* why) {
#ifdef GPUOFFLOAD_HAVE_CUDA
  const int n = cuda::device_count(why);
  return n > 0 ? n : -1;
#else
  if (why) *why = "this build has no CUDA support (configured with GPUOFFLOAD_CUDA=OFF)";
  return -1;
#endif
}

std::unique_ptr<Backend> make_backend(const Options& opt) {
  if (opt.choice != "auto" && opt.choice != "cuda" && opt.choice != "cpu")
    throw std::invalid_argument(fmt::format("unknown backend '{}': use auto, cuda or cpu", opt.choice));
  if (opt.choice == "cpu") {
    auto cpu = std::make_unique<CpuBackend>(opt.cpu_threads);
    log::info("backend: cpu ({} threads, OpenSSL), as asked", cpu->threads());
    return cpu;
  }
  std::string why;
  const int count = cuda_device_count(&why);
  if (count < 0) {
    if (opt.choice == "cuda")
      throw std::runtime_error(fmt::format("backend cuda: no usable GPU: {}; use --backend cpu or auto", why));
    auto cpu = std::make_unique<CpuBackend>(opt.cpu_threads);
    log::info("backend: no usable GPU ({}); serving on the CPU backend ({} threads, OpenSSL)", why, cpu->threads());
    return cpu;
  }
#ifdef GPUOFFLOAD_HAVE_CUDA
  std::vector<int> devs = opt.gpus;
  if (devs.empty())
    for (int i = 0; i < count; ++i) devs.push_back(i);
  auto cpu = opt.cpu ? opt.cpu : std::make_shared<CpuBackend>(opt.cpu_threads);
  std::vector<std::unique_ptr<Backend>> parts;
  std::string names;
  for (int d : devs) {
    if (d < 0 || d >= count)
      throw std::invalid_argument(fmt::format("--gpu {}: this host has GPUs 0..{}", d, count - 1));
    cudaDeviceProp p{};
    cudaGetDeviceProperties(&p, d);
    names += fmt::format("{}{} ({})", names.empty() ? "" : ", ", d, p.name);
    parts.push_back(std::make_unique<CudaBackend>(d, cpu));
  }
  log::info("backend: cuda on GPU {}; CPU fallback {} threads", names, cpu->threads());
  if (parts.size() == 1) return std::move(parts.front());
  return std::make_unique<MultiBackend>(std::move(parts));
#else
  return nullptr;
#endif
}

}  // namespace gpo::backend
