// zstd stage 2 on the GPU: the blocks of a batch entropy-coded in parallel by
// the portable block encoder (zstd_block_encode.h, the CPU reference's code),
// then frames assembled: sizes per input, a prefix sum, headers and a copy of
// every block into place. No host work per byte; the host only plans buffers.
#include <cub/device/device_scan.cuh>
#include <cuda_runtime.h>

#include <algorithm>
#include <vector>

#include "zstd/zstd_block_encode.h"
#include "zstd/zstd_entropy.h"

namespace gpo::zstd::entropy {

namespace {

// Per-input facts the kernels need (built on the host from the input sizes).
struct InputInfo {
  uint64_t size;
  uint32_t first_block;
  uint32_t nblocks;
};

// One thread per block: the whole block through the portable encoder into its
// slot (len + 3 bytes at src + 3 * b of the slot buffer).
__global__ void k_encode_blocks(const uint8_t* in, const BlockDesc* blocks, uint32_t nblocks, const Sequence* seqs,
                                const InputInfo* inputs, uint8_t* lits, uint32_t* ofv, uint8_t* codes, uint8_t* slots,
                                uint32_t* block_sizes) {
  const uint32_t b = blockIdx.x * blockDim.x + threadIdx.x;
  if (b >= nblocks) return;
  const BlockDesc bd = blocks[b];
  const enc::BlockScratch ws{lits + bd.src, ofv + bd.seq_first, codes + 3 * uint64_t(bd.seq_first)};
  const bool last = uint64_t(bd.pos) + bd.len == inputs[bd.input].size;
  block_sizes[b] = uint32_t(enc::encode_block(in + bd.src, bd.len, seqs + bd.seq_first, bd.seq_count, bd.pos == 0,
                                              last, ws, slots + bd.src + 3 * uint64_t(b)));
}

// One thread per input: its frame size and where each of its blocks goes.
__global__ void k_frame_sizes(const InputInfo* inputs, uint32_t ninputs, const uint32_t* block_sizes,
                              uint64_t* block_dst, uint64_t* frame_sizes, uint32_t window_log) {
  const uint32_t i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i > ninputs) return;
  if (i == ninputs) {  // the scan's extra element: offsets[ninputs] = total
    frame_sizes[i] = 0;
    return;
  }
  const InputInfo in = inputs[i];
  uint8_t hdr[enc::kFrameHeaderMax];
  uint64_t p = enc::write_frame_header(hdr, in.size, window_log);
  for (uint32_t k = 0; k < in.nblocks; ++k) {
    block_dst[in.first_block + k] = p;
    p += block_sizes[in.first_block + k];
  }
  frame_sizes[i] = p + (in.nblocks == 0 ? 3 : 0);
}

__global__ void k_headers(const InputInfo* inputs, uint32_t ninputs, const uint64_t* offsets, uint8_t* out,
                          uint32_t window_log) {
  const uint32_t i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= ninputs) return;
  uint8_t* o = out + offsets[i];
  const size_t h = enc::write_frame_header(o, inputs[i].size, window_log);
  if (inputs[i].nblocks == 0) enc::write_block_header(o + h, true, 0, 0);
}

// One CTA per block: its slot copied into the frame.
__global__ void k_assemble(const BlockDesc* blocks, const uint8_t* slots, const uint32_t* block_sizes,
                           const uint64_t* block_dst, const uint64_t* offsets, uint8_t* out) {
  const uint32_t b = blockIdx.x;
  const BlockDesc bd = blocks[b];
  const uint8_t* s = slots + bd.src + 3 * uint64_t(b);
  uint8_t* d = out + offsets[bd.input] + block_dst[b];
  const uint32_t n = block_sizes[b];
  for (uint32_t k = threadIdx.x; k < n; k += blockDim.x) d[k] = s[k];
}

template <typename T>
struct DevBuf {
  T* p = nullptr;
  size_t n = 0;
  cudaError_t ensure(size_t want) {
    if (want <= n) return cudaSuccess;
    if (p) cudaFree(p);
    p = nullptr;
    n = 0;
    const cudaError_t e = cudaMalloc(&p, std::max<size_t>(want, 1) * sizeof(T));
    if (e == cudaSuccess) n = want;
    return e;
  }
  ~DevBuf() {
    if (p) cudaFree(p);
  }
};

}  // namespace

