// `bench zstd`: zstd compression with the match finding on the GPU
// (docs/zstd-gpu.md, stage 1: GPU sequences, libzstd entropy coding on CPU threads, standard
// frames). Corpus: files already on the machine (system documentation, shared
// libraries, executables, a header/source tree), or --corpus DIR, cut into
// inputs of `chunk` KiB (one frame each, like a batch of client jobs).
// One table: compressed ratio next to zstd -1 and -3 on the same inputs, GB/s
// of input for the GPU kernel alone and end to end (host in, host out), next to
// libzstd level 1 and 3 on one core and on all cores. Stage 2 (entropy on the
// GPU) has its own suite, zstd-stage2.
// Settings (--set): size=MiB of corpus (default 256, quick 16), chunk=KiB (1024).
#include <cuda_runtime.h>
#include <zstd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "bench/bench.h"
#include "kernels/zstd/zstd_find.h"

namespace gpo::bench {
namespace {

namespace zg = gpo::zstd::gpu;
using Clock = std::chrono::steady_clock;

double secs_since(Clock::time_point a) { return std::chrono::duration<double>(Clock::now() - a).count(); }
std::string fixed(double v, int prec) {
  char b[32];
  std::snprintf(b, sizeof b, "%.*f", prec, v);
  return b;
}

struct Corpus {
  std::vector<uint8_t> bytes;
  std::map<std::string, size_t> from;  // source folder -> bytes taken
};

// Regular files (no symlinks: no file twice) under the folders, sorted, taken
// in turns of 4 MiB per folder so every kind is in even a small corpus; at
// most 8 MiB from one file.
Corpus build_corpus(const std::string& dir_opt, size_t want) {
  std::vector<std::string> dirs;
  if (!dir_opt.empty())
    dirs = {dir_opt};
  else
    dirs = {"/usr/share/doc", "/usr/lib/x86_64-linux-gnu", "/usr/bin", "/usr/include", "/usr/share/perl",
            "/usr/lib/python3"};
  Corpus c;
  c.bytes.reserve(want);
  std::vector<std::vector<std::string>> files(dirs.size());
  for (size_t d = 0; d < dirs.size(); ++d) {
    std::error_code ec;
    for (auto it = std::filesystem::recursive_directory_iterator(
             dirs[d], std::filesystem::directory_options::skip_permission_denied, ec);
         !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
      if (it->is_symlink(ec) || !it->is_regular_file(ec)) continue;
      if (it->file_size(ec) > 0) files[d].push_back(it->path().string());
    }
    std::sort(files[d].begin(), files[d].end());
  }
  std::vector<size_t> next(dirs.size(), 0);
  constexpr size_t kTurn = 4 << 20, kPerFile = 8 << 20;
  for (bool any = true; any && c.bytes.size() < want;) {
    any = false;
    for (size_t d = 0; d < dirs.size() && c.bytes.size() < want; ++d) {
      size_t got = 0;
      while (next[d] < files[d].size() && got < kTurn && c.bytes.size() < want) {
        std::ifstream f(files[d][next[d]++], std::ios::binary);
        char buf[1 << 16];
        size_t file_got = 0;
        while (f && c.bytes.size() < want && file_got < kPerFile) {
          f.read(buf, std::streamsize(std::min({sizeof buf, want - c.bytes.size(), kPerFile - file_got})));
          c.bytes.insert(c.bytes.end(), buf, buf + f.gcount());
          file_got += size_t(f.gcount());
        }
        got += file_got;
        any = true;
      }
      c.from[dirs[d]] += got;
    }
  }
  return c;
}

// libzstd one-shot per input on threads (one context each); returns seconds, sets total frame bytes.
double libzstd_run(const std::vector<std::span<const uint8_t>>& ins, std::vector<std::vector<uint8_t>>& outs,
                   int level, unsigned threads, size_t* total) {
  std::atomic<size_t> next{0}, sum{0};
  auto work = [&] {
    ZSTD_CCtx* c = ZSTD_createCCtx();
    size_t s = 0;
    for (size_t i; (i = next.fetch_add(1)) < ins.size();)
      s += ZSTD_compressCCtx(c, outs[i].data(), outs[i].size(), ins[i].data(), ins[i].size(), level);
    sum += s;
    ZSTD_freeCCtx(c);
  };
  const auto t0 = Clock::now();
  std::vector<std::thread> pool;
  for (unsigned k = 1; k < threads; ++k) pool.emplace_back(work);
  work();
  for (auto& t : pool) t.join();
  const double s = secs_since(t0);
  *total = sum;
  return s;
}

}  // namespace

int run_zstd(const Options& o, std::vector<Table>& out) {
  int ndev = 0;
  if (cudaGetDeviceCount(&ndev) != cudaSuccess || o.gpu >= ndev) {
    std::fprintf(stderr, "zstd: no usable CUDA device %d\n", o.gpu);
    return 1;
  }
  cudaSetDevice(o.gpu);
  const size_t mib = std::stoul(setting(o, "size", o.quick ? "16" : "256"));
  const size_t chunk = std::stoul(setting(o, "chunk", "1024")) * 1024;
  const unsigned all = o.threads ? o.threads : std::max(1u, std::thread::hardware_concurrency());
  Corpus corpus = build_corpus(o.corpus, mib << 20);
  if (corpus.bytes.empty() || !chunk) {
    std::fprintf(stderr, "zstd: empty corpus (no readable files under the corpus folders) or chunk=0\n");
    return 1;
  }
  const double n = double(corpus.bytes.size());
  std::vector<std::span<const uint8_t>> ins;
  for (size_t p = 0; p < corpus.bytes.size(); p += chunk)
    ins.emplace_back(corpus.bytes.data() + p, std::min(chunk, corpus.bytes.size() - p));
  std::vector<std::vector<uint8_t>> frames(ins.size());
  std::vector<std::span<uint8_t>> outs;
  for (size_t i = 0; i < ins.size(); ++i) {
    frames[i].resize(ZSTD_compressBound(ins[i].size()));
    outs.emplace_back(frames[i]);
  }
  const int reps = o.quick ? 1 : 3;
  auto best = [&](auto fn) {
    double b = 1e30;
    const auto t0 = Clock::now();
    for (int r = 0; r < reps || secs_since(t0) < o.min_seconds; ++r) b = std::min(b, fn());
    return b;
  };

  // libzstd references, same inputs.
  size_t z1 = 0, z3 = 0;
  const double z1_one = best([&] { return libzstd_run(ins, frames, 1, 1, &z1); });
  const double z1_all = best([&] { return libzstd_run(ins, frames, 1, all, &z1); });
  const double z3_one = best([&] { return libzstd_run(ins, frames, 3, 1, &z3); });
  const double z3_all = best([&] { return libzstd_run(ins, frames, 3, all, &z3); });

  // Stage 1: host memory pinned as a client slab is (register_memory).
  const bool pinned = cudaHostRegister(corpus.bytes.data(), corpus.bytes.size(), cudaHostRegisterDefault) == cudaSuccess;
  if (!pinned) cudaGetLastError();
  zg::Pipeline pipe(all);
  std::vector<size_t> sizes(ins.size());
  const int level = 1;
  unsigned fallbacks = 0;
  pipe.compress(ins, outs, {&level, 1}, sizes, &fallbacks);  // warm-up (allocations)
  zg::Pipeline::Times tbest{1e30, 1e30, 1e30, 1e30};
  const double g_e2e = best([&] {
    const auto t0 = Clock::now();
    pipe.compress(ins, outs, {&level, 1}, sizes, &fallbacks);
    const double s = secs_since(t0);
    const auto& t = pipe.times();
    tbest = {std::min(tbest.copy_in, t.copy_in), std::min(tbest.find, t.find), std::min(tbest.copy_out, t.copy_out),
             std::min(tbest.entropy, t.entropy)};
    return s;
  });
  size_t g = 0, bad = 0;
  std::vector<uint8_t> back(chunk + 1);
  for (size_t i = 0; i < ins.size(); ++i) {
    g += sizes[i];
    const size_t r = ZSTD_decompress(back.data(), back.size(), frames[i].data(), sizes[i]);
    if (!sizes[i] || ZSTD_isError(r) || r != ins[i].size() || std::memcmp(back.data(), ins[i].data(), r)) ++bad;
  }
  if (pinned) cudaHostUnregister(corpus.bytes.data());

  cudaDeviceProp prop{};
  cudaGetDeviceProperties(&prop, o.gpu);
  Table t;
  t.title = "zstd compression, stage 1 (GPU match finding + libzstd entropy coding): ratio and GB/s of input";
  t.columns = {"", "ratio", "size vs zstd -1", "GPU kernel", "GPU end to end", "CPU 1 core", "CPU all cores"};
  const std::string dash = "-";
  t.rows.push_back({"libzstd level 1 (zstd -1)", fixed(n / z1, 3), "+0.0%", dash, dash, fmt_gbps(n / z1_one),
                    fmt_gbps(n / z1_all)});
  t.rows.push_back({"libzstd level 3 (zstd -3)", fixed(n / z3, 3), fixed(100.0 * (double(z3) / z1 - 1), 1) + "%", dash,
                    dash, fmt_gbps(n / z3_one), fmt_gbps(n / z3_all)});
  t.rows.push_back({"stage 1: GPU sequences, libzstd level-1 entropy", fixed(n / g, 3),
                    (g >= z1 ? "+" : "") + fixed(100.0 * (double(g) / z1 - 1), 1) + "%", fmt_gbps(n / tbest.find),
                    fmt_gbps(n / g_e2e), dash, dash});
  t.rows.push_back({"  of which the CPU entropy part alone", dash, dash, dash, dash, dash, fmt_gbps(n / tbest.entropy)});
  t.notes.push_back(fmt_size(corpus.bytes.size()) + " corpus in " + std::to_string(ins.size()) + " inputs of " +
                    fmt_size(chunk) + ", one frame each; files from:");
  for (auto& [d, b] : corpus.from) t.notes.push_back("  " + d + ": " + fmt_size(b));
  t.notes.push_back(std::string(prop.name) + "; " + std::to_string(all) + " CPU threads for all-cores rows and stage 1 entropy");
  t.notes.push_back("stage 1 per batch (best of runs, s): copy in " + fixed(tbest.copy_in, 4) + ", kernel " +
                    fixed(tbest.find, 4) + ", sequences back " + fixed(tbest.copy_out, 4) + ", CPU entropy " +
                    fixed(tbest.entropy, 4) + (pinned ? " (input pinned)" : " (input not pinned)"));
  t.notes.push_back("end to end = host input to host frames; the CPU entropy part (libzstd, one frame per input) "
                    "bounds it: stage 2 moves that part to the GPU (suite zstd-stage2)");
  t.notes.push_back("frames checked with ZSTD_decompress: " + std::to_string(ins.size() - bad) + "/" +
                    std::to_string(ins.size()) + " equal their input; blocks libzstd re-matched itself: " +
                    std::to_string(fallbacks));
  out.push_back(std::move(t));
  return bad ? 1 : 0;
}

}  // namespace gpo::bench
