// Suite "crypto": AES-256-GCM, AES-256-CTR and SHA-256 throughput, side by
// side: GPU kernel only (data already on the device), GPU end to end (host
// memory in, host memory out, through the CUDA backend with the buffers pinned
// once, as client slabs are), the CPU on one core and the CPU backend on all
// cores; then the CPU reference against `openssl speed` (cpu_reference.h).
// Without a GPU the CPU columns still run and the GPU cells say "no GPU".
// GB/s = 1e9 bytes of input per second. (Was tools/bench-crypto.)
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <memory>
#include <stdexcept>

#include "backend/cpu_backend.h"
#include "backend/ops.h"
#include "bench/bench.h"
#include "bench/cpu_reference.h"
#ifdef GPUOFFLOAD_HAVE_CUDA
#include <cuda_runtime.h>

#include "kernels/common/cuda_check.h"

#include "kernels/aes/aes.h"
#include "backend/cuda_backend.h"
#include "kernels/sha256/sha256.h"
#endif

namespace gpo::bench {
namespace {

using backend::Job;
using backend::OpId;
using Clock = std::chrono::steady_clock;

struct Shape {
  OpId op;
  size_t job;
  size_t count;
  int reps;
};

#ifdef GPUOFFLOAD_HAVE_CUDA

// Device buffers and events for the kernel-only column; the CUDA backend for end to end.
struct Gpu {
  uint8_t *d_in = nullptr, *d_out = nullptr;
  cudaStream_t stream{};
  cudaEvent_t e0{}, e1{};
  std::unique_ptr<backend::CudaBackend> be;
  std::string pcie;

  Gpu(int dev, std::shared_ptr<backend::CpuBackend> cpu, std::vector<uint8_t>& h_in, std::vector<uint8_t>& h_out) {
    cuda::check(cudaSetDevice(dev), "cudaSetDevice");
    const size_t n = h_in.size();
    be = std::make_unique<backend::CudaBackend>(dev, cpu);
    be->register_memory(h_in.data(), n);
    be->register_memory(h_out.data(), h_out.size());
    cuda::check(cudaMalloc(&d_in, n), "cudaMalloc");
    cuda::check(cudaMalloc(&d_out, n), "cudaMalloc");
    cuda::check(cudaMemcpy(d_in, h_in.data(), n, cudaMemcpyHostToDevice), "cudaMemcpy");
    cuda::check(cudaStreamCreate(&stream), "cudaStreamCreate");
    cudaEventCreate(&e0);
    cudaEventCreate(&e1);
    // The PCIe ceiling of end-to-end numbers: pinned copies one way, and both ways at once.
    cudaStream_t s2;
    cuda::check(cudaStreamCreate(&s2), "cudaStreamCreate");
    auto copy_time = [&](bool h2d, bool d2h) {
      std::vector<double> t;
      for (int r = 0; r < 3; ++r) {
        cuda::check(cudaDeviceSynchronize(), "sync");
        auto t0 = Clock::now();
        if (h2d) cuda::check(cudaMemcpyAsync(d_out, h_in.data(), n, cudaMemcpyHostToDevice, stream), "h2d");
        if (d2h) cuda::check(cudaMemcpyAsync(h_out.data(), d_in, n, cudaMemcpyDeviceToHost, s2), "d2h");
        cuda::check(cudaDeviceSynchronize(), "sync");
        t.push_back(seconds_since(t0));
      }
      return n / median(t) / 1e9;
    };
    const double up = copy_time(true, false), down = copy_time(false, true), both = copy_time(true, true);
    pcie = fmt::format("PCIe (pinned, {}): host-to-device {:.1f} GB/s, device-to-host {:.1f} GB/s, both at once "
                       "{:.1f} GB/s each way",
                       fmt_size(n), up, down, both);
    cudaStreamDestroy(s2);
  }
  ~Gpu() {
    cudaFree(d_in);
    cudaFree(d_out);
    cudaStreamDestroy(stream);
    cudaEventDestroy(e0);
    cudaEventDestroy(e1);
  }
  Gpu(const Gpu&) = delete;
  Gpu& operator=(const Gpu&) = delete;

