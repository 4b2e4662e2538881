// zstd stage 2 on the GPU: the blocks of a batch entropy-coded in parallel by
// the portable block encoder (zstd_block_encode.h, the CPU reference's code),
// then frames assembled: sizes per input, a prefix sum, headers and a copy of
// every block into place. No host work per byte; the host only plans buffers.
#include <cub/block/block_scan.cuh>
#include <cub/device/device_scan.cuh>
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <stdexcept>
#include <string>
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

// ---- The parallel path: per block, literals by a CTA (kLitThreads), the
// sequences section by one thread (FSE runs backwards, one symbol at a time),
// then sizes, prefix sums and one copy into place. Decisions and bits are the
// same as enc::encode_block's (the GPU test checks it byte for byte).

constexpr int kLitThreads = 256;
constexpr int kLitWarps = kLitThreads / 32;
constexpr uint64_t kHufStride = enc::kMaxBlock + 64;  // per-block stream scratch (4-byte aligned)

// Sequences section of every block (one thread each) into sscratch at src.
__global__ void k_sequences(const BlockDesc* blocks, uint32_t nblocks, const Sequence* seqs, uint32_t* ofv,
                            uint8_t* codes, uint8_t* sscratch, uint32_t* seq_sizes) {
  const uint32_t b = blockIdx.x * blockDim.x + threadIdx.x;
  if (b >= nblocks) return;
  const BlockDesc bd = blocks[b];
  uint32_t* ov = ofv + bd.seq_first;
  enc::offset_values(seqs + bd.seq_first, bd.seq_count, bd.pos == 0, ov);
  seq_sizes[b] = uint32_t(enc::encode_sequences(seqs + bd.seq_first, ov, bd.seq_count,
                                                codes + 3 * uint64_t(bd.seq_first), sscratch + bd.src, bd.len));
}

struct LitShared {
  uint32_t hist[kLitWarps][256];
  uint32_t h[256];
  uint32_t bits[kLitThreads];
  enc::HufTable t;
  uint8_t tree[160];
  uint8_t order[256];
  enc::LitPlan plan;
  uint64_t carry;
  uint32_t stream_bytes[4];
  uint32_t stream_off[4];  // 4-byte aligned offsets in the block's stream scratch
  int ok;
};

