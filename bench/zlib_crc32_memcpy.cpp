// Suite "zlib-crc32-memcpy": zlib compress2, CRC-32 and memcpy, side by side. CRC-32 (zlib crc32()):
// GPU kernel only (data already on the device), GPU end to end (host memory in,
// the crcs back, through the CUDA backend with the input pinned once as client
// slabs are), zlib on one core and on all cores (a buffer split per core and
// joined with crc32_combine, so one large buffer uses every core too).
// memcpy: GPU end to end (host -> device -> host, pinned) against libc memcpy
// on one core and all cores: two PCIe crossings against one pass over RAM.
// zlib compress2 (no GPU kernel): the CPU backend's batch against one core.
// GB/s = 1e9 bytes of input per second. Without a GPU the GPU cells say so.
#include <fmt/format.h>
#include <zlib.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <thread>

#include "backend/cpu_backend.h"
#include "backend/ops.h"
#include "bench/bench.h"
#ifdef GPUOFFLOAD_HAVE_CUDA
#include <cuda_runtime.h>

#include "kernels/common/cuda_check.h"

#include "backend/cuda_backend.h"
#include "kernels/crc32/crc32.h"
#endif

namespace gpo::bench {
namespace {

using backend::Job;
using backend::OpId;
using Clock = std::chrono::steady_clock;

// Splits [0, jobs) x bytes over threads: each thread takes whole jobs, or,
// when there are fewer jobs than threads, one part of each job.
template <typename Part>
void parallel_parts(unsigned threads, size_t njobs, size_t job_len, Part&& part) {
  const size_t parts_per_job = njobs >= threads ? 1 : (threads + njobs - 1) / njobs;
  const size_t part_len = (job_len + parts_per_job - 1) / parts_per_job;
  const size_t nparts = njobs * parts_per_job;
  std::vector<std::thread> ts;
  for (unsigned t = 0; t < threads; ++t)
    ts.emplace_back([&, t] {
      for (size_t p = t; p < nparts; p += threads) {
        const size_t j = p / parts_per_job, k = p % parts_per_job;
        const size_t lo = std::min(job_len, k * part_len), hi = std::min(job_len, lo + part_len);
        part(j, k, lo, hi);
      }
    });
  for (auto& t : ts) t.join();
}

struct Point {
  size_t job;
  size_t count;
};

std::vector<Point> points(const Options& opt) {
  const size_t total = opt.quick ? size_t{8} << 20 : size_t{256} << 20;
  std::vector<Point> p;
  for (size_t s : {size_t{4} << 10, size_t{64} << 10, size_t{1} << 20, size_t{16} << 20, size_t{64} << 20}) {
    if (opt.quick && s > (size_t{8} << 20)) continue;
    p.push_back({s, std::max<size_t>(1, total / s)});
  }
  return p;
}

#ifdef GPUOFFLOAD_HAVE_CUDA

// CRC kernels alone over data already on the device: GB/s.
double crc_kernel_gbps(const Options& opt, const uint8_t* host, size_t job, size_t count) {
  namespace g = crc32::gpu;
  const size_t total = job * count;
  uint8_t* d = nullptr;
  g::DevJob* djobs = nullptr;
  uint32_t *dmap = nullptr, *dacc = nullptr, *dres = nullptr;
  const uint32_t tiles_per = uint32_t(g::tiles_of(job)), ntiles = tiles_per * uint32_t(count);
  std::vector<g::DevJob> hj(count);
  std::vector<uint32_t> hmap(ntiles);
  cuda::check(cudaMalloc(&d, total), "cudaMalloc");
  cuda::check(cudaMalloc(&djobs, count * sizeof(g::DevJob)), "cudaMalloc");
  cuda::check(cudaMalloc(&dmap, ntiles * sizeof(uint32_t)), "cudaMalloc");
  cuda::check(cudaMalloc(&dacc, count * sizeof(uint32_t)), "cudaMalloc");
  cuda::check(cudaMalloc(&dres, count * sizeof(uint32_t)), "cudaMalloc");
  for (size_t i = 0; i < count; ++i) {
    hj[i] = {reinterpret_cast<uint64_t>(d + i * job), job, uint32_t(i * tiles_per), 0};
    for (uint32_t t = 0; t < tiles_per; ++t) hmap[i * tiles_per + t] = uint32_t(i);
  }
  cuda::check(cudaMemcpy(d, host, total, cudaMemcpyHostToDevice), "copy");
  cuda::check(cudaMemcpy(djobs, hj.data(), count * sizeof(g::DevJob), cudaMemcpyHostToDevice), "copy");
  cuda::check(cudaMemcpy(dmap, hmap.data(), ntiles * sizeof(uint32_t), cudaMemcpyHostToDevice), "copy");
  cudaEvent_t a, b;
  cuda::check(cudaEventCreate(&a), "event");
  cuda::check(cudaEventCreate(&b), "event");
  auto launch = [&] {
    cuda::check(cudaMemsetAsync(dacc, 0, count * sizeof(uint32_t), nullptr), "memset");
    cuda::check(cudaError_t(g::enqueue_tiles(djobs, dmap, 0, ntiles, dacc, nullptr)), "crc32 kernel");
    cuda::check(cudaError_t(g::enqueue_finalize(djobs, uint32_t(count), dacc, dres, nullptr)), "crc32 finalize");
  };
  launch();
  cuda::check(cudaDeviceSynchronize(), "sync");
  int reps = 0;
  float ms = 0;
  auto t0 = Clock::now();
  do {
    cuda::check(cudaEventRecord(a, nullptr), "event");
    for (int i = 0; i < 10; ++i) launch();
    cuda::check(cudaEventRecord(b, nullptr), "event");
    cuda::check(cudaEventSynchronize(b), "sync");
    float m = 0;
    cudaEventElapsedTime(&m, a, b);
    ms += m;
    reps += 10;
  } while (seconds_since(t0) < opt.min_seconds);
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  for (void* p : {static_cast<void*>(d), static_cast<void*>(djobs), static_cast<void*>(dmap),
                  static_cast<void*>(dacc), static_cast<void*>(dres)})
    cudaFree(p);
  return double(total) * reps / (ms / 1e3) / 1e9;
}
#endif

}  // namespace

namespace {

// What the three tables share: the shapes, one buffer for every point (like a
// client slab: inputs packed, then outputs), the CPU backend and, when usable,
// the CUDA backend with the buffer pinned.
struct Host {
  const Options& opt;
  unsigned threads;
  std::vector<Point> pts;
  size_t max_total = 0;
  std::vector<uint8_t> in, outbuf;
  std::unique_ptr<backend::Backend> gpu;
  std::shared_ptr<backend::CpuBackend> cpu_be;
  std::string na;  // what a GPU cell says without a GPU

