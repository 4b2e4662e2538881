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
#include <span>
#include <string>
#include <thread>
#include <tuple>
#include <utility>
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

// Stage 1's sequences for the corpus, on the device and on the host: the GPU
// finder when it runs, else its CPU twin. Also the corpus on the device and
// in pinned memory. Freed by free_device().
struct Stage1 {
  std::vector<zg::BlockDesc> blocks;
  std::vector<zg::Sequence> seqs;
  uint64_t slots = 0;
  bool gpu_find = false;
  uint8_t *d_in = nullptr, *h_in = nullptr;
  zg::BlockDesc* d_blocks = nullptr;
  zg::Sequence* d_seqs = nullptr;

  void free_device() {
    cudaFree(d_in);
    cudaFree(d_blocks);
    cudaFree(d_seqs);
    cudaFreeHost(h_in);
  }
};

Stage1 find_sequences(const std::vector<uint8_t>& in, const Chunks& c, cudaStream_t st) {
  Stage1 s;
  s.slots = zg::plan_blocks(c.sizes, c.offsets, s.blocks);
  s.seqs.resize(s.slots);
  const size_t blocks_bytes = s.blocks.size() * sizeof(zg::BlockDesc), seqs_bytes = s.slots * sizeof(zg::Sequence);
  cudaMalloc(&s.d_in, in.size() + 16);  // the finder reads up to 8 bytes past the end
  cudaMalloc(&s.d_blocks, blocks_bytes);
  cudaMalloc(&s.d_seqs, seqs_bytes);
  cudaMallocHost(&s.h_in, in.size());
  std::copy(in.begin(), in.end(), s.h_in);
  cudaMemcpy(s.d_in, s.h_in, in.size(), cudaMemcpyHostToDevice);
  cudaMemcpy(s.d_blocks, s.blocks.data(), blocks_bytes, cudaMemcpyHostToDevice);
  s.gpu_find = zg::enqueue_find(s.d_in, s.d_blocks, uint32_t(s.blocks.size()), s.d_seqs, st) == 0 &&
               cudaStreamSynchronize(st) == cudaSuccess;
  cudaGetLastError();
  if (s.gpu_find) {
    cudaMemcpy(s.blocks.data(), s.d_blocks, blocks_bytes, cudaMemcpyDeviceToHost);
    cudaMemcpy(s.seqs.data(), s.d_seqs, seqs_bytes, cudaMemcpyDeviceToHost);
  } else {
    zg::cpu_find({in.data(), in.size()}, s.blocks, s.seqs);
    cudaMemcpy(s.d_blocks, s.blocks.data(), blocks_bytes, cudaMemcpyHostToDevice);
    cudaMemcpy(s.d_seqs, s.seqs.data(), seqs_bytes, cudaMemcpyHostToDevice);
  }
  return s;
}

// The best of reps runs of what enqueue queues on st, in ms between two
// events. Stops at the first run whose enqueue returns non-zero or whose end
// event fails: false, with that CUDA error in *err.
template <typename Enqueue>
bool best_ms(int reps, cudaStream_t st, cudaEvent_t e0, cudaEvent_t e1, float& best, Enqueue&& enqueue,
             cudaError_t* err = nullptr) {
  best = 1e30f;
  for (int r = 0; r < reps; ++r) {
    cudaEventRecord(e0, st);
    const int rc = enqueue();
    cudaEventRecord(e1, st);
    if (rc != 0 || cudaEventSynchronize(e1) != cudaSuccess) {
      if (err) *err = cudaError_t(rc ? rc : cudaGetLastError());
      return false;
    }
    float ms = 0;
    cudaEventElapsedTime(&ms, e0, e1);
    best = std::min(best, ms);
  }
  return true;
}

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

// The inputs and outputs of the end-to-end runs, pinned and pageable; what
// the last runs wrote stays there for the check.
struct E2eBuffers {
  std::vector<std::span<const uint8_t>> pin_ins, page_ins;
  std::vector<std::span<uint8_t>> pin_outs, page_outs;
  std::vector<std::vector<uint8_t>> page_obufs;
  std::vector<size_t> pin_sz, page_sz;
  uint8_t* pin_out = nullptr;  // cudaFreeHost by the caller

