// zstd stage 2 on the GPU: the blocks of a batch entropy-coded in parallel by
// the portable block encoder (zstd_entropy_block.h, the CPU reference's code),
// then frames assembled: sizes per input, a prefix sum, headers and a copy of
// every block into place. No host work per byte; the host only plans buffers.
#include <cub/block/block_scan.cuh>
#include <cub/device/device_scan.cuh>
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/common/cuda_buffers.h"
#include "kernels/zstd/zstd_entropy_block.h"
#include "kernels/zstd/zstd_entropy.h"
#include "kernels/zstd/zstd_entropy_steps_gpu.cuh"

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
                                const InputInfo* inputs, uint8_t* lits, uint32_t* ofv, uint8_t* slots,
                                uint32_t* block_sizes) {
  const uint32_t b = blockIdx.x * blockDim.x + threadIdx.x;
  if (b >= nblocks) return;
  const BlockDesc bd = blocks[b];
  const enc::BlockScratch ws{lits + bd.src, ofv + bd.seq_first};
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

// ---- The parallel path: per block, literals by a CTA (kLitThreads), the
// sequences section by a warp, both as the steps of zstd_entropy_steps.h
// (GPO_HD, or cooperative in zstd_entropy_steps_gpu.cuh), then sizes, prefix
// sums and one copy into place. Decisions and bits are the same as
// enc::encode_block's (the GPU test checks it byte for byte).

using enc::kLitThreads;
constexpr uint64_t kHufStride = enc::kMaxBlock + 64;  // per-block stream scratch (4-byte aligned)

// Optional phase timing (GPO_ZSTD_ENC_PHASES=1 in the environment): thread 0
// of every CTA adds the clock cycles of each phase; ~GpuEncoder prints the
// averages. Off: one flag read per CTA.
__device__ int d_phase_on;
__device__ unsigned long long d_phase_sum[8], d_phase_cnt[8];
#define GPO_PHASE(k)                                                 \
  if (phase_on && threadIdx.x == 0) {                                \
    const long long t_ = clock64();                                  \
    atomicAdd(&d_phase_sum[k], (unsigned long long)(t_ - t_phase));  \
    atomicAdd(&d_phase_cnt[k], 1ull);                                \
    t_phase = t_;                                                    \
  }
constexpr const char* kPhaseNames[8] = {"lit.scan", "lit.gather", "lit.plan", "lit.streams",
                                        "lit.place", "seq.pass1", "seq.tables", "seq.pass2"};

// ---- Sequences: one warp per block, the steps of enc::encode_sequences.
// Pass 1 (forward, 32 sequences at a time): offset values and code counts.
// Then lanes 0-2 choose the three streams' modes and build their FSE tables,
// lane 0 writes the header, all in shared memory. Pass 2 (backward, 32 at a
// time): the bitstream. Same bits as enc::encode_sequences.

constexpr uint32_t kSeqHdrStride = 320;                      // count, modes, up to 3 table descriptions
constexpr uint64_t kSeqBitsStride = enc::kMaxBlock + 256;    // bytes per block, multiple of 4
static_assert(kSeqHdrStride >= 3 + 1 + 3 * enc::kSeqTableDescMax);

// The sequences section of block blockIdx.x: its header (count, modes, table
// descriptions) at hdr_all + kSeqHdrStride * b (hdr_sizes[b] bytes), its
// bitstream at bits_all + kSeqBitsStride * b; seq_sizes[b] = the section's
// size, 0 when it does not fit the block (len bytes).
__global__ void __launch_bounds__(32) k_sequences(const BlockDesc* blocks, const Sequence* seqs, uint32_t* ofv_all,
                                                  uint8_t* hdr_all, uint32_t* bits_all, uint32_t* hdr_sizes,
                                                  uint32_t* seq_sizes) {
  __shared__ enc::SeqShared sh;
  const uint32_t b = blockIdx.x, lane = threadIdx.x;
  const BlockDesc bd = blocks[b];
  const uint32_t nseq = bd.seq_count, len = bd.len;
  const Sequence* S = seqs + bd.seq_first;
  uint32_t* OV = ofv_all + bd.seq_first;
  uint8_t* hdr_out = hdr_all + uint64_t(kSeqHdrStride) * b;
  uint32_t* words = bits_all + (kSeqBitsStride / 4) * uint64_t(b);
  const int phase_on = d_phase_on;
  long long t_phase = phase_on ? clock64() : 0;
  if (nseq == 0) {  // as enc::encode_sequences (the block is raw anyway: all literals)
    if (lane == 0) {
      hdr_out[0] = 0;
      hdr_sizes[b] = 1;
      seq_sizes[b] = len >= 4 ? 1 : 0;
    }
    return;
  }
  enc::seq_values_and_counts_warp(S, nseq, bd.pos == 0, OV, sh.cnt, lane);
  GPO_PHASE(5);
  if (lane < 3) {
    const int w = int(lane);  // LL, OF, ML
    sh.plan[w] = enc::build_seq_table(w, sh.cnt[w], nseq, sh.norm[w], sh.desc[w], sh.ct[w], sh.build[w]);
  }
  __syncwarp();
  uint32_t hdr_size = 0;
  if (lane == 0) {
    hdr_size = enc::write_seq_header(hdr_out, kSeqHdrStride, nseq, sh.plan, sh.desc);
    hdr_sizes[b] = hdr_size;
  }
  hdr_size = __shfl_sync(enc::kFullWarp, hdr_size, 0);
  GPO_PHASE(6);
  const uint32_t stream_bytes =
      enc::seq_bitstream_warp(S, OV, nseq, sh.ct, sh.ring, words, uint32_t(kSeqBitsStride / 4), lane);
  if (lane == 0) {
    const uint64_t size = uint64_t(hdr_size) + stream_bytes;
    seq_sizes[b] = size <= len ? uint32_t(size) : 0;
  }
  GPO_PHASE(7);
}

// The literals section of block blockIdx.x at slot + 3, the steps of
// enc::encode_literals by the CTA; lit_sizes[b] = its size, or 0 when the
// block will be raw whatever (too few matched bytes).
__global__ void __launch_bounds__(kLitThreads, 4) k_literals(const uint8_t* in, const BlockDesc* blocks,
                                                          const Sequence* seqs,
                                                          uint8_t* lits_all, uint8_t* huf_scratch, uint8_t* slots,
                                                          uint32_t* lit_sizes) {
  __shared__ enc::LitScan::TempStorage scan_tmp;
  __shared__ enc::LitShared sh;
  const uint32_t b = blockIdx.x, tid = threadIdx.x;
  const BlockDesc bd = blocks[b];
  const uint32_t nseq = bd.seq_count, len = bd.len;
  const Sequence* S = seqs + bd.seq_first;
  const uint8_t* src = in + bd.src;
  uint8_t* lits = lits_all + bd.src;
  uint8_t* out = slots + bd.src + 3 * uint64_t(b) + 3;
  const int phase_on = d_phase_on;
  long long t_phase = phase_on ? clock64() : 0;

  // 1. Literal positions: a bit per source byte.
  const uint64_t tot = enc::mark_sequence_literals_cta(S, nseq, sh.g.bitmap, scan_tmp, sh.carry);
  GPO_PHASE(0);
  const uint32_t covered = uint32_t(tot), nl = uint32_t(tot >> 32) + (len - covered);
  if (enc::too_many_literals(nl, len)) {  // a raw block
    if (tid == 0) lit_sizes[b] = 0;
    return;
  }
  enc::mark_trailing_literals_cta(sh.g.bitmap, covered, len);

  // 2. The literals in order, and their histogram.
  enc::gather_literals_cta(src, len, sh.g.bitmap, lits, sh.g.hist, sh.warp_lits, sh.h);
  GPO_PHASE(1);

  // 3. The Huffman plan (table, weights' description, mode), on symbols
  // ranked in parallel. The CTA-parallel plan: on the H100 the literals
  // kernel took 3.0 ms for 256 MiB with it, 3.6 ms with enc::plan_literals
  // on one thread.
  enc::rank_symbols_cta(sh.h, sh.order);
  enc::plan_literals_cta(nl, sh.h, sh.order, sh.t, sh.tree, sh.cta_plan, sh.tree_ws, sh.plan, sh.plan_sc);
  GPO_PHASE(2);
  const enc::LitPlan plan = sh.plan;
  if (plan.mode == enc::LitMode::kRle) {
    if (tid == 0) lit_sizes[b] = uint32_t(enc::rle_literals(uint8_t(plan.rle_sym), nl, out));
    return;
  }
  if (plan.mode == enc::LitMode::kHuffman && nl < 256) {  // one small stream: one thread, as on the CPU
    if (tid == 0) lit_sizes[b] = uint32_t(enc::encode_planned_literals(plan, sh.t, sh.tree, lits, nl, out));
    return;
  }

  // 4. Four streams bit-packed into the block's scratch, 5. then into place
  // behind the head; raw literals when they do not fit.
  uint8_t* streams = huf_scratch + kHufStride * b;
  if (plan.mode == enc::LitMode::kHuffman &&
      enc::huf_pack_streams_cta(sh.t, lits, nl, plan.cap - plan.tree - 6, reinterpret_cast<uint32_t*>(streams),
                                sh.warp_bits, sh.stream_bytes, sh.stream_off, sh.ok)) {
    GPO_PHASE(3);
    const uint32_t size = enc::place_huf_literals_cta(out, plan, sh.tree, nl, streams, sh.stream_bytes, sh.stream_off);
    if (tid == 0) lit_sizes[b] = size;
    GPO_PHASE(4);
    return;
  }
  const size_t h = enc::lit_plain_header(out, 0, nl);  // every thread: same bytes, cheap
  enc::cta_copy(out + h, lits, nl);
  if (tid == 0) lit_sizes[b] = uint32_t(h + nl);
}

// Final block sizes (and the raw decision) exactly as enc::encode_block.
__device__ inline bool block_is_raw(uint32_t ls, uint32_t ss, uint32_t len) {
  return ls == 0 || ss == 0 || ss > len - ls || ls + ss >= len;
}
__global__ void k_block_sizes(const BlockDesc* blocks, uint32_t nblocks, const uint32_t* lit_sizes,
                              const uint32_t* seq_sizes, uint32_t* block_sizes) {
  const uint32_t b = blockIdx.x * blockDim.x + threadIdx.x;
  if (b >= nblocks) return;
  const uint32_t len = blocks[b].len, ls = lit_sizes[b], ss = seq_sizes[b];
  block_sizes[b] = block_is_raw(ls, ss, len) ? 3 + len : 3 + ls + ss;
}

// One CTA per block: block header, then the literals and sequences sections
// (or the raw bytes) straight into the frame.
__global__ void k_assemble_split(const uint8_t* in, const BlockDesc* blocks, const InputInfo* inputs,
                                 const uint8_t* slots, const uint8_t* seq_hdr, const uint32_t* seq_hdr_sizes,
                                 const uint32_t* seq_bits, const uint32_t* lit_sizes, const uint32_t* seq_sizes,
                                 const uint64_t* block_dst, const uint64_t* offsets, uint8_t* out) {
  const uint32_t b = blockIdx.x;
  const BlockDesc bd = blocks[b];
  uint8_t* d = out + offsets[bd.input] + block_dst[b];
  const uint32_t len = bd.len, ls = lit_sizes[b], ss = seq_sizes[b];
  const bool last = uint64_t(bd.pos) + len == inputs[bd.input].size;
  if (block_is_raw(ls, ss, len)) {
    if (threadIdx.x == 0) enc::write_block_header(d, last, 0, len);
    enc::cta_copy(d + 3, in + bd.src, len);
    return;
  }
  if (threadIdx.x == 0) enc::write_block_header(d, last, 2, ls + ss);
  enc::cta_copy(d + 3, slots + bd.src + 3 * uint64_t(b) + 3, ls);
  const uint32_t hs = seq_hdr_sizes[b];
  enc::cta_copy(d + 3 + ls, seq_hdr + uint64_t(kSeqHdrStride) * b, hs);
  enc::cta_copy(d + 3 + ls + hs, reinterpret_cast<const uint8_t*>(seq_bits) + kSeqBitsStride * b, ss - hs);
}


}  // namespace

