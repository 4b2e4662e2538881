// `bench zstd-stage2`: zstd with the entropy coding on the GPU too
// (docs/zstd-gpu.md, stage 2). Corpus: files already on the machine (docs, shared libraries,
// executables, headers), cut into inputs of `chunk` bytes (one frame each).
// Sequences come from stage 1 (the GPU finder when it runs, else its CPU
// twin; the table says which); the rows put stage 2's GPU figures (kernel
// only; end to end host in/host out through GpuCompressor, with pinned and
// with pageable buffers, several piece sizes) next to libzstd level 1 on one
// core and on all cores, and the ratio next to zstd -1 and -3 on the same
// inputs.
#include <cuda_runtime.h>
#include <zstd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "bench/bench.h"
#include "kernels/zstd/zstd_entropy.h"
#include "kernels/zstd/zstd_find.h"

namespace gpo::bench {
namespace {

namespace ent = gpo::zstd::entropy;
namespace zg = gpo::zstd::gpu;
using Clock = std::chrono::steady_clock;

double secs(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double>(b - a).count(); }
std::string gbps(double bytes, double s) {
  char b[32];
  std::snprintf(b, sizeof b, "%.2f", bytes / s / 1e9);
  return b;
}
std::string ratio_str(double r) {
  char b[32];
  std::snprintf(b, sizeof b, "%.3f", r);
  return b;
}

// Files from the machine, sorted, concatenated up to want bytes.
std::vector<uint8_t> build_corpus(const std::string& dir_opt, size_t want, std::string* what) {
  std::vector<std::string> dirs;
  if (!dir_opt.empty()) dirs = {dir_opt};
  else dirs = {"/usr/share/doc", "/usr/lib/x86_64-linux-gnu", "/usr/bin", "/usr/include"};
  std::vector<uint8_t> out;
  out.reserve(want);
  // Take from each folder in turn so every kind is in even a quick corpus.
  std::vector<std::vector<std::string>> files(dirs.size());
  for (size_t d = 0; d < dirs.size(); ++d) {
    std::error_code ec;
    for (auto it = std::filesystem::recursive_directory_iterator(
             dirs[d], std::filesystem::directory_options::skip_permission_denied, ec);
         it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
      if (ec) break;
      if (it->is_regular_file(ec) && !it->is_symlink(ec) && it->file_size(ec) > 0) files[d].push_back(it->path());
    }
    std::sort(files[d].begin(), files[d].end());
  }
  std::vector<size_t> next(dirs.size(), 0);
  const size_t per_turn = 4 << 20;
  bool any = true;
  while (out.size() < want && any) {
    any = false;
    for (size_t d = 0; d < dirs.size() && out.size() < want; ++d) {
      size_t got = 0;
      while (next[d] < files[d].size() && got < per_turn && out.size() < want) {
        std::ifstream f(files[d][next[d]++], std::ios::binary);
        char buf[1 << 16];
        while (f && out.size() < want) {
          f.read(buf, std::streamsize(std::min(sizeof buf, want - out.size())));
          out.insert(out.end(), buf, buf + f.gcount());
          got += size_t(f.gcount());
        }
        any = true;
      }
    }
  }
  *what = std::to_string(out.size() >> 20) + " MiB from ";
  for (auto& d : dirs) *what += d + " ";
  return out;
}

struct Chunks {
  std::vector<uint64_t> sizes, offsets;
};
Chunks cut(size_t total, size_t chunk) {
  Chunks c;
  for (uint64_t p = 0; p < total; p += chunk) {
    c.offsets.push_back(p);
    c.sizes.push_back(std::min<uint64_t>(chunk, total - p));
  }
  return c;
}

// libzstd at level on every chunk with threads threads: total size, seconds.
std::pair<size_t, double> libzstd_run(const std::vector<uint8_t>& in, const Chunks& c, int level, unsigned threads,
                                      double min_s) {
  std::vector<size_t> sz(c.sizes.size());
  double best = 1e30;
  Clock::time_point t_end = Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(min_s));
  int reps = 0;
  do {
    const auto t0 = Clock::now();
    std::vector<std::thread> th;
    for (unsigned t = 0; t < threads; ++t)
      th.emplace_back([&, t] {
        ZSTD_CCtx* cc = ZSTD_createCCtx();
        std::vector<uint8_t> out(ZSTD_compressBound(c.sizes.empty() ? 0 : *std::max_element(c.sizes.begin(), c.sizes.end())));
        for (size_t i = t; i < c.sizes.size(); i += threads)
          sz[i] = ZSTD_compressCCtx(cc, out.data(), out.size(), in.data() + c.offsets[i], c.sizes[i], level);
        ZSTD_freeCCtx(cc);
      });
    for (auto& x : th) x.join();
    best = std::min(best, secs(t0, Clock::now()));
    reps++;
  } while (Clock::now() < t_end && reps < 20);
  size_t total = 0;
  for (size_t s : sz) total += s;
  return {total, best};
}

}  // namespace