  E2eBuffers(const std::vector<uint8_t>& in, const uint8_t* h_in, const Chunks& c)
      : pin_sz(c.sizes.size()), page_sz(c.sizes.size()) {
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
};

E2e measure_e2e(E2eBuffers& b, const std::string& row, uint64_t piece_mib, bool pinned, int reps,
                bool timeline = false) {
  ent::GpuCompressor comp;
  comp.set_piece_bytes(piece_mib << 20);
  comp.set_timeline(timeline);
  E2e r;
  r.row = row;
  for (int k = 0; k < reps + 1; ++k) {  // the first call allocates: not counted
    if (pinned) comp.compress(b.pin_ins, b.pin_outs, b.pin_sz);
    else comp.compress(b.page_ins, b.page_outs, b.page_sz);
    if (k > 0 && comp.times().total < r.best) r.best = comp.times().total, r.t = comp.times();
  }
  for (size_t x : pinned ? b.pin_sz : b.page_sz) r.bytes += x;
  return r;
}

std::vector<E2e> measure_e2e_rows(E2eBuffers& b, const Options& opt, int reps) {
  std::vector<E2e> e2e;
  const uint64_t default_piece = ent::GpuCompressor::kDefaultPieceBytes >> 20;
  e2e.push_back(measure_e2e(b, "GpuCompressor e2e, pinned in/out, " + std::to_string(default_piece) + " MiB pieces",
                            default_piece, true, reps, true));
  e2e.push_back(measure_e2e(b, "GpuCompressor e2e, pageable in/out, " + std::to_string(default_piece) + " MiB pieces",
                            default_piece, false, reps));
  if (!opt.quick)
    for (uint64_t mib : {16, 32, 64, 256})
      e2e.push_back(
          measure_e2e(b, "GpuCompressor e2e, pinned in/out, " + std::to_string(mib) + " MiB pieces", mib, true, reps));
  return e2e;
}

// The copies alone, pinned, one direction after the other (what the copy
// engines give this machine: the bound on e2e whatever the kernels). Leaves
// the encoder's frames in h_out.
double copy_seconds(const Stage1& s, size_t in_size, uint8_t* h_out, const uint8_t* d_out, size_t nout,
                    cudaStream_t st) {
  double copy_s = 0;
  for (int r = 0; r < 3; ++r) {
    const auto t0 = Clock::now();
    cudaMemcpyAsync(s.d_in, s.h_in, in_size, cudaMemcpyHostToDevice, st);
    cudaMemcpyAsync(h_out, d_out, nout, cudaMemcpyDeviceToHost, st);
    cudaStreamSynchronize(st);
    const double t = secs(t0, Clock::now());
    copy_s = r == 0 ? t : std::min(copy_s, t);
  }
  return copy_s;
}

// Check: every frame decompresses to its chunk (a bench that lies is worse
// than none): the GpuEncoder run's frames (h_out at offs) and the pageable
// GpuCompressor run's; the pinned run's frames must equal the pageable run's.
// Returns {frames that failed, inputs whose pinned and pageable frames differ}.
std::pair<size_t, size_t> check_frames(const std::vector<uint8_t>& in, const Chunks& c, size_t chunk,
                                       const uint8_t* h_out, const std::vector<uint64_t>& offs, const E2eBuffers& b) {
  size_t bad = 0, differ = 0;
  std::vector<uint8_t> back(chunk + 1);
  auto ok = [&](const uint8_t* f, size_t fs, size_t i) {
    const size_t r = ZSTD_decompress(back.data(), back.size(), f, fs);
    return !ZSTD_isError(r) && r == c.sizes[i] && std::equal(back.begin(), back.begin() + r, in.begin() + c.offsets[i]);
  };
  for (size_t i = 0; i < c.sizes.size(); ++i) {
    bad += !ok(h_out + offs[i], offs[i + 1] - offs[i], i);
    bad += !ok(b.page_outs[i].data(), b.page_sz[i], i);
    differ += b.pin_sz[i] != b.page_sz[i] ||
              !std::equal(b.pin_outs[i].begin(), b.pin_outs[i].begin() + b.pin_sz[i], b.page_outs[i].begin());
  }
  return {bad, differ};
}

// The same encoder on one CPU core (the code the GPU runs), in seconds for
// the whole corpus (a sample of it unless quick).
double cpu_encoder_seconds(const std::vector<uint8_t>& in, const Chunks& c, size_t chunk, const Stage1& s,
                           bool quick) {
  std::vector<uint8_t> o(ent::frame_bound(chunk));
  const auto t0 = Clock::now();
  size_t b0 = 0;
  const size_t n_in = quick ? c.sizes.size() : std::min<size_t>(c.sizes.size(), 64);
  size_t bytes = 0;
  for (size_t i = 0; i < n_in; ++i) {
    size_t nb = 0;
    while (b0 + nb < s.blocks.size() && s.blocks[b0 + nb].input == i) nb++;
    ent::cpu_encode_frame(in.data(), {s.blocks.data() + b0, nb}, s.seqs.data(), c.sizes[i], ent::kWindowLog, o.data(),
                          o.size());
    b0 += nb;
    bytes += c.sizes[i];
  }
  return secs(t0, Clock::now()) * double(in.size()) / double(bytes);
}

// What the table reports: sizes (bytes out) and times (seconds, ms where named).
struct Stage2Figures {
  size_t in_bytes = 0, chunk = 0;
  unsigned all = 1;
  std::pair<size_t, double> z1, z1a, z3;  // libzstd -1 on one core and all, -3 on all
  size_t gpu_size = 0;                    // the GpuEncoder's frames
  bool gpu_find = false;
  float find_ms = 0, encode_ms = 0, encode_thread_ms = 0;
  ent::GpuEncoder::Split split;
  std::vector<E2e> e2e;
  double copy_s = 0, cpu_enc_s = 0;
  size_t bad = 0, differ = 0;
};

void add_e2e_notes(Table& t, const E2e& r) {
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

Table stage2_table(const Stage2Figures& f, const std::string& corpus_what, int gpu) {
  const double n = double(f.in_bytes);
  const double z1 = double(f.z1.first), gpu_size = double(f.gpu_size);
  Table t;
  t.title = "zstd stage 2 (GPU entropy coding), " + std::to_string(f.in_bytes >> 20) + " MiB in " +
            std::to_string(f.chunk >> 10) + " KiB inputs, GB/s of input";
  t.columns = {"row", "ratio (in/out)", "size vs zstd -1", "GB/s"};
  t.rows.push_back({"libzstd -1, 1 core", ratio_str(n / z1), "1.000", gbps(n, f.z1.second)});
  t.rows.push_back({"libzstd -1, " + std::to_string(f.all) + " threads", ratio_str(n / double(f.z1a.first)), "1.000",
                    gbps(n, f.z1a.second)});
  t.rows.push_back({"libzstd -3, " + std::to_string(f.all) + " threads", ratio_str(n / double(f.z3.first)),
                    ratio_str(double(f.z3.first) / z1), gbps(n, f.z3.second)});
  t.rows.push_back({"GPU stage 2, kernel only", ratio_str(n / gpu_size), ratio_str(gpu_size / z1),
                    gbps(n, f.encode_ms / 1e3)});
  if (f.gpu_find) t.rows.push_back({"GPU stage 1 (find), kernel only", "-", "-", gbps(n, f.find_ms / 1e3)});
  if (f.gpu_find)
    t.rows.push_back({"GPU stage 1 + 2 kernels", ratio_str(n / gpu_size), ratio_str(gpu_size / z1),
                      gbps(n, (f.find_ms + f.encode_ms) / 1e3)});
  t.rows.push_back({"GPU stage 2, kernel only, 1 thread/block", ratio_str(n / gpu_size), ratio_str(gpu_size / z1),
                    gbps(n, f.encode_thread_ms / 1e3)});
  for (const E2e& r : f.e2e)
    t.rows.push_back({r.row, ratio_str(n / double(r.bytes)), ratio_str(double(r.bytes) / z1), gbps(n, r.best)});
  t.rows.push_back({"copies alone: corpus in + frames out, pinned, one stream", "-", "-", gbps(n, f.copy_s)});
  t.rows.push_back({"same encoder, CPU 1 core (no find)", ratio_str(n / gpu_size), ratio_str(gpu_size / z1),
                    gbps(n, f.cpu_enc_s)});
  t.notes.push_back("corpus: " + corpus_what);
  t.notes.push_back(std::string("sequences: ") +
                    (f.gpu_find ? "stage 1 GPU finder" : "stage 1 CPU twin (GPU finder not available)"));
  {
    char b[200];
    std::snprintf(b, sizeof b,
                  "stage 2 split (ms, one run): literals kernel %.2f, sequences kernel %.2f (concurrent), whole encode %.2f",
                  f.split.literals_ms, f.split.sequences_ms, f.split.total_ms);
    t.notes.push_back(b);
  }
  for (const E2e& r : f.e2e) add_e2e_notes(t, r);
  t.notes.push_back(std::string("GpuCompressor output ") + (f.e2e[0].bytes == f.gpu_size ? "equals" : "DIFFERS from") +
                    " the GpuEncoder run in size (" + std::to_string(f.e2e[0].bytes) +
                    " B); pinned and pageable frames " +
                    (f.differ ? "DIFFER for " + std::to_string(f.differ) + " inputs" : "are identical"));
  t.notes.push_back("frames that failed to decompress to their input: " + std::to_string(f.bad));
  t.notes.push_back("stage 2 kernels: literals by a CTA per 128 KiB block, sequences (FSE) by a warp per block; GPU " +
                    std::to_string(gpu));
  return t;
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
  Stage2Figures f;
  f.in_bytes = in.size();
  f.chunk = chunk;
  f.all = opt.threads ? opt.threads : std::max(1u, std::thread::hardware_concurrency());
  const double min_s = opt.quick ? 0.05 : opt.min_seconds;

  // CPU references.
  f.z1 = libzstd_run(in, c, 1, 1, min_s);
  f.z1a = libzstd_run(in, c, 1, f.all, min_s);
  f.z3 = libzstd_run(in, c, 3, f.all, opt.quick ? 0.0 : min_s);

  cudaStream_t st;
  cudaStreamCreate(&st);
  Stage1 s = find_sequences(in, c, st);
  f.gpu_find = s.gpu_find;
  cudaEvent_t e0, e1;
  cudaEventCreate(&e0);
  cudaEventCreate(&e1);
  // Stage 1 kernel alone (for the split of the time).
  if (s.gpu_find)
    best_ms(opt.quick ? 2 : 5, st, e0, e1, f.find_ms,
            [&] { return zg::enqueue_find(s.d_in, s.d_blocks, uint32_t(s.blocks.size()), s.d_seqs, st); });
  // Stage 2 on the GPU: kernel only (sequences on the device).
  ent::GpuEncoder encoder;
  auto encode = [&](ent::GpuEncoder& e) {
    return e.encode(s.d_in, in.size(), s.d_blocks, uint32_t(s.blocks.size()), s.d_seqs, s.slots, c.sizes, st);
  };
  const int reps = opt.quick ? 3 : 10;
  cudaError_t err = cudaSuccess;
  if (!best_ms(reps, st, e0, e1, f.encode_ms, [&] { return encode(encoder); }, &err)) {
    std::fprintf(stderr, "zstd-stage2: encode failed: %s\n", cudaGetErrorString(err));
    return 1;
  }
  // The first, simple path (one thread per block), for comparison.
  {
    ent::GpuEncoder simple;
    simple.set_one_thread_per_block(true);
    best_ms(2, st, e0, e1, f.encode_thread_ms, [&] { return encode(simple); });
  }
  encoder.set_profile(true);
  encode(encoder);
  f.split = encoder.last_split();
  encoder.set_profile(false);
  std::vector<uint64_t> offs(c.sizes.size() + 1);
  cudaMemcpy(offs.data(), encoder.d_offsets(), offs.size() * 8, cudaMemcpyDeviceToHost);
  f.gpu_size = offs.back();
  uint8_t* h_out = nullptr;
  cudaMallocHost(&h_out, encoder.out_capacity());

  E2eBuffers bufs(in, s.h_in, c);
  f.e2e = measure_e2e_rows(bufs, opt, reps);
  f.copy_s = copy_seconds(s, in.size(), h_out, encoder.d_out(), offs.back(), st);
  std::tie(f.bad, f.differ) = check_frames(in, c, chunk, h_out, offs, bufs);
  f.cpu_enc_s = cpu_encoder_seconds(in, c, chunk, s, opt.quick);
  out.push_back(stage2_table(f, corpus_what, opt.gpu));

  s.free_device();
  cudaFreeHost(h_out);
  cudaFreeHost(bufs.pin_out);
  cudaStreamDestroy(st);
  return f.bad || f.differ ? 1 : 0;
}

}  // namespace gpo::bench