struct GpuEncoder::Impl {
  cuda::DevBuf<uint8_t> lits, slots, out, cub_tmp, seq_hdr, huf;
  cuda::DevBuf<uint32_t> ofv, block_sizes, lit_sizes, seq_sizes, seq_hdr_sizes, seq_bits;
  bool one_thread = false;
  cuda::DevBuf<uint64_t> block_dst, frame_sizes, offsets;
  cuda::DevBuf<InputInfo> inputs;
  std::vector<InputInfo> h_inputs;
  // The sequences kernel (a warp per block, latency-bound) runs on a side
  // stream next to the literals kernel.
  cudaStream_t side = nullptr;
  cudaEvent_t fork = nullptr, join = nullptr;
  // Optional split of the time (bench): start, literals done, sequences done, end.
  bool profile = false;
  cudaEvent_t prof[4] = {};
  ~Impl() {
    for (cudaEvent_t ev : prof)
      if (ev) cudaEventDestroy(ev);
    if (side) cudaStreamDestroy(side);
    if (fork) cudaEventDestroy(fork);
    if (join) cudaEventDestroy(join);
  }
};

GpuEncoder::GpuEncoder() : impl_(std::make_unique<Impl>()) {
  const char* env = std::getenv("GPO_ZSTD_ENC_PHASES");
  if (env && *env == '1') {
    const int on = 1;
    cudaMemcpyToSymbol(d_phase_on, &on, sizeof(on));
  }
}
GpuEncoder::~GpuEncoder() {
  const char* env = std::getenv("GPO_ZSTD_ENC_PHASES");
  if (!env || *env != '1') return;
  unsigned long long sum[8] = {}, cnt[8] = {};
  if (cudaDeviceSynchronize() != cudaSuccess || cudaMemcpyFromSymbol(sum, d_phase_sum, sizeof(sum)) != cudaSuccess ||
      cudaMemcpyFromSymbol(cnt, d_phase_cnt, sizeof(cnt)) != cudaSuccess)
    return;
  if (cnt[0] == 0 && cnt[5] == 0) return;
  std::fprintf(stderr, "zstd stage 2 phases, clock cycles per block (blocks that got there):");
  for (int k = 0; k < 8; ++k)
    std::fprintf(stderr, " %s %.0f (%llu)", kPhaseNames[k], cnt[k] ? double(sum[k]) / double(cnt[k]) : 0.0, cnt[k]);
  std::fprintf(stderr, "\n");
  const unsigned long long zero[8] = {};
  cudaMemcpyToSymbol(d_phase_sum, zero, sizeof(zero));
  cudaMemcpyToSymbol(d_phase_cnt, zero, sizeof(zero));
}
uint8_t* GpuEncoder::d_out() const { return impl_->out.data(); }
const uint64_t* GpuEncoder::d_offsets() const { return impl_->offsets.data(); }
size_t GpuEncoder::out_capacity() const { return impl_->out.size(); }
void GpuEncoder::set_one_thread_per_block(bool on) { impl_->one_thread = on; }
void GpuEncoder::set_profile(bool on) {
  impl_->profile = on;
  for (cudaEvent_t& ev : impl_->prof)
    if (on && !ev) cudaEventCreate(&ev);
}
GpuEncoder::Split GpuEncoder::last_split() const {
  Split sp;
  const Impl& m = *impl_;
  if (!m.profile || !m.prof[0] || cudaEventSynchronize(m.prof[3]) != cudaSuccess) return sp;
  cudaEventElapsedTime(&sp.literals_ms, m.prof[0], m.prof[1]);
  cudaEventElapsedTime(&sp.sequences_ms, m.prof[0], m.prof[2]);
  cudaEventElapsedTime(&sp.total_ms, m.prof[0], m.prof[3]);
  return sp;
}

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
      (e = m.ofv.ensure(seq_slots)) || (e = m.block_sizes.ensure(nblocks)) ||
      (e = m.block_dst.ensure(nblocks)) || (e = m.frame_sizes.ensure(ninputs + 1)) ||
      (e = m.offsets.ensure(ninputs + 1)) || (e = m.inputs.ensure(ninputs)) || (e = m.out.ensure(out_cap)))
    return int(e);
  size_t tmp = 0;
  cub::DeviceScan::ExclusiveSum(nullptr, tmp, m.frame_sizes.data(), m.offsets.data(), ninputs + 1, stream);
  if ((e = m.cub_tmp.ensure(tmp))) return int(e);
  if (ninputs &&
      (e = cudaMemcpyAsync(m.inputs.data(), m.h_inputs.data(), ninputs * sizeof(InputInfo), cudaMemcpyHostToDevice, stream)))
    return int(e);
  if (nblocks && m.one_thread) {
    k_encode_blocks<<<nblocks, 1, 0, stream>>>(d_in, d_blocks, nblocks, d_seqs, m.inputs.data(), m.lits.data(),
                                                            m.ofv.data(), m.slots.data(), m.block_sizes.data());
  } else if (nblocks) {
    if ((e = m.seq_hdr.ensure(uint64_t(kSeqHdrStride) * nblocks)) ||
        (e = m.seq_bits.ensure(kSeqBitsStride / 4 * nblocks)) || (e = m.seq_hdr_sizes.ensure(nblocks)) ||
        (e = m.huf.ensure(kHufStride * nblocks)) ||
        (e = m.lit_sizes.ensure(nblocks)) || (e = m.seq_sizes.ensure(nblocks)))
      return int(e);
    if (!m.side && ((e = cudaStreamCreateWithFlags(&m.side, cudaStreamNonBlocking)) ||
                    (e = cudaEventCreateWithFlags(&m.fork, cudaEventDisableTiming)) ||
                    (e = cudaEventCreateWithFlags(&m.join, cudaEventDisableTiming))))
      return int(e);
    if (m.profile) cudaEventRecord(m.prof[0], stream);
    if ((e = cudaEventRecord(m.fork, stream)) || (e = cudaStreamWaitEvent(m.side, m.fork, 0))) return int(e);
    k_sequences<<<nblocks, 32, 0, m.side>>>(d_blocks, d_seqs, m.ofv.data(), m.seq_hdr.data(), m.seq_bits.data(),
                                            m.seq_hdr_sizes.data(), m.seq_sizes.data());
    k_literals<<<nblocks, kLitThreads, 0, stream>>>(d_in, d_blocks, d_seqs, m.lits.data(), m.huf.data(), m.slots.data(),
                                                     m.lit_sizes.data());
    if (m.profile) {
      cudaEventRecord(m.prof[1], stream);
      cudaEventRecord(m.prof[2], m.side);
    }
    if ((e = cudaEventRecord(m.join, m.side)) || (e = cudaStreamWaitEvent(stream, m.join, 0))) return int(e);
    k_block_sizes<<<(nblocks + 127) / 128, 128, 0, stream>>>(d_blocks, nblocks, m.lit_sizes.data(), m.seq_sizes.data(),
                                                             m.block_sizes.data());
  }
  k_frame_sizes<<<(ninputs + 1 + 127) / 128, 128, 0, stream>>>(m.inputs.data(), ninputs, m.block_sizes.data(), m.block_dst.data(),
                                                               m.frame_sizes.data(), kWindowLog);
  cub::DeviceScan::ExclusiveSum(m.cub_tmp.data(), tmp, m.frame_sizes.data(), m.offsets.data(), ninputs + 1, stream);
  if (ninputs) k_headers<<<(ninputs + 127) / 128, 128, 0, stream>>>(m.inputs.data(), ninputs, m.offsets.data(), m.out.data(), kWindowLog);
  if (nblocks && m.one_thread)
    k_assemble<<<nblocks, 256, 0, stream>>>(d_blocks, m.slots.data(), m.block_sizes.data(), m.block_dst.data(), m.offsets.data(), m.out.data());
  else if (nblocks)
    k_assemble_split<<<nblocks, 256, 0, stream>>>(d_in, d_blocks, m.inputs.data(), m.slots.data(), m.seq_hdr.data(),
                                                  m.seq_hdr_sizes.data(), m.seq_bits.data(), m.lit_sizes.data(), m.seq_sizes.data(),
                                                  m.block_dst.data(), m.offsets.data(), m.out.data());
  if (m.profile && !m.one_thread && nblocks) cudaEventRecord(m.prof[3], stream);
  return int(cudaGetLastError());
}

}  // namespace gpo::zstd::entropy
