// Stage 1 end to end (zstd_find.h, Pipeline): inputs to the device, one launch
// of the match finder over all blocks, sequences compacted and copied back,
// then libzstd entropy-codes each input on CPU threads from those sequences.
#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <stdexcept>
#include <string>
#include <thread>

#include "kernels/common/cuda_buffers.h"
#include "kernels/zstd/zstd_find.h"

namespace gpo::zstd::gpu {
namespace {

using cuda::check;

// One batch (or piece of a batch) in flight: its device and pinned buffers,
// the block plan and, after collect(), the finder's output.
struct Set {
  cudaStream_t s = nullptr;
  cudaEvent_t ev[5] = {};
  // Grow-only: a batch reuses the last one's.
  cuda::DevBuf<uint8_t> d_in;
  cuda::DevBuf<BlockDesc> d_blocks;
  cuda::DevBuf<Sequence> d_slots, d_dense;
  cuda::DevBuf<uint32_t> d_first;
  cuda::DevBuf<unsigned long long> d_total;
  cuda::PinnedBuf<BlockDesc> h_blocks;
  cuda::PinnedBuf<uint32_t> h_first;
  cuda::PinnedBuf<unsigned long long> h_total;
  cuda::PinnedBuf<Sequence> h_seqs;
  std::vector<BlockDesc> blocks;      // host plan, then the finder's output
  std::vector<uint32_t> first_block;  // per input + 1: input i's blocks are [first_block[i], first_block[i + 1])
  const Sequence* seqs = nullptr;     // pinned, dense; blocks[].seq_first index it
  size_t nseqs = 0;
  uint32_t nb = 0;

  Set() {
    check(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), "cudaStreamCreate");
    for (auto& e : ev) check(cudaEventCreate(&e), "cudaEventCreate");
  }
  ~Set() {
    for (auto& e : ev) cudaEventDestroy(e);
    cudaStreamDestroy(s);
  }

  // Enqueues the copies in, the finder, the compaction and the small copies back.
  void launch(std::span<const std::span<const uint8_t>> ins) {
    const size_t n = ins.size();
    // Device layout: inputs adjacent in host memory stay adjacent (one copy);
    // others start 256-byte aligned.
    std::vector<uint64_t> sizes(n), offs(n);
    struct Copy {
      const uint8_t* host;
      uint64_t dev, len;
    };
    std::vector<Copy> copies;
    uint64_t total = 0;
    for (size_t i = 0; i < n; ++i) {
      sizes[i] = ins[i].size();
      if (ins[i].empty()) {
        offs[i] = total;
        continue;
      }
      if (!copies.empty() && copies.back().host + copies.back().len == ins[i].data()) {
        offs[i] = copies.back().dev + copies.back().len;
        copies.back().len += ins[i].size();
      } else {
        offs[i] = (total + 255) / 256 * 256;
        copies.push_back({ins[i].data(), offs[i], ins[i].size()});
      }
      total = offs[i] + ins[i].size();
    }
    blocks.clear();
    first_block.assign(n + 1, 0);
    for (size_t i = 0; i < n; ++i) {
      first_block[i] = uint32_t(blocks.size());
      plan_blocks({&sizes[i], 1}, {&offs[i], 1}, blocks);
      for (size_t k = first_block[i]; k < blocks.size(); ++k) blocks[k].input = uint32_t(i);
    }
    first_block[n] = uint32_t(blocks.size());
    nb = uint32_t(blocks.size());
    const uint64_t slots = nb ? blocks.back().seq_first + seq_capacity(blocks.back().len) : 0;

    uint8_t* din = d_in.get(total + 16);
    auto* dblk = d_blocks.get(nb);
    auto* dslots = d_slots.get(slots);
    auto* ddense = d_dense.get(slots);
    auto* dfirst = d_first.get(nb);
    auto* dtotal = d_total.get(1);
    auto* hblk = h_blocks.get(nb);
    auto* hfirst = h_first.get(nb);
    auto* htotal = h_total.get(1);
    if (nb) std::memcpy(hblk, blocks.data(), nb * sizeof(BlockDesc));

    check(cudaEventRecord(ev[0], s), "cudaEventRecord");
    for (auto& c : copies) check(cudaMemcpyAsync(din + c.dev, c.host, c.len, cudaMemcpyHostToDevice, s), "copy inputs");
    check(cudaMemcpyAsync(dblk, hblk, nb * sizeof(BlockDesc), cudaMemcpyHostToDevice, s), "copy blocks");
    check(cudaMemsetAsync(dtotal, 0, sizeof(unsigned long long), s), "cudaMemset");
    check(cudaEventRecord(ev[1], s), "cudaEventRecord");
    check(enqueue_find(din, dblk, nb, dslots, s), "zstd match finder");
    check(cudaEventRecord(ev[2], s), "cudaEventRecord");
    check(enqueue_compact(dblk, nb, dslots, ddense, dfirst, dtotal, s), "zstd sequence compaction");
    check(cudaMemcpyAsync(hblk, dblk, nb * sizeof(BlockDesc), cudaMemcpyDeviceToHost, s), "copy blocks back");
    check(cudaMemcpyAsync(hfirst, dfirst, nb * sizeof(uint32_t), cudaMemcpyDeviceToHost, s), "copy block index");
    check(cudaMemcpyAsync(htotal, dtotal, sizeof(unsigned long long), cudaMemcpyDeviceToHost, s), "copy count");
    check(cudaEventRecord(ev[3], s), "cudaEventRecord");
  }

