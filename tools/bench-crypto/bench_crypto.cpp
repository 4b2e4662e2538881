// bench-crypto: AES-256-GCM, AES-256-CTR and SHA-256 throughput, all in one run
// and printed side by side: GPU kernel only (data already on the device), GPU
// end to end (host memory in, host memory out, through the CUDA backend with
// the slab pinned once, as client slabs are), OpenSSL on one core and on all
// cores. GB/s = 1e9 bytes of input per second.
#include <cuda_runtime.h>
#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstring>
#include <memory>
#include <thread>

#include "aes/aes.h"
#include "backend/cpu_backend.h"
#include "backend/cuda_backend.h"
#include "backend/ops.h"
#include "sha256/sha256.h"

using namespace gpo;
using backend::Job;
using backend::OpId;
using Clock = std::chrono::steady_clock;

namespace {

void ck(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw std::runtime_error(fmt::format("{}: {}", what, cudaGetErrorString(e)));
}

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

void fill_random(uint8_t* p, size_t n, uint64_t seed) {
  uint64_t x = seed | 1;
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    std::memcpy(p + i, &x, 8);
  }
  for (; i < n; ++i) p[i] = uint8_t(i * 131);
}

struct Shape {
  OpId op;
  size_t job;
  size_t count;
  int reps;
};

struct Row {
  std::string op;
  size_t job, count;
  double kernel = 0, e2e = 0, cpu1 = 0, cpuall = 0;
  std::string note;
};

