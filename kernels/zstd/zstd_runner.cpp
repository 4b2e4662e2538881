// zstd stages 1 + 2 on the GPU, host in, host out (GpuCompressor,
// zstd_entropy.h): host code only (g++ against cudart); the kernels are in
// zstd_find_gpu.cu (stage 1) and zstd_entropy_gpu.cu (stage 2).
//
// A call is a stream of pieces over kSets buffer sets, each with its own CUDA
// stream. The host loop, per step k: start piece k (lay it out, pack its
// pageable inputs, queue copy in, find, encode, frame offsets back), drain
// piece k - 3 (wait for its offsets, queue its frames back), finish piece
// k - 4 (wait for its frames, unpack the staged ones). So the GPU always has
// the kernels of the next pieces queued, which fill the SMs while a piece's
// last warps finish (a warp parses a 16 KiB segment, or codes a block's
// sequences, in 1-2 ms), and the copy engines move later pieces in and
// earlier ones out meanwhile. Each set's device buffers grow to a few times
// its largest piece and are kept for the next call.
#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "kernels/common/copy_plan.h"
#include "kernels/common/cuda_buffers.h"
#include "kernels/zstd/zstd_entropy.h"
#include "kernels/zstd/zstd_find.h"

namespace gpo::zstd::entropy {

namespace {

using cuda::DevBuf;
using cuda::PinnedBuf;
using Clock = std::chrono::steady_clock;

using cuda::align_up;
using cuda::check;

double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

constexpr uint64_t kMergeGap = 4096;       // pinned inputs this close in host memory share one copy
constexpr size_t kCopyTaskBytes = 2 << 20; // host copies are cut into tasks of this size

// Host memcpy on a few persistent threads (the caller's thread works too):
// one pageable copy per core does not reach the copy engines' rate.
class CopyPool {
 public:
  struct Task {
    void* dst;
    const void* src;
    size_t n;
  };
  explicit CopyPool(unsigned threads) {
    for (unsigned t = 1; t < threads; ++t) workers_.emplace_back([this] { loop(); });
  }
  ~CopyPool() {
    {
      std::lock_guard lk(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    for (auto& w : workers_) w.join();
  }
  // Appends the copy of n bytes, cut into tasks.
  static void add(std::vector<Task>& tasks, void* dst, const void* src, size_t n) {
    for (size_t o = 0; o < n; o += kCopyTaskBytes)
      tasks.push_back({static_cast<uint8_t*>(dst) + o, static_cast<const uint8_t*>(src) + o,
                       std::min(kCopyTaskBytes, n - o)});
  }
  void run(const std::vector<Task>& tasks) {
    if (tasks.empty()) return;
    if (workers_.empty() || tasks.size() == 1) {
      for (const Task& t : tasks) std::memcpy(t.dst, t.src, t.n);
      return;
    }
    {
      std::lock_guard lk(mu_);
      tasks_ = &tasks;
      next_.store(0, std::memory_order_relaxed);
      busy_ = workers_.size();
      ++gen_;
    }
    cv_.notify_all();
    work(tasks);
    std::unique_lock lk(mu_);
    done_.wait(lk, [&] { return busy_ == 0; });
    tasks_ = nullptr;
  }

 private:
  void work(const std::vector<Task>& tasks) {
    for (size_t i; (i = next_.fetch_add(1, std::memory_order_relaxed)) < tasks.size();)
      std::memcpy(tasks[i].dst, tasks[i].src, tasks[i].n);
  }
  void loop() {
    uint64_t seen = 0;
    for (;;) {
      const std::vector<Task>* t;
      {
        std::unique_lock lk(mu_);
        cv_.wait(lk, [&] { return stop_ || gen_ != seen; });
        if (stop_) return;
        seen = gen_;
        t = tasks_;
      }
      work(*t);
      std::lock_guard lk(mu_);
      if (--busy_ == 0) done_.notify_one();
    }
  }
  std::vector<std::thread> workers_;
  std::mutex mu_;
  std::condition_variable cv_, done_;
  const std::vector<Task>* tasks_ = nullptr;
  std::atomic<size_t> next_{0};
  size_t busy_ = 0;
  uint64_t gen_ = 0;
  bool stop_ = false;
};

unsigned default_threads(unsigned want) {
  if (want) return want;
  return std::clamp(std::thread::hardware_concurrency(), 1u, 16u);
}

}  // namespace

struct GpuCompressor::Impl {
  // One contiguous host -> device copy: pinned inputs adjacent in host memory,
  // or pageable inputs packed next to each other in staging.
  struct Run {
    const uint8_t* host;  // pinned source (unused when staged)
    uint64_t dev, len;    // offset in the device input buffer (= in staging)
    bool staged;
  };
  struct Set {
    GpuEncoder encoder;
    DevBuf<uint8_t> in;
    DevBuf<BlockDesc> blocks;
    DevBuf<Sequence> seqs;
    PinnedBuf<uint8_t> h_in, h_out;  // staging for pageable inputs / outputs
    PinnedBuf<uint64_t> h_offs;
    PinnedBuf<BlockDesc> h_blocks;
    std::vector<BlockDesc> blocks_v;
    std::vector<uint64_t> sizes, offsets;
    std::vector<Run> runs;
    size_t first = 0, count = 0;  // the piece: inputs [first, first + count)
    cudaStream_t stream = nullptr;
    cudaEvent_t offs_ready = nullptr, frames_back = nullptr;
    cudaEvent_t tl[4] = {};  // timeline: in, find, encode, out
    size_t piece = 0;
  };
  Set sets[kSets];
  CopyPool pool;
  std::vector<CopyPool::Task> tasks;
  std::vector<uint8_t> in_pinned, out_pinned;
  uint64_t piece_bytes = GpuCompressor::kDefaultPieceBytes;
  bool fault = false;
  bool timeline = false;
  cudaEvent_t tl_start = nullptr;
  Clock::time_point t_call;
  Times times;