int run_zstd_stage2(const Options& opt, std::vector<Table>& out) {
  int ndev = 0;
  if (cudaGetDeviceCount(&ndev) != cudaSuccess || ndev == 0) {
    std::fprintf(stderr, "zstd-stage2: no usable CUDA device\n");
    return 1;
  }
  cudaSetDevice(opt.gpu);
  const size_t total = size_t(std::stoull(setting(opt, "size", opt.quick ? "16" : "256"))) << 20;  // MiB
  const size_t chunk = size_t(std::stoull(setting(opt, "chunk", "1024"))) << 10;                    // KiB
  std::string corpus_what;
  std::vector<uint8_t> in = build_corpus(opt.corpus, total, &corpus_what);
  if (in.empty()) {
    std::fprintf(stderr, "zstd-stage2: empty corpus\n");
    return 1;
  }
  const Chunks c = cut(in.size(), chunk);
  const unsigned all = opt.threads ? opt.threads : std::max(1u, std::thread::hardware_concurrency());
  const double min_s = opt.quick ? 0.05 : opt.min_seconds;

  // CPU references.
  auto [z1, t1] = libzstd_run(in, c, 1, 1, min_s);
  auto [z1a, t1a] = libzstd_run(in, c, 1, all, min_s);
  auto [z3, t3] = libzstd_run(in, c, 3, all, opt.quick ? 0.0 : min_s);

  // Stage 1: the GPU finder when it runs, else its CPU twin.
  std::vector<zg::BlockDesc> blocks;
  const uint64_t slots = zg::plan_blocks(c.sizes, c.offsets, blocks);
  std::vector<zg::Sequence> seqs(slots);
  uint8_t *d_in = nullptr, *h_in = nullptr, *h_out = nullptr;
  zg::BlockDesc* d_blocks = nullptr;
  zg::Sequence* d_seqs = nullptr;
  cudaStream_t st;
  cudaStreamCreate(&st);
  cudaMalloc(&d_in, in.size() + 16);  // the finder reads up to 8 bytes past the end
  cudaMalloc(&d_blocks, blocks.size() * sizeof(zg::BlockDesc));
  cudaMalloc(&d_seqs, slots * sizeof(zg::Sequence));
  cudaMallocHost(&h_in, in.size());
  std::copy(in.begin(), in.end(), h_in);
  cudaMemcpy(d_in, h_in, in.size(), cudaMemcpyHostToDevice);
  cudaMemcpy(d_blocks, blocks.data(), blocks.size() * sizeof(zg::BlockDesc), cudaMemcpyHostToDevice);
  bool gpu_find = zg::enqueue_find(d_in, d_blocks, uint32_t(blocks.size()), d_seqs, st) == 0 &&
                  cudaStreamSynchronize(st) == cudaSuccess;
  cudaGetLastError();
  if (gpu_find) {
    cudaMemcpy(blocks.data(), d_blocks, blocks.size() * sizeof(zg::BlockDesc), cudaMemcpyDeviceToHost);
    cudaMemcpy(seqs.data(), d_seqs, slots * sizeof(zg::Sequence), cudaMemcpyDeviceToHost);
  } else {
    zg::cpu_find({in.data(), in.size()}, blocks, seqs);
    cudaMemcpy(d_blocks, blocks.data(), blocks.size() * sizeof(zg::BlockDesc), cudaMemcpyHostToDevice);
    cudaMemcpy(d_seqs, seqs.data(), slots * sizeof(zg::Sequence), cudaMemcpyHostToDevice);
  }

  cudaEvent_t e0, e1;
  cudaEventCreate(&e0);
  cudaEventCreate(&e1);
  // Stage 1 kernel alone (for the split of the time).
  float best_find_ms = 0;
  if (gpu_find) {
    best_find_ms = 1e30f;
    for (int r = 0; r < (opt.quick ? 2 : 5); ++r) {
      cudaEventRecord(e0, st);
      zg::enqueue_find(d_in, d_blocks, uint32_t(blocks.size()), d_seqs, st);
      cudaEventRecord(e1, st);
      cudaEventSynchronize(e1);
      float ms = 0;
      cudaEventElapsedTime(&ms, e0, e1);
      best_find_ms = std::min(best_find_ms, ms);
    }
  }
  // Stage 2 on the GPU: kernel only (sequences on the device).
  ent::GpuEncoder encoder;
  float best_ms = 1e30f;
  const int reps = opt.quick ? 3 : 10;
  for (int r = 0; r < reps; ++r) {
    cudaEventRecord(e0, st);
    const int rc = encoder.encode(d_in, in.size(), d_blocks, uint32_t(blocks.size()), d_seqs, slots, c.sizes, st);
    cudaEventRecord(e1, st);
    if (rc != 0 || cudaEventSynchronize(e1) != cudaSuccess) {
      std::fprintf(stderr, "zstd-stage2: encode failed: %s\n", cudaGetErrorString(cudaError_t(rc ? rc : cudaGetLastError())));
      return 1;
    }
    float ms = 0;
    cudaEventElapsedTime(&ms, e0, e1);
    best_ms = std::min(best_ms, ms);
  }
  // The first, simple path (one thread per block), for comparison.
  float best_ms_thread = 1e30f;
  {
    ent::GpuEncoder simple;
    simple.set_one_thread_per_block(true);
    for (int r = 0; r < 2; ++r) {
      cudaEventRecord(e0, st);
      simple.encode(d_in, in.size(), d_blocks, uint32_t(blocks.size()), d_seqs, slots, c.sizes, st);
      cudaEventRecord(e1, st);
      cudaEventSynchronize(e1);
      float ms = 0;
      cudaEventElapsedTime(&ms, e0, e1);
      best_ms_thread = std::min(best_ms_thread, ms);
    }
  }
  ent::GpuEncoder::Split split;
  {
    encoder.set_profile(true);
    encoder.encode(d_in, in.size(), d_blocks, uint32_t(blocks.size()), d_seqs, slots, c.sizes, st);
    split = encoder.last_split();
    encoder.set_profile(false);
  }
  std::vector<uint64_t> offs(c.sizes.size() + 1);
  cudaMemcpy(offs.data(), encoder.d_offsets(), offs.size() * 8, cudaMemcpyDeviceToHost);
  const size_t gpu_size = offs.back();
  cudaMallocHost(&h_out, encoder.out_capacity());

  // End to end through the library (GpuCompressor: copy in, find, encode,
  // copy out, pieces on kSets streams): pinned host buffers (copied by DMA
  // directly, as the agent's registered client slabs are) and pageable ones
  // (packed into / out of pinned staging by the host threads).
  struct E2e {
    std::string row;
    double best = 1e30;
    ent::GpuCompressor::Times t;  // of the best run
    size_t bytes = 0;
  };
  std::vector<E2e> e2e;
  std::vector<std::span<const uint8_t>> pin_ins, page_ins;
  std::vector<std::span<uint8_t>> pin_outs, page_outs;
  std::vector<std::vector<uint8_t>> page_obufs;
  uint8_t* pin_out = nullptr;
  {
    size_t cap = 0;
    for (size_t i = 0; i < c.sizes.size(); ++i) cap += ent::frame_bound(c.sizes[i]);
    cudaMallocHost(&pin_out, cap);
    size_t o = 0;
    for (size_t i = 0; i < c.sizes.size(); ++i) {
      pin_ins.push_back({h_in + c.offsets[i], c.sizes[i]});
      page_ins.push_back({in.data() + c.offsets[i], c.sizes[i]});
      pin_outs.push_back({pin_out + o, ent::frame_bound(c.sizes[i])});
      o += ent::frame_bound(c.sizes[i]);
      page_obufs.emplace_back(ent::frame_bound(c.sizes[i]));
    }
    for (auto& ob : page_obufs) page_outs.push_back(ob);
  }
  std::vector<size_t> pin_sz(c.sizes.size()), page_sz(c.sizes.size());
  auto measure = [&](const std::string& row, uint64_t piece_mib, bool pinned, bool timeline = false) {
    ent::GpuCompressor comp;
    comp.set_piece_bytes(piece_mib << 20);
    comp.set_timeline(timeline);
    E2e r;
    r.row = row;
    for (int k = 0; k < reps + 1; ++k) {  // the first call allocates: not counted
      if (pinned) comp.compress(pin_ins, pin_outs, pin_sz);
      else comp.compress(page_ins, page_outs, page_sz);
      if (k > 0 && comp.times().total < r.best) r.best = comp.times().total, r.t = comp.times();
    }
    for (size_t x : pinned ? pin_sz : page_sz) r.bytes += x;
    e2e.push_back(r);
  };
  const uint64_t default_piece = ent::GpuCompressor::kDefaultPieceBytes >> 20;
  measure("GpuCompressor e2e, pinned in/out, " + std::to_string(default_piece) + " MiB pieces", default_piece, true,
          true);
  measure("GpuCompressor e2e, pageable in/out, " + std::to_string(default_piece) + " MiB pieces", default_piece, false);
  if (!opt.quick)
    for (uint64_t mib : {16, 32, 64, 256})
      measure("GpuCompressor e2e, pinned in/out, " + std::to_string(mib) + " MiB pieces", mib, true);
  // The copies alone, pinned, one direction after the other (what the copy
  // engines give this machine: the bound on e2e whatever the kernels).
  double copy_s = 0;
  {
    const size_t nout = offs.back();
    for (int r = 0; r < 3; ++r) {
      const auto t0 = Clock::now();
      cudaMemcpyAsync(d_in, h_in, in.size(), cudaMemcpyHostToDevice, st);
      cudaMemcpyAsync(h_out, encoder.d_out(), nout, cudaMemcpyDeviceToHost, st);
      cudaStreamSynchronize(st);
      const double s = secs(t0, Clock::now());
      copy_s = r == 0 ? s : std::min(copy_s, s);
    }
  }  // h_out now holds the encoder's frames (checked below)
  // Check: every frame decompresses to its chunk (a bench that lies is worse
  // than none): the GpuEncoder run's frames and the pageable GpuCompressor
  // run's; the pinned run's frames must equal the pageable run's.
  size_t bad = 0, differ = 0;
  {
    std::vector<uint8_t> back(chunk + 1);
    auto ok = [&](const uint8_t* f, size_t fs, size_t i) {
      const size_t r = ZSTD_decompress(back.data(), back.size(), f, fs);
      return !ZSTD_isError(r) && r == c.sizes[i] && std::equal(back.begin(), back.begin() + r, in.begin() + c.offsets[i]);
    };
    for (size_t i = 0; i < c.sizes.size(); ++i) {
      bad += !ok(h_out + offs[i], offs[i + 1] - offs[i], i);
      bad += !ok(page_outs[i].data(), page_sz[i], i);
      differ += pin_sz[i] != page_sz[i] || !std::equal(pin_outs[i].begin(), pin_outs[i].begin() + pin_sz[i], page_outs[i].begin());
    }
  }
  // The same encoder on one CPU core (the code the GPU runs).
  double cpu_enc_s;
  {
    std::vector<uint8_t> o(ent::frame_bound(chunk));
    const auto t0 = Clock::now();
    size_t b0 = 0;
    const size_t n_in = opt.quick ? c.sizes.size() : std::min<size_t>(c.sizes.size(), 64);
    size_t bytes = 0;
    for (size_t i = 0; i < n_in; ++i) {
      size_t nb = 0;
      while (b0 + nb < blocks.size() && blocks[b0 + nb].input == i) nb++;
      ent::cpu_encode_frame(in.data(), {blocks.data() + b0, nb}, seqs.data(), c.sizes[i], ent::kWindowLog, o.data(),
                            o.size());
      b0 += nb;
      bytes += c.sizes[i];
    }
    cpu_enc_s = secs(t0, Clock::now()) * double(in.size()) / double(bytes);
  }

  const double n = double(in.size());
  Table t;
  t.title = "zstd stage 2 (GPU entropy coding), " + std::to_string(in.size() >> 20) + " MiB in " +
            std::to_string(chunk >> 10) + " KiB inputs, GB/s of input";
  t.columns = {"row", "ratio (in/out)", "size vs zstd -1", "GB/s"};
  t.rows.push_back({"libzstd -1, 1 core", ratio_str(n / double(z1)), "1.000", gbps(n, t1)});
  t.rows.push_back({"libzstd -1, " + std::to_string(all) + " threads", ratio_str(n / double(z1a)), "1.000", gbps(n, t1a)});
  t.rows.push_back({"libzstd -3, " + std::to_string(all) + " threads", ratio_str(n / double(z3)),
                    ratio_str(double(z3) / double(z1)), gbps(n, t3)});
  t.rows.push_back({"GPU stage 2, kernel only", ratio_str(n / double(gpu_size)), ratio_str(double(gpu_size) / double(z1)),
                    gbps(n, best_ms / 1e3)});
  if (gpu_find) t.rows.push_back({"GPU stage 1 (find), kernel only", "-", "-", gbps(n, best_find_ms / 1e3)});
  if (gpu_find)
    t.rows.push_back({"GPU stage 1 + 2 kernels", ratio_str(n / double(gpu_size)),
                      ratio_str(double(gpu_size) / double(z1)), gbps(n, (best_find_ms + best_ms) / 1e3)});
  t.rows.push_back({"GPU stage 2, kernel only, 1 thread/block", ratio_str(n / double(gpu_size)),
                    ratio_str(double(gpu_size) / double(z1)), gbps(n, best_ms_thread / 1e3)});
  for (const E2e& r : e2e)
    t.rows.push_back({r.row, ratio_str(n / double(r.bytes)), ratio_str(double(r.bytes) / double(z1)), gbps(n, r.best)});
  t.rows.push_back({"copies alone: corpus in + frames out, pinned, one stream", "-", "-", gbps(n, copy_s)});
  t.rows.push_back({"same encoder, CPU 1 core (no find)", ratio_str(n / double(gpu_size)),
                    ratio_str(double(gpu_size) / double(z1)), gbps(n, cpu_enc_s)});
  t.notes.push_back("corpus: " + corpus_what);
  t.notes.push_back(std::string("sequences: ") + (gpu_find ? "stage 1 GPU finder" : "stage 1 CPU twin (GPU finder not available)"));
  {
    char b[200];
    std::snprintf(b, sizeof b,
                  "stage 2 split (ms, one run): literals kernel %.2f, sequences kernel %.2f (concurrent), whole encode %.2f",
                  split.literals_ms, split.sequences_ms, split.total_ms);
    t.notes.push_back(b);
  }
  for (const E2e& r : e2e) {
    char b[400];
    const auto& x = r.t;
    std::snprintf(b, sizeof b,
                  "%s: %zu pieces, %.1f ms; in %.0f MB direct + %.0f MB staged (%zu copies), out %.0f MB direct + "
                  "%.0f MB staged (%zu copies); host pack %.1f ms (%s GB/s), unpack %.1f ms (%s GB/s)",
                  r.row.c_str(), x.pieces, x.total * 1e3, x.direct_in / 1e6, x.staged_in / 1e6, x.copies_in,
                  x.direct_out / 1e6, x.staged_out / 1e6, x.copies_out, x.pack * 1e3,
                  x.pack > 0 ? gbps(double(x.staged_in), x.pack).c_str() : "-", x.unpack * 1e3,
                  x.unpack > 0 ? gbps(double(x.staged_out), x.unpack).c_str() : "-");
    t.notes.push_back(b);
    // Where the time of a call goes, piece by piece (the default row only).
    for (size_t k = 0; k < x.timeline.size(); ++k) {
      const auto& p = x.timeline[k];
      std::snprintf(b, sizeof b,
                    "  piece %zu (%.0f MiB), ms from the call's start: host queued %.2f, in %.2f, find %.2f, "
                    "encode %.2f, host drained %.2f, out %.2f",
                    k, p.bytes / 1048576.0, p.queued, p.in, p.find, p.encode, p.drained, p.out);
      t.notes.push_back(b);
    }
  }
  t.notes.push_back(std::string("GpuCompressor output ") + (e2e[0].bytes == gpu_size ? "equals" : "DIFFERS from") +
                    " the GpuEncoder run in size (" + std::to_string(e2e[0].bytes) + " B); pinned and pageable frames " +
                    (differ ? "DIFFER for " + std::to_string(differ) + " inputs" : "are identical"));
  t.notes.push_back("frames that failed to decompress to their input: " + std::to_string(bad));
  t.notes.push_back("stage 2 kernels: literals by a CTA per 128 KiB block, sequences (FSE) by a warp per block; GPU " +
                    std::to_string(opt.gpu));
  out.push_back(std::move(t));

  cudaFree(d_in);
  cudaFree(d_blocks);
  cudaFree(d_seqs);
  cudaFreeHost(h_in);
  cudaFreeHost(h_out);
  cudaFreeHost(pin_out);
  cudaStreamDestroy(st);
  return bad || differ ? 1 : 0;
}

}  // namespace gpo::bench

