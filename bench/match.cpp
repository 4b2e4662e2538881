// Suite "match": multi-pattern payload scanning, Gbit/s of payload, side by
// side: the GPU matcher kernel alone (payloads already on the device,
// per-payload hit bitsets left there), the GPU end to end (payloads in pinned
// host memory -> hit lists, or bitsets, back in host memory), the CPU matcher (the
// classifier's Aho-Corasick) on one core, Hyperscan on one core and on all
// cores. Pattern sets of 100, 1K and 10K literals, 64- and 1500-byte
// payloads, batches of 256 to 64K. A row says whether every engine found the
// same (payload, pattern) pairs.
//
// Data, generated at run time (fixed seeds): patterns are 4..20 random bytes,
// 90% printable and 10% binary (hex-byte contents), a quarter nocase;
// payloads are random printable text with one pattern planted in every 8th.
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <random>
#include <stdexcept>
#include <memory>
#include <thread>

#include "bench/baselines.h"
#include "bench/bench.h"
#include "kernels/match/match.h"
#include "kernels/match/match_gpu.h"
#ifdef GPUOFFLOAD_HAVE_CUDA
#include <cuda_runtime.h>

#include "kernels/common/cuda_check.h"
#endif

namespace gpo::bench {
namespace {

using Clock = std::chrono::steady_clock;
namespace mg = match::gpu;

double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

std::vector<match::Pattern> make_patterns(size_t count, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<match::Pattern> pats(count);
  for (auto& p : pats) {
    const size_t len = 4 + rng() % 17;
    const bool binary = rng() % 10 == 0;
    for (size_t i = 0; i < len; ++i) p.bytes += binary ? char(rng()) : char(0x20 + rng() % 95);
    p.nocase = rng() % 4 == 0;
  }
  return pats;
}

struct Payloads {
  std::vector<uint8_t> data;
  std::vector<mg::PayloadRef> refs;
  uint64_t bytes = 0;
};

Payloads make_payloads(const std::vector<match::Pattern>& pats, size_t n, uint32_t len, uint32_t seed) {
  std::mt19937 rng(seed);
  Payloads p;
  p.data.resize(size_t(n) * len);
  uint64_t x = seed | 1;  // xorshift: 8 printable bytes per step (batches of 100 MB)
  for (size_t i = 0; i < p.data.size(); i += 8) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    for (size_t k = 0; k < 8 && i + k < p.data.size(); ++k) p.data[i + k] = uint8_t(0x20 + ((x >> (8 * k)) & 0xff) % 95);
  }
  for (size_t i = 0; i < n; ++i) {
    p.refs.push_back({uint32_t(i * len), len});
    if (i % 8 == 0) {
      const std::string& s = pats[rng() % pats.size()].bytes;
      if (s.size() <= len) std::memcpy(p.data.data() + i * len + rng() % (len - s.size() + 1), s.data(), s.size());
    }
  }
  p.bytes = uint64_t(n) * len;
  return p;
}

uint64_t popcount_all(const std::vector<uint32_t>& bits) {
  uint64_t n = 0;
  for (uint32_t w : bits) n += __builtin_popcount(w);
  return n;
}

// The CPU matcher (what CpuClassifier runs per payload), into bitsets; rate over passes.
struct CpuRun {
  double bytes_per_second = 0;
  std::vector<uint32_t> bits;
};
CpuRun cpu_matcher(const match::Matcher& m, const Payloads& p, double min_seconds) {
  CpuRun r;
  const uint32_t words = (m.num_patterns() + 31) / 32;
  r.bits.assign(p.refs.size() * words, 0);
  uint64_t bytes = 0;
  const auto t0 = Clock::now();
  double s = 0;
  do {
    for (size_t i = 0; i < p.refs.size(); ++i) {
      uint32_t* b = r.bits.data() + i * words;
      match::scan(m, p.data.data() + p.refs[i].offset, p.refs[i].len,
                  [b](uint32_t id, size_t) { b[id >> 5] |= 1u << (id & 31); });
    }
    bytes += p.bytes;
    s = since(t0);
  } while (s < min_seconds);
  r.bytes_per_second = double(bytes) / s;
  return r;
}

std::string gbit(double bytes_per_second) { return fmt::format("{:.1f}", bytes_per_second * 8 / 1e9); }

#ifdef GPUOFFLOAD_HAVE_CUDA

struct GpuRun {
  double kernel_bps = 0;  // payload bytes per second, kernel only
  double kernel_smem_bps = 0;  // first rows in 32 KiB of shared memory
  double e2e_bps = 0;       // bitsets back
  double e2e_lists_bps = 0; // compact hit lists back
  bool lists_agree = false;
  std::vector<uint32_t> bits;  // from the end-to-end run
};

// Kernel only: payloads and refs copied once; enqueue_scan repeated between events.
double kernel_rate(mg::DeviceMatcher& dm, const uint8_t* d_data, const mg::PayloadRef* d_refs, uint32_t n,
                   uint32_t len, uint32_t* d_bits, uint64_t bytes, double min_seconds) {
  cudaEvent_t e0, e1;
  cuda::check(cudaEventCreate(&e0), "event");
  cuda::check(cudaEventCreate(&e1), "event");
  cuda::check(cudaError_t(dm.enqueue_scan(d_data, d_refs, n, len, len, d_bits, nullptr)), "warm-up");
  cuda::check(cudaDeviceSynchronize(), "warm-up");
  int iters = 1;
  double s = 0;
  for (;;) {
    cuda::check(cudaEventRecord(e0), "event");
    for (int i = 0; i < iters; ++i) cuda::check(cudaError_t(dm.enqueue_scan(d_data, d_refs, n, len, len, d_bits, nullptr)), "scan");
    cuda::check(cudaEventRecord(e1), "event");
    cuda::check(cudaEventSynchronize(e1), "scan");
    float ms = 0;
    cudaEventElapsedTime(&ms, e0, e1);
    s = ms / 1e3;
    if (s >= min_seconds || iters >= (1 << 20)) break;
    iters = std::max(iters * 2, int(iters * min_seconds * 1.2 / std::max(s, 1e-6)));
  }
  cudaEventDestroy(e0);
  cudaEventDestroy(e1);
  return double(bytes) * iters / s;
}

GpuRun gpu_matcher(mg::DeviceMatcher& dm, const Payloads& p, double min_seconds) {
  GpuRun r;
  const uint32_t n = uint32_t(p.refs.size());
  const uint32_t len = p.refs.empty() ? 0 : p.refs[0].len;
  uint8_t* d_data = nullptr;
  mg::PayloadRef* d_refs = nullptr;
  uint32_t* d_bits = nullptr;
  cuda::check(cudaMalloc(&d_data, p.data.size()), "cudaMalloc");
  cuda::check(cudaMalloc(&d_refs, p.refs.size() * sizeof(mg::PayloadRef)), "cudaMalloc");
  cuda::check(cudaMalloc(&d_bits, std::max<size_t>(1, size_t(n) * dm.bitset_words()) * 4), "cudaMalloc");
  cuda::check(cudaMemcpy(d_data, p.data.data(), p.data.size(), cudaMemcpyHostToDevice), "copy");
  cuda::check(cudaMemcpy(d_refs, p.refs.data(), p.refs.size() * sizeof(mg::PayloadRef), cudaMemcpyHostToDevice), "copy");
  dm.set_hot_bytes(0);  // the default
  r.kernel_bps = kernel_rate(dm, d_data, d_refs, n, len, d_bits, p.bytes, min_seconds);
  dm.set_hot_bytes(32 * 1024);
  r.kernel_smem_bps = kernel_rate(dm, d_data, d_refs, n, len, d_bits, p.bytes, min_seconds);
  dm.set_hot_bytes(0);
  cudaFree(d_data);
  cudaFree(d_refs);
  cudaFree(d_bits);
  // End to end: payloads already in the matcher's pinned buffer (as received packets would be).
  uint8_t* pinned = dm.pinned_input(p.data.size());
  std::memcpy(pinned, p.data.data(), p.data.size());
  std::span<const uint8_t> in(pinned, p.data.size());
  dm.scan(in, p.refs, len, r.bits);  // warm-up (buffers sized)
  uint64_t bytes = 0;
  const auto t0 = Clock::now();
  double s = 0;
  do {
    dm.scan(in, p.refs, len, r.bits);
    bytes += p.bytes;
    s = since(t0);
  } while (s < min_seconds);
  r.e2e_bps = double(bytes) / s;
  std::vector<uint32_t> offsets, ids;
  dm.scan_lists(in, p.refs, len, offsets, ids);  // warm-up
  bytes = 0;
  const auto t1 = Clock::now();
  do {
    dm.scan_lists(in, p.refs, len, offsets, ids);
    bytes += p.bytes;
    s = since(t1);
  } while (s < min_seconds);
  r.e2e_lists_bps = double(bytes) / s;
  // The lists must say what the bitsets say.
  const uint32_t words = dm.bitset_words();
  std::vector<uint32_t> from_lists(r.bits.size(), 0);
  for (size_t i = 0; i + 1 < offsets.size(); ++i)
    for (uint32_t k = offsets[i]; k < offsets[i + 1]; ++k) from_lists[i * words + ids[k] / 32] |= 1u << (ids[k] % 32);
  r.lists_agree = from_lists == r.bits;
  return r;
}
#endif

}  // namespace