  explicit Impl(unsigned threads) : pool(default_threads(threads)) {
    for (Set& st : sets) {
      check(cudaStreamCreateWithFlags(&st.stream, cudaStreamNonBlocking), "zstd GPU: cudaStreamCreate");
      check(cudaEventCreateWithFlags(&st.offs_ready, cudaEventDisableTiming), "zstd GPU: cudaEventCreate");
      check(cudaEventCreateWithFlags(&st.frames_back, cudaEventDisableTiming), "zstd GPU: cudaEventCreate");
    }
  }
  ~Impl() {
    if (tl_start) cudaEventDestroy(tl_start);
    for (Set& st : sets) {
      for (cudaEvent_t ev : st.tl)
        if (ev) cudaEventDestroy(ev);
      if (st.stream) cudaStreamSynchronize(st.stream);
      if (st.offs_ready) cudaEventDestroy(st.offs_ready);
      if (st.frames_back) cudaEventDestroy(st.frames_back);
      if (st.stream) cudaStreamDestroy(st.stream);
    }
  }
  void sync_all() {
    for (Set& st : sets) cudaStreamSynchronize(st.stream);
    cudaGetLastError();  // the caller reports the first error; sticky ones stay sticky
  }

  // Timeline point k of the set's piece (set_timeline only).
  void mark(Set& st, int k) {
    if (!timeline) return;
    if (!st.tl[k]) check(cudaEventCreate(&st.tl[k]), "zstd GPU: cudaEventCreate");
    check(cudaEventRecord(st.tl[k], st.stream), "zstd GPU: cudaEventRecord");
  }

