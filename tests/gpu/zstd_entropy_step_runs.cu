// Test kernels that run the stage 2 kernels' device steps one after the
// other, as k_sequences and k_literals do, and keep what each step made
// (zstd_entropy_step_runs.h).
#include "gpu/zstd_entropy_step_runs.h"

#include <cuda_runtime.h>

#include <algorithm>

#include "kernels/common/cuda_buffers.h"
#include "kernels/common/cuda_check.h"
#include "kernels/zstd/zstd_entropy_steps_gpu.cuh"

namespace gpo::test::zstd_steps {

namespace {

using cuda::DevBuf;

constexpr uint32_t kSeqHeaderRoom = 320;
constexpr uint32_t kSeqBitsWords = (enc::kMaxBlock + 256) / 4;
constexpr uint64_t kLitStride = enc::kMaxBlock + 64;  // per block: streams, or a section 3 bytes in

struct SeqOut {
  uint32_t cnt[3][enc::kFseMaxSymbols];
  enc::SeqStreamPlan plan[3];
  enc::FseCTable ct[3];
  uint8_t header[kSeqHeaderRoom];
  uint32_t header_size, stream_bytes;
};

struct PlanOut {
  uint8_t order[256];
  enc::LitPlan plan;
  enc::HufTable table;
  uint8_t tree[160];
};

struct LitOut {
  uint32_t nl;
  uint32_t hist[256];
  PlanOut planned;
  uint32_t packed, section_size;
};

struct HufPartsOut {
  uint8_t depth[512];
  uint32_t maxd;
  enc::HufTable table;
  unsigned long long bits;
};

struct PackOut {
  uint32_t fits;
  uint32_t stream_bytes[4], stream_off[4];
};

__global__ void __launch_bounds__(32) k_sequence_steps(const BlockDesc* blocks, const Sequence* seqs, uint32_t* ofv,
                                                       SeqOut* out, uint32_t* words, uint32_t* ran) {
  __shared__ enc::SeqShared sh;
  const uint32_t b = blockIdx.x, lane = threadIdx.x;
  const BlockDesc bd = blocks[b];
  const uint32_t nseq = bd.seq_count;
  const Sequence* s = seqs + bd.seq_first;
  uint32_t* ov = ofv + bd.seq_first;
  SeqOut& o = out[b];
  if (nseq > 0) {  // as k_sequences, which writes an empty block's section itself
    enc::seq_values_and_counts_warp(s, nseq, bd.pos == 0, ov, sh.cnt, lane);
    for (uint32_t k = lane; k < 3 * enc::kFseMaxSymbols; k += 32) (&o.cnt[0][0])[k] = (&sh.cnt[0][0])[k];
    if (lane < 3) {
      const int w = int(lane);
      sh.plan[w] = enc::build_seq_table(w, sh.cnt[w], nseq, sh.norm[w], sh.desc[w], sh.ct[w], sh.build[w]);
    }
    __syncwarp();
    if (lane < 3) {
      o.plan[lane] = sh.plan[lane];
      o.ct[lane] = sh.ct[lane];
    }
    if (lane == 0) o.header_size = enc::write_seq_header(o.header, kSeqHeaderRoom, nseq, sh.plan, sh.desc);
    const uint32_t bytes =
        enc::seq_bitstream_warp(s, ov, nseq, sh.ct, sh.ring, words + uint64_t(kSeqBitsWords) * b, kSeqBitsWords, lane);
    if (lane == 0) o.stream_bytes = bytes;
  }
  if (lane == 0) atomicAdd(ran, 1u);
}

// A plan in shared memory (the literals kernel's) into o, every thread.
__device__ void save_plan(const enc::LitShared& sh, PlanOut& o) {
  const uint32_t tid = threadIdx.x;
  o.order[tid] = sh.order[tid];
  o.table.len[tid] = sh.t.len[tid];
  o.table.code[tid] = sh.t.code[tid];
  if (tid < sizeof(o.tree)) o.tree[tid] = sh.tree[tid];
  if (tid == 0) {
    o.plan = sh.plan;
    o.table.max_bits = sh.t.max_bits;
    o.table.last_sym = sh.t.last_sym;
  }
}

// k_literals' steps, all of them whatever the block: positions, gather,
// ranks, plan, and with four Huffman streams their packing and placement.
__global__ void __launch_bounds__(enc::kLitThreads) k_literal_steps(const uint8_t* in, const BlockDesc* blocks,
                                                                    const Sequence* seqs, uint32_t* bitmaps,
                                                                    uint8_t* lits_all, uint8_t* streams_all,
                                                                    uint8_t* sections, LitOut* out, uint32_t* ran) {
  __shared__ enc::LitScan::TempStorage scan_tmp;
  __shared__ enc::LitShared sh;
  const uint32_t b = blockIdx.x, tid = threadIdx.x;
  const BlockDesc bd = blocks[b];
  const uint32_t len = bd.len;
  uint8_t* lits = lits_all + bd.src;
  LitOut& o = out[b];
  const uint64_t tot = enc::mark_sequence_literals_cta(seqs + bd.seq_first, bd.seq_count, sh.g.bitmap, scan_tmp, sh.carry);
  const uint32_t covered = uint32_t(tot), nl = uint32_t(tot >> 32) + (len - covered);
  enc::mark_trailing_literals_cta(sh.g.bitmap, covered, len);
  for (uint32_t w = tid; w < enc::kBitmapWords; w += enc::kLitThreads)
    bitmaps[uint64_t(enc::kBitmapWords) * b + w] = sh.g.bitmap[w];
  enc::gather_literals_cta(in + bd.src, len, sh.g.bitmap, lits, sh.g.hist, sh.warp_lits, sh.h);
  o.hist[tid] = sh.h[tid];
  enc::rank_symbols_cta(sh.h, sh.order);
  enc::plan_literals_cta(nl, sh.h, sh.order, sh.t, sh.tree, sh.cta_plan, sh.tree_ws, sh.plan, sh.plan_sc);
  save_plan(sh, o.planned);
  const enc::LitPlan plan = sh.plan;
  bool packed = false;
  if (plan.mode == enc::LitMode::kHuffman && nl >= 256) {
    uint8_t* streams = streams_all + kLitStride * b;
    packed = enc::huf_pack_streams_cta(sh.t, lits, nl, plan.cap - plan.tree - 6, reinterpret_cast<uint32_t*>(streams),
                                       sh.warp_bits, sh.stream_bytes, sh.stream_off, sh.ok);
    if (packed) {
      // 3 bytes in: the kernel's sections start unaligned too.
      const uint32_t size = enc::place_huf_literals_cta(sections + kLitStride * b + 3, plan, sh.tree, nl, streams,
                                                        sh.stream_bytes, sh.stream_off);
      if (tid == 0) o.section_size = size;
    }
  }
  if (tid == 0) {
    o.nl = nl;
    o.packed = packed;
    atomicAdd(ran, 1u);
  }
}

__global__ void __launch_bounds__(enc::kLitThreads) k_plan_steps(const uint32_t* hists, const uint32_t* nls,
                                                                 PlanOut* out, uint32_t* ran) {
  __shared__ enc::LitShared sh;
  const uint32_t b = blockIdx.x, tid = threadIdx.x;
  sh.h[tid] = hists[256 * b + tid];
  __syncthreads();
  enc::rank_symbols_cta(sh.h, sh.order);
  enc::plan_literals_cta(nls[b], sh.h, sh.order, sh.t, sh.tree, sh.cta_plan, sh.tree_ws, sh.plan, sh.plan_sc);
  save_plan(sh, out[b]);
  if (tid == 0) atomicAdd(ran, 1u);
}

__global__ void __launch_bounds__(enc::kLitThreads) k_huf_parts(const uint16_t* parent, uint32_t n,
                                                                const enc::HufTable* lengths, const uint32_t* hist,
                                                                HufPartsOut* out, uint32_t* ran) {
  __shared__ enc::HufCtaScratch hs;
  __shared__ enc::HufTable t;
  __shared__ uint32_t h[256];
  __shared__ uint32_t maxd;
  __shared__ unsigned long long bits;
  const uint32_t tid = threadIdx.x, nodes = 2 * n - 1;
  for (uint32_t i = tid; i < nodes; i += enc::kLitThreads) hs.parent[i] = parent[i];
  t.len[tid] = lengths->len[tid];
  t.code[tid] = 0;
  h[tid] = hist[tid];
  if (tid == 0) {
    t.max_bits = lengths->max_bits;
    bits = 0;
  }
  __syncthreads();
  const uint32_t deepest = enc::huf_depths_cta(hs.parent, n, hs.anc, hs.depth, maxd);
  for (uint32_t i = tid; i < nodes; i += enc::kLitThreads) out->depth[i] = hs.depth[i];
  enc::huf_canonical_codes_cta(t, h, hs, bits);
  out->table.len[tid] = t.len[tid];
  out->table.code[tid] = t.code[tid];
  if (tid == 0) {
    out->maxd = deepest;
    out->table.max_bits = t.max_bits;
    out->bits = bits;
    atomicAdd(ran, 1u);
  }
}

__global__ void __launch_bounds__(enc::kLitThreads) k_pack_streams(const enc::HufTable* table, const uint8_t* lits,
                                                                   uint32_t nl, uint64_t cap, uint32_t* words,
                                                                   PackOut* out, uint32_t* ran) {
  __shared__ enc::HufTable t;
  __shared__ uint32_t warp_bits[enc::kLitWarps], stream_bytes[4], stream_off[4];
  __shared__ int ok;
  const uint32_t tid = threadIdx.x;
  t.len[tid] = table->len[tid];
  t.code[tid] = table->code[tid];
  __syncthreads();
  const bool fits = enc::huf_pack_streams_cta(t, lits, nl, cap, words, warp_bits, stream_bytes, stream_off, ok);
  if (tid == 0) {
    out->fits = fits;
    for (uint32_t k = 0; k < 4; ++k) {
      out->stream_bytes[k] = stream_bytes[k];
      out->stream_off[k] = stream_off[k];
    }
    atomicAdd(ran, 1u);
  }
}

template <typename T>
T* upload(DevBuf<T>& buf, const T* p, size_t n, size_t extra = 0) {
  T* d = buf.get(n + extra);
  if (n) cuda::check(cudaMemcpy(d, p, n * sizeof(T), cudaMemcpyHostToDevice), "cudaMemcpy to the device");
  return d;
}

template <typename T>
std::vector<T> download(const T* d, size_t n) {
  std::vector<T> v(n);
  if (n) cuda::check(cudaMemcpy(v.data(), d, n * sizeof(T), cudaMemcpyDeviceToHost), "cudaMemcpy from the device");
  return v;
}

// A zeroed counter of finished CTAs.
uint32_t* ran_counter(DevBuf<uint32_t>& buf) {
  uint32_t* d = buf.get(1);
  cuda::check(cudaMemset(d, 0, sizeof(uint32_t)), "cudaMemset");
  return d;
}

// Waits for the test kernel; its CTAs that reached the end.
uint32_t finish(const uint32_t* d_ran) {
  cuda::check(cudaGetLastError(), "test kernel launch");
  cuda::check(cudaDeviceSynchronize(), "test kernel");
  return download(d_ran, 1)[0];
}

PlanSteps plan_steps(const PlanOut& o, const uint32_t* hist) {
  PlanSteps p;
  const size_t present = size_t(std::count_if(hist, hist + 256, [](uint32_t c) { return c != 0; }));
  p.order.assign(o.order, o.order + present);
  p.plan = o.plan;
  p.table = o.table;
  if (o.plan.mode == enc::LitMode::kHuffman) p.tree.assign(o.tree, o.tree + o.plan.tree);
  return p;
}

}  // namespace

std::vector<SeqSteps> run_sequence_steps(const std::vector<BlockDesc>& blocks, const std::vector<Sequence>& seqs,
                                         uint32_t* ran) {
  const uint32_t nb = uint32_t(blocks.size());
  std::vector<SeqSteps> r(nb);
  *ran = 0;
  if (nb == 0) return r;
  DevBuf<BlockDesc> d_blocks;
  DevBuf<Sequence> d_seqs;
  DevBuf<uint32_t> d_ofv, d_words, d_ran;
  DevBuf<SeqOut> d_out;
  const BlockDesc* pb = upload(d_blocks, blocks.data(), nb);
  const Sequence* ps = upload(d_seqs, seqs.data(), seqs.size());
  uint32_t* counter = ran_counter(d_ran);
  k_sequence_steps<<<nb, 32>>>(pb, ps, d_ofv.get(seqs.size()), d_out.get(nb), d_words.get(uint64_t(kSeqBitsWords) * nb),
                               counter);
  *ran = finish(counter);
  const std::vector<SeqOut> out = download(d_out.data(), nb);
  const std::vector<uint32_t> ofv = download(d_ofv.data(), seqs.size());
  const std::vector<uint32_t> words = download(d_words.data(), uint64_t(kSeqBitsWords) * nb);
  for (uint32_t b = 0; b < nb; ++b) {
    const BlockDesc& bd = blocks[b];
    const SeqOut& o = out[b];
    SeqSteps& s = r[b];
    if (bd.seq_count == 0) continue;
    s.ofv.assign(ofv.begin() + bd.seq_first, ofv.begin() + bd.seq_first + bd.seq_count);
    std::copy(&o.cnt[0][0], &o.cnt[0][0] + 3 * enc::kFseMaxSymbols, &s.cnt[0][0]);
    std::copy(o.plan, o.plan + 3, s.plan);
    std::copy(o.ct, o.ct + 3, s.ct);
    s.header.assign(o.header, o.header + std::min(o.header_size, kSeqHeaderRoom));
    const uint8_t* bits = reinterpret_cast<const uint8_t*>(words.data() + uint64_t(kSeqBitsWords) * b);
    s.bitstream.assign(bits, bits + std::min<uint32_t>(o.stream_bytes, kSeqBitsWords * 4));
  }
  return r;
}

std::vector<LitSteps> run_literal_steps(const std::vector<BlockDesc>& blocks, const std::vector<Sequence>& seqs,
                                        const std::vector<uint8_t>& data, uint32_t misalign, uint32_t* ran) {
  const uint32_t nb = uint32_t(blocks.size());
  std::vector<LitSteps> r(nb);
  *ran = 0;
  if (nb == 0) return r;
  DevBuf<BlockDesc> d_blocks;
  DevBuf<Sequence> d_seqs;
  DevBuf<uint8_t> d_data, d_lits, d_streams, d_sections;
  DevBuf<uint32_t> d_bitmaps, d_ran;
  DevBuf<LitOut> d_out;
  uint8_t* base = d_data.get(misalign + data.size() + 64);
  cuda::check(cudaMemcpy(base + misalign, data.data(), data.size(), cudaMemcpyHostToDevice), "cudaMemcpy to the device");
  const BlockDesc* pb = upload(d_blocks, blocks.data(), nb);
  const Sequence* ps = upload(d_seqs, seqs.data(), seqs.size(), 1);
  uint32_t* counter = ran_counter(d_ran);
  k_literal_steps<<<nb, enc::kLitThreads>>>(base + misalign, pb, ps, d_bitmaps.get(uint64_t(enc::kBitmapWords) * nb),
                                            d_lits.get(data.size() + 64), d_streams.get(kLitStride * nb),
                                            d_sections.get(kLitStride * nb), d_out.get(nb), counter);
  *ran = finish(counter);
  const std::vector<LitOut> out = download(d_out.data(), nb);
  const std::vector<uint32_t> bitmaps = download(d_bitmaps.data(), uint64_t(enc::kBitmapWords) * nb);
  const std::vector<uint8_t> lits = download(d_lits.data(), data.size());
  const std::vector<uint8_t> sections = download(d_sections.data(), kLitStride * nb);
  for (uint32_t b = 0; b < nb; ++b) {
    const BlockDesc& bd = blocks[b];
    const LitOut& o = out[b];
    LitSteps& s = r[b];
    const auto bm = bitmaps.begin() + long(uint64_t(enc::kBitmapWords) * b);
    s.bitmap.assign(bm, bm + (bd.len + 31) / 32);
    s.nl = o.nl;
    s.lits.assign(lits.begin() + long(bd.src), lits.begin() + long(bd.src + std::min(o.nl, bd.len)));
    s.hist.assign(o.hist, o.hist + 256);
    s.planned = plan_steps(o.planned, o.hist);
    s.packed = o.packed != 0;
    if (s.packed) {
      const auto sec = sections.begin() + long(kLitStride * b + 3);
      s.section.assign(sec, sec + std::min<uint64_t>(o.section_size, kLitStride - 3));
    }
  }
  return r;
}

std::vector<PlanSteps> run_plan_steps(const std::vector<std::vector<uint32_t>>& hists,
                                      const std::vector<uint32_t>& nls, uint32_t* ran) {
  const uint32_t n = uint32_t(hists.size());
  std::vector<PlanSteps> r;
  *ran = 0;
  if (n == 0) return r;
  std::vector<uint32_t> flat;
  for (const auto& h : hists) flat.insert(flat.end(), h.begin(), h.end());
  DevBuf<uint32_t> d_hists, d_nls, d_ran;
  DevBuf<PlanOut> d_out;
  const uint32_t* ph = upload(d_hists, flat.data(), flat.size());
  const uint32_t* pn = upload(d_nls, nls.data(), nls.size());
  uint32_t* counter = ran_counter(d_ran);
  k_plan_steps<<<n, enc::kLitThreads>>>(ph, pn, d_out.get(n), counter);
  *ran = finish(counter);
  const std::vector<PlanOut> out = download(d_out.data(), n);
  for (uint32_t i = 0; i < n; ++i) r.push_back(plan_steps(out[i], hists[i].data()));
  return r;
}

HufParts run_huf_parts(const std::vector<uint16_t>& parent, uint32_t n, const enc::HufTable& lengths,
                       const std::vector<uint32_t>& hist, uint32_t* ran) {
  DevBuf<uint16_t> d_parent;
  DevBuf<enc::HufTable> d_lengths;
  DevBuf<uint32_t> d_hist, d_ran;
  DevBuf<HufPartsOut> d_out;
  const uint16_t* pp = upload(d_parent, parent.data(), parent.size());
  const enc::HufTable* pl = upload(d_lengths, &lengths, 1);
  const uint32_t* ph = upload(d_hist, hist.data(), hist.size());
  uint32_t* counter = ran_counter(d_ran);
  k_huf_parts<<<1, enc::kLitThreads>>>(pp, n, pl, ph, d_out.get(1), counter);
  *ran = finish(counter);
  const HufPartsOut o = download(d_out.data(), 1)[0];
  HufParts r;
  r.depth.assign(o.depth, o.depth + 2 * n - 1);
  r.maxd = o.maxd;
  r.table = o.table;
  r.bits = o.bits;
  return r;
}

Packed run_pack_streams(const enc::HufTable& t, const std::vector<uint8_t>& lits, size_t cap, uint32_t* ran) {
  const uint32_t nl = uint32_t(lits.size());
  DevBuf<enc::HufTable> d_table;
  DevBuf<uint8_t> d_lits;
  DevBuf<uint32_t> d_words, d_ran;
  DevBuf<PackOut> d_out;
  const enc::HufTable* pt = upload(d_table, &t, 1);
  const uint8_t* pl = upload(d_lits, lits.data(), lits.size(), 64);
  const size_t nwords = (nl + 64) / 4 + 16;  // room for streams of up to 11 bits a literal, 4-byte aligned
  uint32_t* counter = ran_counter(d_ran);
  k_pack_streams<<<1, enc::kLitThreads>>>(pt, pl, nl, cap, d_words.get(3 * nwords), d_out.get(1), counter);
  *ran = finish(counter);
  const PackOut o = download(d_out.data(), 1)[0];
  Packed r{o.fits != 0, {}, {}};
  if (!r.fits) return r;
  const std::vector<uint32_t> words = download(d_words.data(), 3 * nwords);
  const uint8_t* bytes = reinterpret_cast<const uint8_t*>(words.data());
  for (uint32_t k = 0; k < 4; ++k) {
    r.sizes[k] = o.stream_bytes[k];
    r.streams.insert(r.streams.end(), bytes + o.stream_off[k], bytes + o.stream_off[k] + o.stream_bytes[k]);
  }
  return r;
}

}  // namespace gpo::test::zstd_steps