int run_match(const Options& opt, std::vector<Table>& out) {
  const unsigned all = opt.threads ? opt.threads : std::max(1u, std::thread::hardware_concurrency());
  const double min_s = opt.quick ? 0.02 : std::max(0.05, opt.min_seconds / 2);
  // --set patterns=100,1000 --set batches=256,65536 --set payloads=64,1500
  const std::vector<uint32_t> counts =
      setting_list(opt, "patterns", opt.quick ? std::vector<uint32_t>{100, 1000} : std::vector<uint32_t>{100, 1000, 10000});
  const std::vector<uint32_t> batches = setting_list(
      opt, "batches", opt.quick ? std::vector<uint32_t>{256, 4096} : std::vector<uint32_t>{256, 1024, 4096, 16384, 65536});
  const std::vector<uint32_t> lens = setting_list(opt, "payloads", {64, 1500});
  const uint32_t cpu_batch = opt.quick ? 2048 : 16384;  // CPU rates do not depend on the batch: measured once

  const bool progress = std::getenv("GPO_BENCH_PROGRESS") != nullptr;
  bool gpu = false;
  std::string why_no_gpu = "no CUDA in this build";
#ifdef GPUOFFLOAD_HAVE_CUDA
  gpu = mg::gpu_usable(&why_no_gpu);
  if (gpu) cuda::check(cudaSetDevice(opt.gpu), "cudaSetDevice");
#endif

  Table t;
  t.title = "Payload matching (multi-pattern, exact + nocase), Gbit/s of payload";
  t.columns = {"patterns, payload, batch", "GPU kernel", "GPU kernel (32 KiB smem rows)", "GPU e2e (hit lists)",
               "GPU e2e (bitsets)", "GPU Mpps (kernel)",
               "CPU AC 1 core", "Hyperscan 1 core", fmt::format("Hyperscan {} thr", all), "agree"};
  std::string hs_why;
  for (size_t count : counts) {
    const auto pats = make_patterns(count, uint32_t(count));
    const auto m = match::build(pats);
    for (uint32_t len : lens) {
      // CPU references, once per (patterns, size).
      const Payloads cp = make_payloads(pats, cpu_batch, len, 7);
      const CpuRun cpu = cpu_matcher(m, cp, min_s);
      const uint64_t cpu_pairs = popcount_all(cpu.bits);
      std::vector<uint32_t> hs_bits;
      const BaselineResult hs1 = hyperscan_scan(pats, cp.data, cp.refs, len, 1, min_s, &hs_bits);
      const BaselineResult hsn = hyperscan_scan(pats, cp.data, cp.refs, len, all, min_s);
      if (!hs1.ran) hs_why = hs1.why_not;
      const std::string hs1_s = hs1.ran ? gbit(hs1.bytes_per_second()) : "not run";
      const std::string hsn_s = hsn.ran ? gbit(hsn.bytes_per_second()) : "not run";
      std::string agree_hs = hs1.ran ? (hs_bits == cpu.bits ? "hs=cpu" : fmt::format("HS DIFFERS ({} vs {} pairs)", hs1.matches, cpu_pairs)) : "";
      std::unique_ptr<mg::DeviceMatcher> dm;
#ifdef GPUOFFLOAD_HAVE_CUDA
      if (gpu) dm = std::make_unique<mg::DeviceMatcher>(m, opt.gpu);
#endif
      for (uint32_t batch : batches) {
        std::vector<std::string> row = {fmt::format("{}, {} B, {}", count, len, batch)};
        std::string agree = agree_hs;
#ifdef GPUOFFLOAD_HAVE_CUDA
        if (gpu) {
          const Payloads gp = batch == cpu_batch ? cp : make_payloads(pats, batch, len, 7);
          const GpuRun g = gpu_matcher(*dm, gp, min_s);
          // Compare with the CPU matcher on this very batch (its first cpu_batch payloads).
          bool same = true;
          if (batch == cpu_batch) {
            same = g.bits == cpu.bits;
          } else {
            Payloads head;
            head.refs.assign(gp.refs.begin(), gp.refs.begin() + std::min<size_t>(gp.refs.size(), cpu_batch));
            head.data = gp.data;  // refs index into the whole buffer
            const auto want = cpu_matcher(m, head, 0).bits;
            same = std::equal(want.begin(), want.end(), g.bits.begin());
          }
          agree += (agree.empty() ? "" : ", ") + std::string(same && g.lists_agree ? "gpu=cpu" : "GPU DIFFERS");
          row.insert(row.end(), {gbit(g.kernel_bps), gbit(g.kernel_smem_bps), gbit(g.e2e_lists_bps), gbit(g.e2e_bps),
                                 fmt::format("{:.1f}", g.kernel_bps / len / 1e6)});
        }
#endif
        if (!gpu) row.insert(row.end(), {"no GPU", "no GPU", "no GPU", "no GPU", "-"});
        row.insert(row.end(), {gbit(cpu.bytes_per_second), hs1_s, hsn_s, agree});
        if (progress) fmt::print(stderr, "match: {}\n", fmt::join(row, " | "));  // survives a timeout
        t.rows.push_back(std::move(row));
      }
      if (len == 64)
        t.notes.push_back(fmt::format("{} patterns: AC exact {} states x {} classes, nocase {} states x {} classes, {:.1f} MiB; "
                                    "Hyperscan compile {:.2f} s",
                                    count, m.exact.num_states, m.exact.num_classes, m.folded.num_states,
                                    m.folded.num_classes, m.table_bytes() / 1048576.0, hs1.build_seconds));
    }
  }
  if (!gpu) t.notes.push_back("GPU columns: " + why_no_gpu);
  if (!hs_why.empty()) t.notes.push_back("Hyperscan: " + hs_why);
  t.notes.push_back("GPU kernel: scan + zeroing the hit bitsets, payloads already on the device. GPU e2e: pinned host "
                    "payloads in, one batch at a time, results in host memory: hit lists (DeviceMatcher::scan_lists: "
                    "bitsets -> counts -> CUB scan -> ids on the GPU, two syncs) or whole bitsets (patterns/8 bytes "
                    "per payload).");
  t.notes.push_back(fmt::format("CPU AC and Hyperscan: {} payloads, independent of the batch column; Hyperscan: literal "
                                "database, block mode, SINGLEMATCH.", cpu_batch));
  out.push_back(std::move(t));
  return 0;
}

}  // namespace gpo::bench