struct GpuEncoder::Impl {
  DevBuf<uint8_t> lits, codes, slots, out, cub_tmp;
  DevBuf<uint32_t> ofv, block_sizes;
  DevBuf<uint64_t> block_dst, frame_sizes, offsets;
  DevBuf<InputInfo> inputs;
  std::vector<InputInfo> h_inputs;
};

GpuEncoder::GpuEncoder() : impl_(std::make_unique<Impl>()) {}
GpuEncoder::~GpuEncoder() = default;
uint8_t* GpuEncoder::d_out() const { return impl_->out.p; }
const uint64_t* GpuEncoder::d_offsets() const { return impl_->offsets.p; }
size_t GpuEncoder::out_capacity() const { return impl_->out.n; }

int GpuEncoder::encode(const uint8_t* d_in, uint64_t in_extent, const BlockDesc* d_blocks, uint32_t nblocks,
                       const Sequence* d_seqs, uint64_t seq_slots, std::span<const uint64_t> input_sizes,
                       void* stream_v) {
  Impl& m = *impl_;
  cudaStream_t stream = static_cast<cudaStream_t>(stream_v);
  const uint32_t ninputs = uint32_t(input_sizes.size());
  // Blocks follow plan_blocks: input by input, ceil(size / kBlockBytes) each.
  m.h_inputs.resize(ninputs);
  uint32_t fb = 0;
  size_t out_cap = 0;
  for (uint32_t i = 0; i < ninputs; ++i) {
    const uint64_t n = input_sizes[i];
    const uint32_t nb = uint32_t((n + gpu::kBlockBytes - 1) / gpu::kBlockBytes);
    m.h_inputs[i] = {n, fb, nb};
    fb += nb;
    out_cap += enc::frame_bound(n);
  }
  if (fb != nblocks) return int(cudaErrorInvalidValue);
  cudaError_t e;
  if ((e = m.lits.ensure(in_extent)) || (e = m.slots.ensure(in_extent + 3 * uint64_t(nblocks))) ||
      (e = m.ofv.ensure(seq_slots)) || (e = m.codes.ensure(3 * seq_slots)) || (e = m.block_sizes.ensure(nblocks)) ||
      (e = m.block_dst.ensure(nblocks)) || (e = m.frame_sizes.ensure(ninputs + 1)) ||
      (e = m.offsets.ensure(ninputs + 1)) || (e = m.inputs.ensure(ninputs)) || (e = m.out.ensure(out_cap)))
    return int(e);
  size_t tmp = 0;
  cub::DeviceScan::ExclusiveSum(nullptr, tmp, m.frame_sizes.p, m.offsets.p, ninputs + 1, stream);
  if ((e = m.cub_tmp.ensure(tmp))) return int(e);
  if (ninputs &&
      (e = cudaMemcpyAsync(m.inputs.p, m.h_inputs.data(), ninputs * sizeof(InputInfo), cudaMemcpyHostToDevice, stream)))
    return int(e);
  if (nblocks)
    k_encode_blocks<<<(nblocks + 31) / 32, 32, 0, stream>>>(d_in, d_blocks, nblocks, d_seqs, m.inputs.p, m.lits.p,
                                                            m.ofv.p, m.codes.p, m.slots.p, m.block_sizes.p);
  k_frame_sizes<<<(ninputs + 1 + 127) / 128, 128, 0, stream>>>(m.inputs.p, ninputs, m.block_sizes.p, m.block_dst.p,
                                                               m.frame_sizes.p, kWindowLog);
  cub::DeviceScan::ExclusiveSum(m.cub_tmp.p, tmp, m.frame_sizes.p, m.offsets.p, ninputs + 1, stream);
  if (ninputs) k_headers<<<(ninputs + 127) / 128, 128, 0, stream>>>(m.inputs.p, ninputs, m.offsets.p, m.out.p, kWindowLog);
  if (nblocks)
    k_assemble<<<nblocks, 256, 0, stream>>>(d_blocks, m.slots.p, m.block_sizes.p, m.block_dst.p, m.offsets.p, m.out.p);
  return int(cudaGetLastError());
}

}  // namespace gpo::zstd::entropy