  // Kernel-only time of the batch's jobs, inputs already in device memory.
  double kernel_seconds(const Shape& sh, const backend::Batch& batch) {
    std::vector<double> kt;
    auto timed = [&](auto&& enqueue) {
      cudaEventRecord(e0, stream);
      enqueue();
      cudaEventRecord(e1, stream);
      cuda::check(cudaEventSynchronize(e1), "sync");
      float ms = 0;
      cudaEventElapsedTime(&ms, e0, e1);
      return ms / 1e3;
    };
    if (sh.op == OpId::sha256) {
      std::vector<sha256::gpu::DevMsg> msgs(sh.count);
      for (size_t i = 0; i < sh.count; ++i) msgs[i] = {reinterpret_cast<uint64_t>(d_in + i * sh.job), sh.job};
      sha256::gpu::DevMsg* dm;
      cuda::check(cudaMalloc(&dm, msgs.size() * sizeof(msgs[0])), "cudaMalloc");
      cuda::check(cudaMemcpy(dm, msgs.data(), msgs.size() * sizeof(msgs[0]), cudaMemcpyHostToDevice), "cudaMemcpy");
      auto run = [&] { cuda::check(cudaError_t(sha256::gpu::enqueue_digests(dm, uint32_t(sh.count), d_out, stream)), "sha256"); };
      for (int r = (sh.reps == 1 ? 0 : -1); r < sh.reps; ++r) {
        double t = timed(run);
        if (r >= 0) kt.push_back(t);
      }
      cudaFree(dm);
    } else {
      std::vector<aes::gpu::DevJob> dj(sh.count);
      for (size_t i = 0; i < sh.count; ++i) {
        auto& d = dj[i];
        d.mode = uint8_t(sh.op == OpId::aes256_ctr ? aes::Mode::ctr : aes::Mode::gcm);
        d.dir = uint8_t(aes::Dir::encrypt);
        d.in = reinterpret_cast<uint64_t>(d_in + i * sh.job);
        d.out = reinterpret_cast<uint64_t>(d_out + i * sh.job);
        d.len = sh.job;
        std::memcpy(d.key, batch.jobs[i].key.data(), 32);
        std::memcpy(d.iv, batch.jobs[i].iv.data(), batch.jobs[i].iv.size());
      }
      auto seg_job = aes::gpu::plan(dj);
      void* wsmem;
      cuda::check(cudaMalloc(&wsmem, aes::gpu::workspace_bytes(uint32_t(dj.size()), uint32_t(seg_job.size()))), "cudaMalloc");
      auto ws = aes::gpu::carve(wsmem, uint32_t(dj.size()), uint32_t(seg_job.size()));
      cuda::check(cudaMemcpy(ws.jobs, dj.data(), dj.size() * sizeof(dj[0]), cudaMemcpyHostToDevice), "cudaMemcpy");
      cuda::check(cudaMemcpy(ws.seg_job, seg_job.data(), seg_job.size() * 4, cudaMemcpyHostToDevice), "cudaMemcpy");
      auto run = [&] { cuda::check(cudaError_t(aes::gpu::enqueue_all(ws, stream)), "aes kernels"); };
      for (int r = -1; r < sh.reps; ++r) {
        double t = timed(run);
        if (r >= 0) kt.push_back(t);
      }
      cudaFree(wsmem);
    }
    return median(kt);
  }
};
#else
struct Gpu {
  std::string pcie;
};
#endif

}  // namespace

int run_crypto(const Options& opt, std::vector<Table>& out) {
  const unsigned threads = opt.threads ? opt.threads : 1;
  const size_t total = opt.quick ? (size_t{8} << 20) : (size_t{256} << 20);
  const int reps = opt.quick ? 2 : 5;
  std::vector<Shape> shapes;
  const std::vector<size_t> sizes = opt.quick ? std::vector<size_t>{4096, 1 << 20}
                                              : std::vector<size_t>{4096, 65536, 1 << 20, 16 << 20, 64 << 20};
  for (OpId op : {OpId::aes256_gcm_encrypt, OpId::aes256_ctr, OpId::sha256})
    for (size_t s : sizes) {
      if (s > total) continue;
      const bool sha_big = op == OpId::sha256 && s > (1 << 20);
      shapes.push_back({op, s, std::max<size_t>(1, total / s), sha_big ? 1 : reps});
      if (s >= (1 << 20) && op != OpId::sha256) shapes.push_back({op, s, 1, reps});  // one large job alone
      if (s == 4096 && !opt.quick) shapes.push_back({op, s, 1024, reps});             // a small batch
    }
  size_t max_bytes = 0;
  for (auto& s : shapes) max_bytes = std::max(max_bytes, s.job * s.count);
  std::vector<uint8_t> h_in(max_bytes), h_out(max_bytes);
  fill_random(h_in.data(), h_in.size(), 42);
  std::vector<uint8_t> keys(32 * 4096), ivs(16 * 4096), digests;
  fill_random(keys.data(), keys.size(), 7);
  fill_random(ivs.data(), ivs.size(), 9);
  auto cpu = std::make_shared<backend::CpuBackend>(threads);

  std::string why;
  std::unique_ptr<Gpu> gpu;
  if (backend::cuda_device_count(&why) > 0) {
#ifdef GPUOFFLOAD_HAVE_CUDA
    try {
      gpu = std::make_unique<Gpu>(opt.gpu, cpu, h_in, h_out);
    } catch (const std::exception& e) {
      why = e.what();
    }
#endif
  }
  const std::string no_gpu = "no GPU";

  Table t;
  t.title = "Crypto throughput, GB/s of input (1e9 B/s)";
  t.columns = {"op, job size x batch", "GPU kernel", "GPU end to end", "CPU 1 core",
               fmt::format("CPU backend {} threads", threads), "note"};
  int rc = 0;
  for (const auto& sh : shapes) {
    const auto* info = backend::find_op(sh.op);
    const size_t bytes = sh.job * sh.count;
    const bool is_sha = sh.op == OpId::sha256;
    digests.assign(sh.count * 32, 0);
    backend::Batch batch;
    batch.jobs.resize(sh.count);
    for (size_t i = 0; i < sh.count; ++i) {
      Job& j = batch.jobs[i];
      j.op = sh.op;
      j.in = {h_in.data() + i * sh.job, sh.job};
      if (is_sha) {
        j.out = {digests.data() + 32 * i, 32};
      } else {
        j.out = {h_out.data() + i * sh.job, sh.job};
        j.key = {keys.data() + 32 * (i % (keys.size() / 32)), 32};
        j.iv = {ivs.data() + 16 * (i % (ivs.size() / 16)), size_t(sh.op == OpId::aes256_ctr ? 16 : 12)};
      }
    }
    std::vector<std::string> row{fmt::format("{} {} x{}", info->name, fmt_size(sh.job), sh.count)};
    std::string note;
#ifdef GPUOFFLOAD_HAVE_CUDA
    if (gpu) {
      row.push_back(fmt_gbps(bytes / gpu->kernel_seconds(sh, batch)));
      std::vector<double> et;
      for (int r = (sh.reps == 1 ? 0 : -1); r < sh.reps; ++r) {
        auto t0 = Clock::now();
        gpu->be->run(batch);
        if (r >= 0) et.push_back(seconds_since(t0));
      }
      for (auto& j : batch.jobs)
        if (j.status != backend::Status::ok) note = "job failed!", rc = 1;
      if (batch.ran_on != gpu->be->name()) note = "ran on " + batch.ran_on;
      row.push_back(fmt_gbps(bytes / median(et)));
      // Spot check against OpenSSL: first and last job, bit for bit.
      for (size_t i : {size_t(0), sh.count - 1}) {
        Job c = batch.jobs[i];
        std::vector<uint8_t> ref(c.out.size());
        c.out = ref;
        backend::run_on_cpu(c);
        if (!std::equal(ref.begin(), ref.end(), batch.jobs[i].out.begin()) || c.tag != batch.jobs[i].tag)
          note = "MISMATCH vs OpenSSL", rc = 1;
      }
    }
#endif
    if (!gpu) row.insert(row.end(), {no_gpu, no_gpu});
    // OpenSSL, one core: as many jobs as fit in the minimum time (at least one).
    double cpu1 = 0;
    {
      size_t done = 0, n = 0;
      auto t0 = Clock::now();
      while (n < sh.count && (n == 0 || seconds_since(t0) < opt.min_seconds)) {
        Job c = batch.jobs[n++];
        backend::run_on_cpu(c);
        done += c.in.size();
      }
      cpu1 = done / seconds_since(t0);
      row.push_back(fmt_gbps(cpu1));
    }
    // OpenSSL, all cores: the CPU backend on (a prefix of) the batch, jobs spread over the pool.
    {
      backend::Batch b2;
      const size_t n = std::min(
          sh.count, std::max<size_t>(threads, size_t(std::max(cpu1, 1e8) * threads * opt.min_seconds / sh.job)));
      b2.jobs.assign(batch.jobs.begin(), batch.jobs.begin() + n);
      auto t0 = Clock::now();
      cpu->run(b2);
      row.push_back(fmt_gbps(n * sh.job / seconds_since(t0)));
      if (n < threads)
        note += fmt::format("{}all-cores row uses {} of {} threads", note.empty() ? "" : "; ", n, threads);
    }
    row.push_back(note);
    t.rows.push_back(std::move(row));
  }
  if (gpu) {
    t.notes.push_back(gpu->pcie);
    t.notes.push_back("end to end: host buffers pinned once (as client slabs), copies and launches included");
  } else {
    t.notes.push_back("GPU columns: no usable GPU (" + why + ")");
  }
  t.notes.push_back(fmt::format("batch = {} of input per shape unless the row says x1; median of {} runs", fmt_size(total),
                                reps));
#ifdef GPUOFFLOAD_HAVE_CUDA
  if (gpu) {
    gpu->be->unregister_memory(h_in.data());
    gpu->be->unregister_memory(h_out.data());
  }
#endif
  t.notes.push_back("CPU 1 core: the jobs of the batch one after another on one thread (OpenSSL through the "
                    "CPU backend's job path); CPU backend: the whole batch on its pool. The next table checks both "
                    "against what `openssl speed` does on this machine");
  out.push_back(std::move(t));
  rc |= cpu_reference(opt, out);
  return rc;
}

}  // namespace gpo::bench
