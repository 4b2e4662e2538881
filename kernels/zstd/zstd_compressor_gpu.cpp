// zstd stages 1 + 2 on the GPU, host in, host out (GpuCompressor,
// zstd_entropy.h): host code only (g++ against cudart); the kernels are in
// zstd_gpu.cu (stage 1) and zstd_entropy_gpu.cu (stage 2).
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "cuda_buffers.h"
#include "zstd/zstd_entropy.h"
#include "zstd/zstd_gpu.h"

namespace gpo::zstd::entropy {

using cuda::DevBuf;
using cuda::PinnedBuf;

// ---- Stages 1 + 2, host in, host out, in pieces on two buffer sets: while
// the GPU runs piece k, the host takes piece k - 1's frames out and packs
// piece k + 1 in.

namespace {
void check(int e, const char* what) {
  if (e != 0) {
    const cudaError_t c = static_cast<cudaError_t>(e);
    throw std::runtime_error(std::string("zstd GPU: ") + what + " (" + cudaGetErrorName(c) + ": " +
                             cudaGetErrorString(c) + ")");
  }
}
constexpr uint64_t kPieceBytes = 256ull << 20;  // the sequences kernel is latency-bound: big pieces
}  // namespace

struct GpuCompressor::Impl {
  struct Set {
    GpuEncoder encoder;
    DevBuf<uint8_t> in;
    DevBuf<BlockDesc> blocks;
    DevBuf<Sequence> seqs;
    PinnedBuf<uint8_t> h_in, h_out;
    PinnedBuf<uint64_t> h_offs;
    std::vector<BlockDesc> h_blocks;
    std::vector<uint64_t> sizes, offsets;
    size_t first = 0, count = 0;  // the piece: inputs [first, first + count)
    cudaStream_t stream = nullptr;
  };
  Set sets[2];
  Times times;
  Impl() {
    for (Set& st : sets) check(cudaStreamCreateWithFlags(&st.stream, cudaStreamNonBlocking), "cudaStreamCreate");
  }
  ~Impl() {
    for (Set& st : sets)
      if (st.stream) cudaStreamDestroy(st.stream);
  }

  // Packs inputs [first, first + count) and queues copy in, stages 1 and 2,
  // and the copy of the frame offsets.
  void start(Set& st, std::span<const std::span<const uint8_t>> ins, size_t first, size_t count) {
    st.first = first;
    st.count = count;
    st.sizes.resize(count);
    st.offsets.resize(count);
    uint64_t extent = 0;
    for (size_t i = 0; i < count; ++i) {
      st.sizes[i] = ins[first + i].size();
      st.offsets[i] = extent;
      extent += (st.sizes[i] + 15) / 16 * 16;
    }
    st.h_blocks.clear();
    const uint64_t slots = gpu::plan_blocks(st.sizes, st.offsets, st.h_blocks);
    uint8_t* hin = st.h_in.get(extent + 16, "zstd GPU: cudaMallocHost");
    for (size_t i = 0; i < count; ++i)
      if (st.sizes[i]) std::memcpy(hin + st.offsets[i], ins[first + i].data(), st.sizes[i]);
    check(st.in.ensure(extent + 16), "cudaMalloc");  // the finder reads up to 8 bytes past the end
    check(st.blocks.ensure(st.h_blocks.size()), "cudaMalloc");
    check(st.seqs.ensure(slots), "cudaMalloc");
    check(cudaMemcpyAsync(st.in.data(), hin, extent, cudaMemcpyHostToDevice, st.stream), "copy in");
    check(cudaMemcpyAsync(st.blocks.data(), st.h_blocks.data(), st.h_blocks.size() * sizeof(BlockDesc),
                          cudaMemcpyHostToDevice, st.stream),
          "copy in");
    const uint32_t nb = uint32_t(st.h_blocks.size());
    if (nb) check(gpu::enqueue_find(st.in.data(), st.blocks.data(), nb, st.seqs.data(), st.stream), "match finder");
    check(st.encoder.encode(st.in.data(), extent, st.blocks.data(), nb, st.seqs.data(), slots, st.sizes, st.stream),
          "entropy coder");
    check(cudaMemcpyAsync(st.h_offs.get(count + 1, "zstd GPU: cudaMallocHost"), st.encoder.d_offsets(), (count + 1) * sizeof(uint64_t),
                          cudaMemcpyDeviceToHost, st.stream),
          "copy out");
  }

  // Waits for the piece, copies its frames out into outs.
  void finish(Set& st, std::span<const std::span<uint8_t>> outs, std::span<size_t> sizes) {
    check(cudaStreamSynchronize(st.stream), "kernels");
    const uint64_t* offs = st.h_offs.data();
    uint8_t* hout = st.h_out.get(offs[st.count], "zstd GPU: cudaMallocHost");
    check(cudaMemcpyAsync(hout, st.encoder.d_out(), offs[st.count], cudaMemcpyDeviceToHost, st.stream), "copy out");
    check(cudaStreamSynchronize(st.stream), "copy out");
    for (size_t i = 0; i < st.count; ++i) {
      const size_t fs = offs[i + 1] - offs[i];
      const size_t k = st.first + i;
      sizes[k] = fs <= outs[k].size() ? fs : 0;
      if (sizes[k]) std::memcpy(outs[k].data(), hout + offs[i], fs);
    }
  }
};

GpuCompressor::GpuCompressor() : impl_(std::make_unique<Impl>()) {}
GpuCompressor::~GpuCompressor() = default;
const GpuCompressor::Times& GpuCompressor::times() const { return impl_->times; }

void GpuCompressor::compress(std::span<const std::span<const uint8_t>> ins, std::span<const std::span<uint8_t>> outs,
                             std::span<size_t> sizes) {
  using Clock = std::chrono::steady_clock;
  const auto t0 = Clock::now();
  Impl& m = *impl_;
  // Pieces: consecutive inputs, about kPieceBytes each (at least one input).
  std::vector<std::pair<size_t, size_t>> pieces;
  for (size_t i = 0; i < ins.size();) {
    size_t j = i;
    uint64_t bytes = 0;
    while (j < ins.size() && (j == i || bytes + ins[j].size() <= kPieceBytes)) bytes += ins[j++].size();
    pieces.push_back({i, j - i});
    i = j;
  }
  for (size_t k = 0; k < pieces.size(); ++k) {
    m.start(m.sets[k % 2], ins, pieces[k].first, pieces[k].second);
    if (k > 0) m.finish(m.sets[(k - 1) % 2], outs, sizes);
  }
  if (!pieces.empty()) m.finish(m.sets[(pieces.size() - 1) % 2], outs, sizes);
  m.times.total = std::chrono::duration<double>(Clock::now() - t0).count();
  m.times.pieces = pieces.size();
}

}  // namespace gpo::zstd::entropy