  // Lays out inputs [first, first + count), packs the pageable ones, queues
  // copy in, stages 1 and 2, and the copy of the frame offsets.
  void start(Set& st, std::span<const std::span<const uint8_t>> ins, size_t first, size_t count) {
    st.first = first;
    st.count = count;
    st.sizes.resize(count);
    st.offsets.resize(count);
    st.runs.clear();
    uint64_t total = 0;
    const uint8_t* prev_end = nullptr;
    for (size_t i = 0; i < count; ++i) {
      const std::span<const uint8_t> b = ins[first + i];
      st.sizes[i] = b.size();
      st.offsets[i] = total;
      if (b.empty()) continue;
      const bool pinned = in_pinned[first + i];
      Run* last = st.runs.empty() ? nullptr : &st.runs.back();
      if (pinned && last && !last->staged && b.data() >= prev_end && uint64_t(b.data() - prev_end) <= kMergeGap) {
        st.offsets[i] = last->dev + uint64_t(b.data() - last->host);
        last->len = st.offsets[i] + b.size() - last->dev;
      } else if (!pinned && last && last->staged) {
        st.offsets[i] = align_up(total, 16);
        last->len = st.offsets[i] + b.size() - last->dev;
      } else {
        // A pinned run keeps its host address modulo 256, so aligned host data is aligned on the device.
        const uint64_t d = align_up(total, 256) + (pinned ? reinterpret_cast<uintptr_t>(b.data()) & 255 : 0);
        st.runs.push_back({b.data(), d, b.size(), !pinned});
        st.offsets[i] = d;
      }
      total = st.offsets[i] + b.size();
      prev_end = b.data() + b.size();
    }
    st.blocks_v.clear();
    const uint64_t slots = gpu::plan_blocks(st.sizes, st.offsets, st.blocks_v);
    const uint32_t nb = uint32_t(st.blocks_v.size());

    // Pack the pageable inputs into staging (same offsets as on the device).
    tasks.clear();
    for (size_t i = 0; i < count; ++i)
      if (st.sizes[i] && !in_pinned[first + i]) {
        if (tasks.empty()) st.h_in.get(total, "zstd GPU: cudaMallocHost (input staging)");
        CopyPool::add(tasks, st.h_in.data() + st.offsets[i], ins[first + i].data(), st.sizes[i]);
        times.staged_in += st.sizes[i];
      } else {
        times.direct_in += st.sizes[i];
      }
    const auto t0 = Clock::now();
    pool.run(tasks);
    times.pack += since(t0);

    if (timeline) times.timeline[st.piece].queued = since(t_call) * 1e3;
    uint8_t* din = st.in.get(total + 16, "zstd GPU: cudaMalloc");  // the finder reads up to 8 bytes past the end
    BlockDesc* hb = st.h_blocks.get(nb, "zstd GPU: cudaMallocHost");
    if (nb) std::memcpy(hb, st.blocks_v.data(), nb * sizeof(BlockDesc));
    st.blocks.get(nb, "zstd GPU: cudaMalloc");
    st.seqs.get(slots, "zstd GPU: cudaMalloc");
    for (const Run& r : st.runs) {
      const uint8_t* src = r.staged ? st.h_in.data() + r.dev : r.host;
      check(cudaMemcpyAsync(din + r.dev, src, r.len, cudaMemcpyHostToDevice, st.stream), "zstd GPU: copy in");
      times.copies_in++;
    }
    if (fault) {
      fault = false;
      check(cudaMemcpyAsync(nullptr, din, 1, cudaMemcpyDeviceToHost, st.stream), "zstd GPU: copy (injected fault)");
    }
    if (nb)
      check(cudaMemcpyAsync(st.blocks.data(), hb, nb * sizeof(BlockDesc), cudaMemcpyHostToDevice, st.stream),
            "zstd GPU: copy in");
    mark(st, 0);
    if (nb) check(gpu::enqueue_find(din, st.blocks.data(), nb, st.seqs.data(), st.stream), "zstd GPU: match finder");
    mark(st, 1);
    check(st.encoder.encode(din, total, st.blocks.data(), nb, st.seqs.data(), slots, st.sizes, st.stream),
          "zstd GPU: entropy coder");
    check(cudaMemcpyAsync(st.h_offs.get(count + 1, "zstd GPU: cudaMallocHost"), st.encoder.d_offsets(),
                          (count + 1) * sizeof(uint64_t), cudaMemcpyDeviceToHost, st.stream),
          "zstd GPU: copy out");
    mark(st, 2);
    check(cudaEventRecord(st.offs_ready, st.stream), "zstd GPU: cudaEventRecord");
  }

  // Waits for the piece's frame offsets, sets sizes and queues the frames
  // back: straight into pinned outputs, through staging for the others.
  void drain(Set& st, std::span<const std::span<uint8_t>> outs, std::span<size_t> sizes) {
    check(cudaEventSynchronize(st.offs_ready), "zstd GPU: kernels");
    if (timeline) times.timeline[st.piece].drained = since(t_call) * 1e3;
    const uint64_t* offs = st.h_offs.data();
    const uint8_t* dout = st.encoder.d_out();
    // Runs: contiguous on the device and (direct) in host memory, or (staged) in staging.
    uint8_t* run_dst = nullptr;
    uint64_t run_src = 0, run_len = 0;
    bool run_staged = false;
    auto flush = [&] {
      if (!run_len) return;
      check(cudaMemcpyAsync(run_dst, dout + run_src, run_len, cudaMemcpyDeviceToHost, st.stream),
            "zstd GPU: copy out");
      times.copies_out++;
      run_len = 0;
    };
    bool staging = false;
    for (size_t i = 0; i < st.count; ++i) {
      const size_t k = st.first + i;
      const uint64_t fs = offs[i + 1] - offs[i];
      sizes[k] = fs <= outs[k].size() ? fs : 0;
      if (!sizes[k]) continue;
      const bool staged = !out_pinned[k];
      if (staged && !staging) {
        st.h_out.get(offs[st.count], "zstd GPU: cudaMallocHost (output staging)");
        staging = true;
      }
      uint8_t* dst = staged ? st.h_out.data() + offs[i] : outs[k].data();
      if (run_len && staged == run_staged && offs[i] == run_src + run_len && dst == run_dst + run_len) {
        run_len += fs;
      } else {
        flush();
        run_dst = dst, run_src = offs[i], run_len = fs, run_staged = staged;
      }
      (staged ? times.staged_out : times.direct_out) += fs;
    }
    flush();
    mark(st, 3);
    check(cudaEventRecord(st.frames_back, st.stream), "zstd GPU: cudaEventRecord");
  }