std::string size_name(size_t n) {
  if (n >= (1u << 20)) return fmt::format("{} MiB", n >> 20);
  return fmt::format("{} KiB", n >> 10);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"bench-crypto: GPU kernel, GPU end-to-end and OpenSSL throughput of the crypto ops.\n"
               "Example: bench-crypto --total-mib 256 --reps 5"};
  size_t total_mib = 256;
  int reps = 5;
  int gpu = 0;
  bool quick = false;
  app.add_option("--total-mib", total_mib, "bytes per batch, MiB")->capture_default_str();
  app.add_option("--reps", reps, "timed repetitions (median reported)")->capture_default_str();
  app.add_option("--gpu", gpu, "CUDA device")->capture_default_str();
  app.add_flag("--quick", quick, "a few shapes only (smoke test)");
  CLI11_PARSE(app, argc, argv);

  std::string why;
  if (backend::cuda_device_count(&why) < 0) {
    fmt::print(stderr, "bench-crypto: no GPU ({})\n", why);
    return 4;
  }
  ck(cudaSetDevice(gpu), "cudaSetDevice");
  cudaDeviceProp prop{};
  cudaGetDeviceProperties(&prop, gpu);
  const unsigned cores = std::max(1u, std::thread::hardware_concurrency());
  fmt::print("bench-crypto: GPU {} ({} SMs), {} CPU threads, batch {} MiB, median of {}\n", prop.name,
             prop.multiProcessorCount, cores, total_mib, reps);

  const size_t total = total_mib << 20;
  std::vector<Shape> shapes;
  const size_t sizes[] = {4096, 65536, 1 << 20, 16 << 20, 64 << 20};
  for (OpId op : {OpId::aes256_gcm_encrypt, OpId::aes256_ctr, OpId::sha256})
    for (size_t s : sizes) {
      if (quick && s != 4096 && s != (16 << 20)) continue;
      const bool sha_big = op == OpId::sha256 && s > (1 << 20);
      shapes.push_back({op, s, std::max<size_t>(1, total / s), sha_big ? 1 : reps});
      if (s >= (1 << 20) && op != OpId::sha256) shapes.push_back({op, s, 1, reps});  // one large job alone
      if (s == 4096) shapes.push_back({op, s, 1024, reps});                       // a small batch
    }

  // Host slab (pinned once, like a client slab) and device buffers, sized for the largest batch.
  size_t max_bytes = 0;
  for (auto& s : shapes) max_bytes = std::max(max_bytes, s.job * s.count);
  std::vector<uint8_t> h_in(max_bytes), h_out(max_bytes);
  fill_random(h_in.data(), h_in.size(), 42);
  auto cpu = std::make_shared<backend::CpuBackend>(cores);
  backend::CudaBackend cuda(gpu, cpu);
  cuda.register_memory(h_in.data(), h_in.size());
  cuda.register_memory(h_out.data(), h_out.size());
  uint8_t *d_in = nullptr, *d_out = nullptr;
  ck(cudaMalloc(&d_in, max_bytes), "cudaMalloc");
  ck(cudaMalloc(&d_out, max_bytes), "cudaMalloc");
  ck(cudaMemcpy(d_in, h_in.data(), max_bytes, cudaMemcpyHostToDevice), "cudaMemcpy");
  cudaStream_t stream;
  ck(cudaStreamCreate(&stream), "cudaStreamCreate");
  cudaEvent_t e0, e1;
  cudaEventCreate(&e0);
  cudaEventCreate(&e1);
  std::vector<uint8_t> keys(32 * 65536 * 4), ivs(16 * 65536 * 4), digests;
  fill_random(keys.data(), keys.size(), 7);
  fill_random(ivs.data(), ivs.size(), 9);

  // The PCIe ceiling of end-to-end numbers: pinned copies one way, and both ways at once.
  {
    cudaStream_t s2;
    ck(cudaStreamCreate(&s2), "cudaStreamCreate");
    auto copy_time = [&](bool h2d, bool d2h) {
      std::vector<double> t;
      for (int r = 0; r < 4; ++r) {
        ck(cudaDeviceSynchronize(), "sync");
        auto t0 = Clock::now();
        if (h2d) ck(cudaMemcpyAsync(d_out, h_in.data(), max_bytes, cudaMemcpyHostToDevice, stream), "h2d");
        if (d2h) ck(cudaMemcpyAsync(h_out.data(), d_in, max_bytes, cudaMemcpyDeviceToHost, s2), "d2h");
        ck(cudaDeviceSynchronize(), "sync");
        t.push_back(seconds_since(t0));
      }
      return max_bytes / median(t) / 1e9;
    };
    const double up = copy_time(true, false), down = copy_time(false, true), both = copy_time(true, true);
    fmt::print("PCIe (pinned, {} MiB): host-to-device {:.1f} GB/s, device-to-host {:.1f} GB/s, both at once {:.1f} GB/s each way\n",
               max_bytes >> 20, up, down, both);
    cudaStreamDestroy(s2);
  }

  std::vector<Row> rows;
  for (const auto& sh : shapes) {
    const auto* info = backend::find_op(sh.op);
    Row row;
    row.op = std::string(info->name);
    row.job = sh.job;
    row.count = sh.count;
    const size_t bytes = sh.job * sh.count;
    const bool is_sha = sh.op == OpId::sha256;
    digests.assign(sh.count * 32, 0);
    // Jobs over the pinned slab: inputs packed, outputs packed.
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

    // GPU kernel only: same jobs, buffers already in device memory.
    std::vector<double> kt;
    if (is_sha) {
      std::vector<sha256::gpu::DevMsg> msgs(sh.count);
      for (size_t i = 0; i < sh.count; ++i) msgs[i] = {reinterpret_cast<uint64_t>(d_in + i * sh.job), sh.job};
      sha256::gpu::DevMsg* dm;
      ck(cudaMalloc(&dm, msgs.size() * sizeof(msgs[0])), "cudaMalloc");
      ck(cudaMemcpy(dm, msgs.data(), msgs.size() * sizeof(msgs[0]), cudaMemcpyHostToDevice), "cudaMemcpy");
      for (int r = -1; r < sh.reps; ++r) {
        cudaEventRecord(e0, stream);
        ck(cudaError_t(sha256::gpu::enqueue_digests(dm, uint32_t(sh.count), d_out, stream)), "sha256 kernel");
        cudaEventRecord(e1, stream);
        ck(cudaEventSynchronize(e1), "sync");
        float ms;
        cudaEventElapsedTime(&ms, e0, e1);
        if (r >= 0 || sh.reps == 1) kt.push_back(ms / 1e3);
        if (sh.reps == 1) break;  // long sequential messages: one run is enough
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
      ck(cudaMalloc(&wsmem, aes::gpu::workspace_bytes(uint32_t(dj.size()), uint32_t(seg_job.size()))), "cudaMalloc");
      auto ws = aes::gpu::carve(wsmem, uint32_t(dj.size()), uint32_t(seg_job.size()));
      ck(cudaMemcpy(ws.jobs, dj.data(), dj.size() * sizeof(dj[0]), cudaMemcpyHostToDevice), "cudaMemcpy");
      ck(cudaMemcpy(ws.seg_job, seg_job.data(), seg_job.size() * 4, cudaMemcpyHostToDevice), "cudaMemcpy");
      for (int r = -1; r < sh.reps; ++r) {
        cudaEventRecord(e0, stream);
        ck(cudaError_t(aes::gpu::enqueue_all(ws, stream)), "aes kernels");
        cudaEventRecord(e1, stream);
        ck(cudaEventSynchronize(e1), "sync");
        float ms;
        cudaEventElapsedTime(&ms, e0, e1);
        if (r >= 0) kt.push_back(ms / 1e3);
      }
      cudaFree(wsmem);
    }
    row.kernel = bytes / median(kt) / 1e9;

    // GPU end to end through the backend.
    std::vector<double> et;
    for (int r = (sh.reps == 1 ? 0 : -1); r < sh.reps; ++r) {
      auto t = Clock::now();
      cuda.run(batch);
      if (r >= 0) et.push_back(seconds_since(t));
    }
    for (auto& j : batch.jobs)
      if (j.status != backend::Status::ok) row.note = "job failed!";
    if (batch.ran_on != cuda.name()) row.note = "ran on " + batch.ran_on;
    row.e2e = bytes / median(et) / 1e9;
    // Spot check against OpenSSL: first and last job, bit for bit.
    for (size_t i : {size_t(0), sh.count - 1}) {
      Job c = batch.jobs[i];
      std::vector<uint8_t> ref(c.out.size());
      c.out = ref;
      backend::run_on_cpu(c);
      if (!std::equal(ref.begin(), ref.end(), batch.jobs[i].out.begin()) || c.tag != batch.jobs[i].tag)
        row.note = "MISMATCH vs OpenSSL";
    }

    // OpenSSL, one core: as many jobs as fit in about 0.3 s (at least one).
    {
      size_t done = 0, n = 0;
      auto t = Clock::now();
      while (n < sh.count && (n == 0 || seconds_since(t) < 0.3)) {
        Job c = batch.jobs[n++];
        backend::run_on_cpu(c);
        done += c.in.size();
      }
      row.cpu1 = done / seconds_since(t) / 1e9;
    }
    // OpenSSL, all cores: the CPU backend on the whole batch (jobs spread over the pool).
    {
      backend::Batch b2;
      const size_t n = std::min(sh.count, std::max<size_t>(cores, size_t(std::max(row.cpu1, 0.1) * 1e9 * cores * 0.3 / sh.job)));
      b2.jobs.assign(batch.jobs.begin(), batch.jobs.begin() + n);
      auto t = Clock::now();
      cpu->run(b2);
      row.cpuall = n * sh.job / seconds_since(t) / 1e9;
      if (n < cores) row.note += fmt::format("{}cpu-all uses {} of {} threads", row.note.empty() ? "" : "; ", n, cores);
    }
    fmt::print("  {:<20} {:>7} x{:<6} kernel {:8.1f}  e2e {:7.1f}  cpu1 {:6.2f}  cpuall {:7.1f}  {}\n", row.op,
               size_name(row.job), row.count, row.kernel, row.e2e, row.cpu1, row.cpuall, row.note);
    std::fflush(stdout);
    rows.push_back(row);
  }

  fmt::print("\n| op | job size | batch | GPU kernel GB/s | GPU end-to-end GB/s | OpenSSL 1 core GB/s | OpenSSL {} threads GB/s | note |\n",
             cores);
  fmt::print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |\n");
  for (auto& r : rows)
    fmt::print("| {} | {} | {} | {:.1f} | {:.1f} | {:.2f} | {:.1f} | {} |\n", r.op, size_name(r.job), r.count, r.kernel,
               r.e2e, r.cpu1, r.cpuall, r.note);
  cuda.unregister_memory(h_in.data());
  cuda.unregister_memory(h_out.data());
  return 0;
}