  // Waits for launch(), copies the dense sequences back; adds the GPU times.
  void collect(Pipeline::Times& t) {
    check(cudaEventSynchronize(ev[3]), "zstd match finder batch");
    const auto* hblk = h_blocks.data();
    const auto* hfirst = h_first.data();
    nseqs = nb ? size_t(*h_total.data()) : 0;
    auto* hseqs = h_seqs.get(nseqs);
    check(cudaMemcpyAsync(hseqs, d_dense.data(), nseqs * sizeof(Sequence), cudaMemcpyDeviceToHost, s), "copy sequences");
    check(cudaEventRecord(ev[4], s), "cudaEventRecord");
    check(cudaEventSynchronize(ev[4]), "copy sequences");
    for (uint32_t i = 0; i < nb; ++i) {
      blocks[i] = hblk[i];
      blocks[i].seq_first = hfirst[i];
    }
    seqs = hseqs;
    float ms = 0;
    cudaEventElapsedTime(&ms, ev[0], ev[1]);
    t.copy_in += ms / 1e3;
    cudaEventElapsedTime(&ms, ev[1], ev[2]);
    t.find += ms / 1e3;
    cudaEventElapsedTime(&ms, ev[2], ev[4]);
    t.copy_out += ms / 1e3;
  }
};

}  // namespace

struct Pipeline::Impl {
  unsigned threads;
  Set sets[2];  // piece k on sets[k % 2]: the GPU finds piece k + 1 while the CPU codes piece k
  explicit Impl(unsigned t) : threads(t ? t : std::max(1u, std::thread::hardware_concurrency())) {}

  // CPU threads code the inputs of one collected set.
  void entropy(const Set& set, std::span<const std::span<const uint8_t>> ins, std::span<const std::span<uint8_t>> outs,
               std::span<const int> levels, size_t level_base, std::span<size_t> sizes, std::atomic<unsigned>& fb) {
    std::atomic<size_t> next{0};
    auto work = [&] {
      for (size_t i; (i = next.fetch_add(1)) < ins.size();) {
        std::span<const BlockDesc> b(set.blocks.data() + set.first_block[i], set.first_block[i + 1] - set.first_block[i]);
        bool err = false;
        unsigned f = 0;
        const int level = levels.size() == 1 ? levels[0] : levels[level_base + i];
        sizes[i] = compress_with_sequences(ins[i], b, set.seqs, outs[i], level, &err, &f);
        if (err) sizes[i] = 0;
        fb += f;
      }
    };
    const unsigned nt = unsigned(std::min<size_t>(threads, ins.size()));
    std::vector<std::thread> pool;
    for (unsigned k = 1; k < nt; ++k) pool.emplace_back(work);
    work();
    for (auto& th : pool) th.join();
  }
};

Pipeline::Pipeline(unsigned cpu_threads) : impl_(new Impl(cpu_threads)) {}
Pipeline::~Pipeline() { delete impl_; }

void Pipeline::find(std::span<const std::span<const uint8_t>> ins, Found& out) {
  times_ = {};
  Set& set = impl_->sets[0];
  set.launch(ins);
  set.collect(times_);
  out.blocks = set.blocks;
  out.seqs.assign(set.seqs, set.seqs + set.nseqs);
}

void Pipeline::compress(std::span<const std::span<const uint8_t>> ins, std::span<const std::span<uint8_t>> outs,
                        std::span<const int> levels, std::span<size_t> sizes, unsigned* fallbacks) {
  times_ = {};
  // Pieces of about an eighth of the batch (at least kMinPiece): the first
  // piece's GPU time and the last one's CPU time are all that do not overlap.
  constexpr uint64_t kMinPiece = 16 << 20;
  uint64_t total = 0;
  for (auto& i : ins) total += i.size();
  const uint64_t target = std::max<uint64_t>(kMinPiece, total / 8);
  std::vector<size_t> cut{0};
  for (size_t i = 0, acc = 0; i < ins.size(); ++i) {
    acc += ins[i].size();
    if (acc >= target && i + 1 < ins.size()) {
      cut.push_back(i + 1);
      acc = 0;
    }
  }
  cut.push_back(ins.size());
  const size_t pieces = cut.size() - 1;
  std::atomic<unsigned> fb{0};
  auto piece = [&](size_t k) { return ins.subspan(cut[k], cut[k + 1] - cut[k]); };
  try {
    impl_->sets[0].launch(piece(0));
    for (size_t k = 0; k < pieces; ++k) {
      Set& set = impl_->sets[k % 2];
      set.collect(times_);
      if (k + 1 < pieces) impl_->sets[(k + 1) % 2].launch(piece(k + 1));
      const auto t0 = std::chrono::steady_clock::now();
      impl_->entropy(set, piece(k), outs.subspan(cut[k], cut[k + 1] - cut[k]), levels, cut[k],
                     sizes.subspan(cut[k], cut[k + 1] - cut[k]), fb);
      times_.entropy += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    }
  } catch (...) {
    // Nothing of this batch may still be in flight when the caller retries on the CPU.
    for (auto& set : impl_->sets) cudaStreamSynchronize(set.s);
    throw;
  }
  if (fallbacks) *fallbacks = fb;
}

}  // namespace gpo::zstd::gpu