  explicit Host(const Options& o)
      : opt(o), threads(o.threads ? o.threads : std::max(1u, std::thread::hardware_concurrency())), pts(points(o)) {
    for (auto& p : pts) max_total = std::max(max_total, p.job * p.count);
    in.resize(max_total);
    outbuf.resize(max_total + 64);
    fill_random(in.data(), in.size(), 42);
    cpu_be = std::make_shared<backend::CpuBackend>(threads);
    std::string no_gpu;
#ifdef GPUOFFLOAD_HAVE_CUDA
    if (backend::cuda_device_count(&no_gpu) > 0) {
      auto g = std::make_unique<backend::CudaBackend>(opt.gpu, cpu_be);
      if (!g->register_memory(in.data(), in.size()) || !g->register_memory(outbuf.data(), outbuf.size()))
        fmt::print(stderr, "zlib-crc32-memcpy: cannot pin the buffers; GPU end to end goes through staging\n");
      gpu = std::move(g);
    }
#else
    no_gpu = "built without CUDA";
#endif
    na = no_gpu.empty() ? "-" : "no GPU";
  }
  ~Host() {
#ifdef GPUOFFLOAD_HAVE_CUDA
    if (gpu) {
      gpu->unregister_memory(in.data());
      gpu->unregister_memory(outbuf.data());
    }
#endif
  }