// The literals section of block blockIdx.x at slot + 3; lit_sizes[b] = its
// size, or 0 when the block will be raw whatever (too few matched bytes).
__global__ void __launch_bounds__(kLitThreads) k_literals(const uint8_t* in, const BlockDesc* blocks,
                                                          const Sequence* seqs, uint32_t* lp, uint32_t* sp,
                                                          uint8_t* lits_all, uint8_t* huf_scratch, uint8_t* slots,
                                                          uint32_t* lit_sizes) {
  using Scan = cub::BlockScan<uint64_t, kLitThreads>;
  __shared__ typename Scan::TempStorage scan_tmp;
  __shared__ LitShared sh;
  const uint32_t b = blockIdx.x, tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const BlockDesc bd = blocks[b];
  const uint32_t nseq = bd.seq_count, len = bd.len;
  const Sequence* S = seqs + bd.seq_first;
  uint32_t* LP = lp + bd.seq_first + b;  // literals before sequence i (nseq + 1 entries)
  uint32_t* SP = sp + bd.seq_first + b;  // source bytes before sequence i
  const uint8_t* src = in + bd.src;
  uint8_t* lits = lits_all + bd.src;
  uint8_t* out = slots + bd.src + 3 * uint64_t(b) + 3;

  // 1. Prefix sums of (lit_len, lit_len + match_len), packed in one 64-bit sum.
  if (tid == 0) sh.carry = 0;
  __syncthreads();
  constexpr uint32_t kItems = 4;
  for (uint32_t base = 0; base < nseq; base += kLitThreads * kItems) {
    uint64_t v[kItems];
    for (uint32_t k = 0; k < kItems; ++k) {
      const uint32_t i = base + tid * kItems + k;
      v[k] = i < nseq ? (uint64_t(S[i].lit_len) << 32) | (S[i].lit_len + S[i].match_len) : 0;
    }
    uint64_t agg;
    Scan(scan_tmp).ExclusiveSum(v, v, agg);
    const uint64_t c = sh.carry;
    for (uint32_t k = 0; k < kItems; ++k) {
      const uint32_t i = base + tid * kItems + k;
      if (i < nseq) {
        LP[i] = uint32_t((c + v[k]) >> 32);
        SP[i] = uint32_t(c + v[k]);
      }
    }
    __syncthreads();
    if (tid == 0) sh.carry = c + agg;
    __syncthreads();
  }
  const uint64_t tot = sh.carry;
  if (tid == 0) {
    LP[nseq] = uint32_t(tot >> 32);
    SP[nseq] = uint32_t(tot);
  }
  const uint32_t nl = uint32_t(tot >> 32) + (len - uint32_t(tot));
  if (size_t(nl) + 3 + 4 >= len) {  // enc::encode_block's first test: raw block
    if (tid == 0) lit_sizes[b] = 0;
    return;
  }
  for (uint32_t k = tid; k < kLitWarps * 256; k += kLitThreads) (&sh.hist[0][0])[k] = 0;
  __syncthreads();

  // 2. Gather: each warp a contiguous range of literals, lanes on neighbours.
  {
    const uint32_t per = (nl + kLitWarps - 1) / kLitWarps;
    const uint32_t q0 = warp * per, q1 = min(nl, q0 + per);
    if (q0 + lane < q1) {
      uint32_t q = q0 + lane;
      uint32_t lo = 0, hi = nseq;  // largest i with LP[i] <= q
      while (lo < hi) {
        const uint32_t mid = (lo + hi + 1) / 2;
        if (LP[mid] <= q) lo = mid; else hi = mid - 1;
      }
      uint32_t i = lo;
      for (; q < q1; q += 32) {
        while (i < nseq && LP[i + 1] <= q) ++i;
        const uint8_t c = src[SP[i] + (q - LP[i])];
        lits[q] = c;
        atomicAdd(&sh.hist[warp][c], 1u);
      }
    }
  }
  __syncthreads();
  {
    uint32_t h = 0;
    for (int w = 0; w < kLitWarps; ++w) h += sh.hist[w][tid];
    sh.h[tid] = h;
  }
  __syncthreads();

  // 3. Symbols ranked by (count, symbol) in parallel, so the Huffman build
  // (one thread) does not sort; then the decisions, same code as the CPU.
  {
    const uint32_t my = sh.h[tid];
    if (my) {
      uint32_t rank = 0;
      for (uint32_t s = 0; s < 256; ++s) {
        const uint32_t o = sh.h[s];
        rank += (o != 0) & ((o < my) | ((o == my) & (s < tid)));
      }
      sh.order[rank] = uint8_t(tid);
    }
  }
  __syncthreads();
  if (tid == 0) sh.plan = enc::plan_literals(nl, sh.h, sh.t, sh.tree, sh.order);
  __syncthreads();
  const enc::LitPlan plan = sh.plan;
  if (plan.mode == enc::LitMode::kRle) {
    if (tid == 0) {
      const size_t h = enc::lit_plain_header(out, 1, nl);
      out[h] = uint8_t(plan.rle_sym);
      lit_sizes[b] = uint32_t(h + 1);
    }
    return;
  }
  bool raw = plan.mode == enc::LitMode::kRaw;
  if (!raw && nl < 256) {  // one small stream: one thread, as on the CPU
    if (tid == 0) lit_sizes[b] = uint32_t(enc::encode_literals(lits, nl, sh.h, out));
    return;
  }
  if (!raw) {
    // 4. Four streams, 64 threads each: bit counts, then each thread's bits at
    // its offset (symbols go in last first, so later chunks come first).
    const uint32_t seg = (nl + 3) / 4, k = tid / 64, j = tid % 64;
    const uint32_t a = k * seg, e = k == 3 ? nl : (k + 1) * seg;
    const uint32_t per = (e - a + 63) / 64;
    const uint32_t c0 = min(e, a + j * per), c1 = min(e, c0 + per);
    uint32_t nb = 0;
    for (uint32_t q = c0; q < c1; ++q) nb += sh.t.len[lits[q]];
    sh.bits[tid] = nb;
    __syncthreads();
    if (tid == 0) {
      size_t used = plan.tree + 6;
      uint32_t off = 0;
      sh.ok = 1;
      for (uint32_t s = 0; s < 4; ++s) {
        uint32_t tb = 0;
        for (uint32_t x = 0; x < 64; ++x) tb += sh.bits[64 * s + x];
        const uint32_t bytes = tb / 8 + 1;  // with the end mark
        if (bytes > plan.cap - used) sh.ok = 0;
        used += bytes;
        sh.stream_bytes[s] = bytes;
        sh.stream_off[s] = off;
        off += (bytes + 3) & ~3u;
      }
    }
    __syncthreads();
    raw = !sh.ok;
    if (!raw) {
      uint32_t* words = reinterpret_cast<uint32_t*>(huf_scratch + kHufStride * b);
      const uint32_t nwords = (sh.stream_off[3] + sh.stream_bytes[3] + 3) / 4;
      for (uint32_t w = tid; w < nwords; w += kLitThreads) words[w] = 0;
      __syncthreads();
      uint32_t start = 0;  // bits of this stream's later chunks
      for (uint32_t x = j + 1; x < 64; ++x) start += sh.bits[64 * k + x];
      uint32_t* sw = words + sh.stream_off[k] / 4;
      uint32_t w = start >> 5, nacc = start & 31;
      uint64_t acc = 0;
      bool first = true;
      for (uint32_t q = c1; q-- > c0;) {
        const uint8_t s = lits[q];
        acc |= uint64_t(sh.t.code[s]) << nacc;
        nacc += sh.t.len[s];
        if (nacc >= 32) {
          if (first) atomicOr(sw + w, uint32_t(acc)); else sw[w] = uint32_t(acc);
          first = false;
          ++w;
          acc >>= 32;
          nacc -= 32;
        }
      }
      if (j == 0) {  // the stream's first literal is written last: end mark
        acc |= uint64_t(1) << nacc;
        nacc += 1;
      }
      if (nacc > 0) atomicOr(sw + w, uint32_t(acc));
      __syncthreads();
      // 5. Into place: header, tree, jump table, streams.
      const uint8_t* sb = huf_scratch + kHufStride * b;
      uint8_t* op = out + plan.lh + plan.tree + 6;
      uint32_t dst = 0;
      for (uint32_t s = 0; s < 4; ++s) {
        for (uint32_t x = tid; x < sh.stream_bytes[s]; x += kLitThreads) op[dst + x] = sb[sh.stream_off[s] + x];
        dst += sh.stream_bytes[s];
      }
      if (tid == 0) {
        for (size_t x = 0; x < plan.tree; ++x) out[plan.lh + x] = sh.tree[x];
        for (uint32_t s = 0; s < 3; ++s) enc::put_le16(out + plan.lh + plan.tree + 2 * s, sh.stream_bytes[s]);
        const uint32_t cs = uint32_t(plan.tree + 6 + dst);
        enc::huf_lit_header(out, nl, cs);
        lit_sizes[b] = uint32_t(plan.lh + cs);
      }
      return;
    }
  }
  // Raw literals.
  const size_t h = enc::lit_plain_header(out, 0, nl);  // every thread: same bytes, cheap
  for (uint32_t q = tid; q < nl; q += kLitThreads) out[h + q] = lits[q];
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
                                 const uint8_t* slots, const uint8_t* sscratch, const uint32_t* lit_sizes,
                                 const uint32_t* seq_sizes, const uint64_t* block_dst, const uint64_t* offsets,
                                 uint8_t* out) {
  const uint32_t b = blockIdx.x;
  const BlockDesc bd = blocks[b];
  uint8_t* d = out + offsets[bd.input] + block_dst[b];
  const uint32_t len = bd.len, ls = lit_sizes[b], ss = seq_sizes[b];
  const bool last = uint64_t(bd.pos) + len == inputs[bd.input].size;
  if (block_is_raw(ls, ss, len)) {
    if (threadIdx.x == 0) enc::write_block_header(d, last, 0, len);
    const uint8_t* s = in + bd.src;
    for (uint32_t k = threadIdx.x; k < len; k += blockDim.x) d[3 + k] = s[k];
    return;
  }
  if (threadIdx.x == 0) enc::write_block_header(d, last, 2, ls + ss);
  const uint8_t* l = slots + bd.src + 3 * uint64_t(b) + 3;
  for (uint32_t k = threadIdx.x; k < ls; k += blockDim.x) d[3 + k] = l[k];
  const uint8_t* q = sscratch + bd.src;
  for (uint32_t k = threadIdx.x; k < ss; k += blockDim.x) d[3 + ls + k] = q[k];
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
  DevBuf<uint8_t> lits, codes, slots, out, cub_tmp, sscratch, huf;
  DevBuf<uint32_t> ofv, block_sizes, lp, sp, lit_sizes, seq_sizes;
  bool one_thread = false;
  DevBuf<uint64_t> block_dst, frame_sizes, offsets;
  DevBuf<InputInfo> inputs;
  std::vector<InputInfo> h_inputs;
  // The sequences kernel (one thread per block, latency-bound) runs on a side
  // stream next to the literals kernel (bandwidth-bound).
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

GpuEncoder::GpuEncoder() : impl_(std::make_unique<Impl>()) {}
GpuEncoder::~GpuEncoder() = default;
uint8_t* GpuEncoder::d_out() const { return impl_->out.p; }
const uint64_t* GpuEncoder::d_offsets() const { return impl_->offsets.p; }
size_t GpuEncoder::out_capacity() const { return impl_->out.n; }
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
  if (nblocks && m.one_thread) {
    k_encode_blocks<<<nblocks, 1, 0, stream>>>(d_in, d_blocks, nblocks, d_seqs, m.inputs.p, m.lits.p,
                                                            m.ofv.p, m.codes.p, m.slots.p, m.block_sizes.p);
  } else if (nblocks) {
    if ((e = m.sscratch.ensure(in_extent)) || (e = m.huf.ensure(kHufStride * nblocks)) ||
        (e = m.lp.ensure(seq_slots + nblocks)) || (e = m.sp.ensure(seq_slots + nblocks)) ||
        (e = m.lit_sizes.ensure(nblocks)) || (e = m.seq_sizes.ensure(nblocks)))
      return int(e);
    if (!m.side && ((e = cudaStreamCreateWithFlags(&m.side, cudaStreamNonBlocking)) ||
                    (e = cudaEventCreateWithFlags(&m.fork, cudaEventDisableTiming)) ||
                    (e = cudaEventCreateWithFlags(&m.join, cudaEventDisableTiming))))
      return int(e);
    if (m.profile) cudaEventRecord(m.prof[0], stream);
    if ((e = cudaEventRecord(m.fork, stream)) || (e = cudaStreamWaitEvent(m.side, m.fork, 0))) return int(e);
    // One thread per CTA: the 32 lanes of a warp would each run a different
    // block's sequential loop, diverging; alone, each block gets its own warp.
    k_sequences<<<nblocks, 1, 0, m.side>>>(d_blocks, nblocks, d_seqs, m.ofv.p, m.codes.p, m.sscratch.p,
                                           m.seq_sizes.p);
    k_literals<<<nblocks, kLitThreads, 0, stream>>>(d_in, d_blocks, d_seqs, m.lp.p, m.sp.p, m.lits.p, m.huf.p,
                                                    m.slots.p, m.lit_sizes.p);
    if (m.profile) {
      cudaEventRecord(m.prof[1], stream);
      cudaEventRecord(m.prof[2], m.side);
    }
    if ((e = cudaEventRecord(m.join, m.side)) || (e = cudaStreamWaitEvent(stream, m.join, 0))) return int(e);
    k_block_sizes<<<(nblocks + 127) / 128, 128, 0, stream>>>(d_blocks, nblocks, m.lit_sizes.p, m.seq_sizes.p,
                                                             m.block_sizes.p);
  }
  k_frame_sizes<<<(ninputs + 1 + 127) / 128, 128, 0, stream>>>(m.inputs.p, ninputs, m.block_sizes.p, m.block_dst.p,
                                                               m.frame_sizes.p, kWindowLog);
  cub::DeviceScan::ExclusiveSum(m.cub_tmp.p, tmp, m.frame_sizes.p, m.offsets.p, ninputs + 1, stream);
  if (ninputs) k_headers<<<(ninputs + 127) / 128, 128, 0, stream>>>(m.inputs.p, ninputs, m.offsets.p, m.out.p, kWindowLog);
  if (nblocks && m.one_thread)
    k_assemble<<<nblocks, 256, 0, stream>>>(d_blocks, m.slots.p, m.block_sizes.p, m.block_dst.p, m.offsets.p, m.out.p);
  else if (nblocks)
    k_assemble_split<<<nblocks, 256, 0, stream>>>(d_in, d_blocks, m.inputs.p, m.slots.p, m.sscratch.p, m.lit_sizes.p,
                                                  m.seq_sizes.p, m.block_dst.p, m.offsets.p, m.out.p);
  if (m.profile && !m.one_thread && nblocks) cudaEventRecord(m.prof[3], stream);
  return int(cudaGetLastError());
}

}  // namespace gpo::zstd::entropy