  // Waits for the piece's frames, copies the staged ones to their outputs.
  void finish(Set& st, std::span<const std::span<uint8_t>> outs, std::span<const size_t> sizes) {
    check(cudaEventSynchronize(st.frames_back), "zstd GPU: copy out");
    if (timeline) {
      Times::Piece& tp = times.timeline[st.piece];
      float* at[4] = {&tp.in, &tp.find, &tp.encode, &tp.out};
      for (int k = 0; k < 4; ++k) cudaEventElapsedTime(at[k], tl_start, st.tl[k]);
    }
    tasks.clear();
    const uint64_t* offs = st.h_offs.data();
    for (size_t i = 0; i < st.count; ++i) {
      const size_t k = st.first + i;
      if (sizes[k] && !out_pinned[k]) CopyPool::add(tasks, outs[k].data(), st.h_out.data() + offs[i], sizes[k]);
    }
    const auto t0 = Clock::now();
    pool.run(tasks);
    times.unpack += since(t0);
  }

  void compress(std::span<const std::span<const uint8_t>> ins, std::span<const std::span<uint8_t>> outs,
                std::span<size_t> sizes) {
    const size_t n = ins.size();
    in_pinned.assign(n, 0);
    out_pinned.assign(n, 0);
    for (size_t i = 0; i < n; ++i) {
      if (!ins[i].empty()) in_pinned[i] = cuda::is_pinned(ins[i].data());
      if (!outs[i].empty()) out_pinned[i] = cuda::is_pinned(outs[i].data());
    }
    // Pieces: consecutive inputs, about piece_bytes each (at least one
    // input). The first ones are smaller (ramp): the GPU starts after a
    // shorter first copy, and the pieces behind it still fill the GPU.
    std::vector<std::pair<size_t, size_t>> pieces;
    for (size_t i = 0; i < n;) {
      const size_t k = pieces.size();
      const uint64_t limit = k < 2 ? std::max<uint64_t>(piece_bytes >> (2 - k), 1) : piece_bytes;
      size_t j = i;
      uint64_t bytes = 0;
      while (j < n && (j == i || bytes + ins[j].size() <= limit)) bytes += ins[j++].size();
      pieces.push_back({i, j - i});
      i = j;
    }
    const size_t np = pieces.size();
    if (timeline) {
      times.timeline.assign(np, {});
      for (size_t k = 0; k < np; ++k)
        for (size_t i = pieces[k].first; i < pieces[k].first + pieces[k].second; ++i)
          times.timeline[k].bytes += ins[i].size();
      if (!tl_start) check(cudaEventCreate(&tl_start), "zstd GPU: cudaEventCreate");
      check(cudaEventRecord(tl_start, sets[0].stream), "zstd GPU: cudaEventRecord");
    }
    // 3 pieces queued behind the one waited for: on the H100, 1 GiB in 128 MiB
    // pieces ran at 26.3 GB/s with 3, 24.8 with 2, and 2 beat 1 by 15-40%.
    constexpr size_t lag = kSets - 2;
    for (size_t k = 0; k < np + lag + 1; ++k) {
      if (k < np) {
        sets[k % kSets].piece = k;
        start(sets[k % kSets], ins, pieces[k].first, pieces[k].second);
      }
      if (k >= lag && k - lag < np) drain(sets[(k - lag) % kSets], outs, sizes);
      if (k >= lag + 1 && k - lag - 1 < np) finish(sets[(k - lag - 1) % kSets], outs, sizes);
    }
    times.pieces = np;
  }
};
static_assert(GpuCompressor::kSets >= 3, "start, drain (kSets - 2 behind) and finish work on different sets");

GpuCompressor::GpuCompressor(unsigned host_threads) : impl_(std::make_unique<Impl>(host_threads)) {}
GpuCompressor::~GpuCompressor() = default;
const GpuCompressor::Times& GpuCompressor::times() const { return impl_->times; }
void GpuCompressor::set_piece_bytes(uint64_t bytes) { impl_->piece_bytes = std::max<uint64_t>(bytes, 1); }
void GpuCompressor::inject_fault_once() { impl_->fault = true; }
void GpuCompressor::set_timeline(bool on) { impl_->timeline = on; }

void GpuCompressor::compress(std::span<const std::span<const uint8_t>> ins, std::span<const std::span<uint8_t>> outs,
                             std::span<size_t> sizes) {
  if (outs.size() != ins.size() || sizes.size() != ins.size())
    throw std::invalid_argument("GpuCompressor::compress: ins, outs and sizes differ in length");
  const auto t0 = Clock::now();
  Impl& m = *impl_;
  m.times = Times{};
  m.t_call = t0;
  try {
    m.compress(ins, outs, sizes);
  } catch (...) {
    m.sync_all();  // nothing of this call still in flight: the caller may rerun the jobs elsewhere
    m.times.total = since(t0);
    throw;
  }
  m.times.total = since(t0);
}

}  // namespace gpo::zstd::entropy