  backend::Batch batch_of(OpId op, size_t job, size_t count, uint8_t* src, uint8_t* dst) {
    backend::Batch b;
    b.jobs.resize(count);
    for (size_t i = 0; i < count; ++i) {
      Job& j = b.jobs[i];
      j.op = op;
      j.in = {src + i * job, job};
      j.out = op == OpId::crc32 ? std::span<uint8_t>(dst + 4 * i, 4) : std::span<uint8_t>(dst + i * job, job);
    }
    return b;
  }
  // Bytes per second of `count` jobs of `job` bytes through the CUDA backend.
  double gpu_e2e(OpId op, size_t job, size_t count, bool* ok, uint8_t* src = nullptr, uint8_t* dst = nullptr) {
    backend::Batch b = batch_of(op, job, count, src ? src : in.data(), dst ? dst : outbuf.data());
    double s = time_per_call(opt.min_seconds, [&] { gpu->run(b); });
    *ok = b.ran_on == gpu->name();
    for (auto& j : b.jobs) *ok &= j.status == backend::Status::ok;
    return double(job * count) / s;
  }
};

// CRC-32 through the GPU: the kernel alone and end to end through the CUDA
// backend, formatted; what a cell says without a GPU otherwise.
std::pair<std::string, std::string> crc_gpu_cells(Host& h, [[maybe_unused]] const Point& p) {
  std::string kern = h.na, e2e = h.na;
#ifdef GPUOFFLOAD_HAVE_CUDA
  if (h.gpu) {
    try {
      kern = fmt_gbps(crc_kernel_gbps(h.opt, h.in.data(), p.job, p.count) * 1e9);
      bool ok = false;
      e2e = fmt_gbps(h.gpu_e2e(OpId::crc32, p.job, p.count, &ok));
      if (!ok) e2e += " (cpu!)";
    } catch (const std::exception& e) {
      fmt::print(stderr, "zlib-crc32-memcpy: crc32 GPU: {}\n", e.what());
      kern = e2e = "error";
    }
  }
#endif
  return {kern, e2e};
}

// zlib crc32_z on one core, over at most 64 MiB of the point's jobs: bytes per second.
double zlib_crc_one_core(const Host& h, const Point& p) {
  const size_t count = std::max<size_t>(1, std::min(p.job * p.count, size_t{64} << 20) / p.job);
  volatile uLong sink = 0;
  const double s = time_per_call(h.opt.min_seconds, [&] {
    for (size_t i = 0; i < count; ++i) sink = sink + crc32_z(0, h.in.data() + i * p.job, p.job);
  });
  return double(count * p.job) / s;
}

// zlib crc32_z on all cores: jobs spread over the threads; fewer jobs than
// threads are split and the parts joined with crc32_combine, as a caller
// splitting a buffer would. Bytes per second.
double zlib_crc_all_cores(const Host& h, const Point& p) {
  const unsigned threads = h.threads;
  volatile uLong sink = 0;
  std::vector<uLong> part_crc(p.count * threads + threads);
  const double s = time_per_call(h.opt.min_seconds, [&] {
    parallel_parts(threads, p.count, p.job, [&](size_t j, size_t k, size_t lo, size_t hi) {
      part_crc[j * threads + k] = crc32_z(0, h.in.data() + j * p.job + lo, hi - lo);
    });
    if (p.count < threads) {
      const size_t per = (threads + p.count - 1) / p.count, plen = (p.job + per - 1) / per;
      for (size_t j = 0; j < p.count; ++j) {
        uLong c = part_crc[j * threads];
        for (size_t k = 1; k < per; ++k) {
          const size_t lo = std::min(p.job, k * plen), hi = std::min(p.job, lo + plen);
          c = crc32_combine(c, part_crc[j * threads + k], z_off_t(hi - lo));
        }
        sink = sink + c;
      }
    }
  });
  return double(p.job * p.count) / s;
}

// CRC-32: per shape, GPU kernel, GPU end to end, zlib 1 core and all cores.
Table crc_table(Host& h) {
  Table crc;
  crc.title = "CRC-32 (zlib crc32), GB/s of input";
  crc.columns = {"job size", "jobs", "GPU kernel", "GPU end to end", "zlib 1 core",
                 fmt::format("zlib {} cores", h.threads)};
  for (const auto& p : h.pts) {
    const auto [kern, e2e] = crc_gpu_cells(h, p);
    crc.rows.push_back({fmt_size(p.job), std::to_string(p.count), kern, e2e, fmt_gbps(zlib_crc_one_core(h, p)),
                        fmt_gbps(zlib_crc_all_cores(h, p))});
  }
  crc.notes.push_back("GPU end to end: a batch of `jobs` buffers through the CUDA backend (pinned input, 4-byte crcs back); "
                      "the kernel is bit-identical to zlib for any length and initial crc");
  crc.notes.push_back("zlib all cores: jobs spread over the threads; fewer jobs than threads are split and joined with crc32_combine");
  return crc;
}


// memcpy: per shape, through the GPU (pinned and pageable) and libc 1 core and all cores.
Table memcpy_table(Host& h) {
  const Options& opt = h.opt;
  const unsigned threads = h.threads;
  const auto& pts = h.pts;
  auto& in = h.in;
  auto& outbuf = h.outbuf;
  const std::string& na = h.na;
  Table mc;
  mc.title = "memcpy, GB/s of bytes copied";
  mc.columns = {"job size", "jobs", "GPU end to end", "GPU e2e, unpinned", "memcpy 1 core",
                fmt::format("memcpy {} cores", threads)};
  // Ordinary (pageable) buffers, as a program's own memory would be: the GPU
  // path then adds a CPU copy into and out of pinned staging.
  std::vector<uint8_t> uin(std::min(h.max_total, size_t{64} << 20)), uout(uin.size());
  fill_random(uin.data(), uin.size(), 7);
  for (const auto& p : pts) {
    const size_t total = p.job * p.count;
    std::vector<std::string> row{fmt_size(p.job), std::to_string(p.count)};
    std::string e2e = na, e2e_u = na;
    if (h.gpu) {
      bool ok = false;
      e2e = fmt_gbps(h.gpu_e2e(OpId::memcpy, p.job, p.count, &ok));
      if (!ok) e2e += " (cpu!)";
      const size_t ucount = std::max<size_t>(1, std::min(p.count, uin.size() / p.job));
      e2e_u = fmt_gbps(h.gpu_e2e(OpId::memcpy, p.job, ucount, &ok, uin.data(), uout.data()));
      if (!ok) e2e_u += " (cpu!)";
    }
    double s1 = time_per_call(opt.min_seconds, [&] {
      for (size_t i = 0; i < p.count; ++i) std::memcpy(outbuf.data() + i * p.job, in.data() + i * p.job, p.job);
    });
    double sn = time_per_call(opt.min_seconds, [&] {
      parallel_parts(threads, p.count, p.job, [&](size_t j, size_t, size_t lo, size_t hi) {
        std::memcpy(outbuf.data() + j * p.job + lo, in.data() + j * p.job + lo, hi - lo);
      });
    });
    row.push_back(e2e);
    row.push_back(e2e_u);
    row.push_back(fmt_gbps(double(total) / s1));
    row.push_back(fmt_gbps(double(total) / sn));
    mc.rows.push_back(row);
  }
  mc.notes.push_back("GPU end to end = host -> device -> host copies, no kernel: the PCIe bound, reached only when both "
                     "buffers are pinned (client slabs); unpinned memory adds a CPU copy each way through pinned staging");
  mc.notes.push_back("a CPU copy is one pass over RAM: the GPU path can beat one core but not all cores, and it "
                     "spends the PCIe link that real offload needs");
  return mc;
}


// zlib compress2 (no GPU kernel): per job size, one core and the CPU backend.
Table zlib_table(Host& h) {
  const Options& opt = h.opt;
  const unsigned threads = h.threads;
  Table zc;
  zc.title = "zlib compress2 level 6 (no GPU kernel), GB/s of input";
  zc.columns = {"job size", "jobs", "compress2 1 core", fmt::format("CPU backend {} threads", threads)};
  std::vector<uint8_t> text(std::min<size_t>(h.max_total, opt.quick ? size_t{2} << 20 : size_t{16} << 20));
  {  // words drawn at random: compresses about 3:1, like text
    static const char* words[] = {"offload ", "gpu ", "slab ", "doorbell ", "futex ", "batch ", "agent\n",
                                  "crc ", "deflate ", "window ", "match ", "literal ", "the ", "of "};
    uint64_t x = 88172645463325252ull;
    for (size_t i = 0; i < text.size();) {
      x ^= x << 13, x ^= x >> 7, x ^= x << 17;
      for (const char* c = words[x % 14]; *c && i < text.size(); ++c) text[i++] = uint8_t(*c);
    }
  }
  std::vector<uint8_t> zout;
  for (size_t job : {size_t{64} << 10, size_t{1} << 20}) {
    const size_t count = std::max<size_t>(1, text.size() / job);
    const size_t cap = compressBound(uLong(job));
    zout.resize(cap * count);
    double s1 = time_per_call(opt.min_seconds, [&] {
      for (size_t i = 0; i < count; ++i) {
        uLongf n = uLongf(cap);
        compress2(zout.data() + i * cap, &n, text.data() + i * job, uLong(job), 6);
      }
    });
    backend::Batch b;
    b.jobs.resize(count);
    for (size_t i = 0; i < count; ++i) {
      b.jobs[i].op = OpId::zlib_compress;
      b.jobs[i].level = 6;
      b.jobs[i].in = {text.data() + i * job, job};
      b.jobs[i].out = {zout.data() + i * cap, cap};
    }
    double sb = time_per_call(opt.min_seconds, [&] { h.cpu_be->run(b); });
    zc.rows.push_back({fmt_size(job), std::to_string(count), fmt_gbps(double(job * count) / s1),
                       fmt_gbps(double(job * count) / sb)});
  }
  zc.notes.push_back("text-like input; the CPU backend runs one job per thread (the agent's path without the slab and socket)");
  return zc;
}


}  // namespace

int run_zlib_crc32_memcpy(const Options& opt, std::vector<Table>& out) {
  Host h(opt);
  out.push_back(crc_table(h));
  out.push_back(memcpy_table(h));
  out.push_back(zlib_table(h));
  return 0;
}

}  // namespace gpo::bench
