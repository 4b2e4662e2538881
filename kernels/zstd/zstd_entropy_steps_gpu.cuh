// The steps of zstd stage 2 that the GPU runs cooperatively (a warp or a CTA
// per block), as device functions the kernels (zstd_entropy_gpu.cu) and the
// GPU tests call. Each names its CPU twin in zstd_entropy_steps.h: the same
// contract, so a test runs the device step on a block and compares. The
// steps that are the same code on both sides are GPO_HD functions there.
#pragma once
#if !defined(__CUDACC__)
#error "device code: include from .cu files only"
#endif
#include <cstdint>

#include "kernels/common/host_device.h"
#include "kernels/zstd/zstd_entropy_block.h"

namespace gpo::zstd::enc {

inline constexpr uint32_t kFullWarp = 0xFFFFFFFFu;

// ---------------------------------------------------------- sequences

inline constexpr uint32_t kSeqRingWords = 128;  // > 32 sequences of <= 76 bits + a partial word

// ORs nb bits of v (nb <= 32) at bit p of the window; p moves past them.
__device__ inline void ring_put(uint32_t* ring, uint32_t& p, uint32_t v, uint32_t nb) {
  if (nb == 0) return;
  const uint32_t at = p;
  p += nb;
  if (nb < 32) v &= (1u << nb) - 1;
  const uint32_t w = at >> 5, sh = at & 31;
  atomicOr(ring + w, v << sh);
  if (sh + nb > 32) atomicOr(ring + w + 1, v >> (32 - sh));
}

// Writes the window's whole words (bits below `bits`, window-relative) to
// out at word wbase, keeps the partial word as word 0. Whole warp.
__device__ inline void ring_flush(uint32_t* ring, uint32_t& bits, uint32_t& wbase, uint32_t* out, uint32_t cap_words,
                                  uint32_t lane) {
  __syncwarp();
  const uint32_t nfull = bits >> 5;
  for (uint32_t k = lane; k < nfull; k += 32)
    if (wbase + k < cap_words) out[wbase + k] = ring[k];
  const uint32_t partial = ring[nfull];
  __syncwarp();
  for (uint32_t k = lane; k <= nfull && k < kSeqRingWords; k += 32) ring[k] = 0;
  __syncwarp();
  if (lane == 0) ring[0] = partial;
  __syncwarp();
  wbase += nfull;
  bits &= 31;
}

// Pass 1 of the sequences kernel, the whole warp: offset values ov[0..nseq)
// and the code counts cnt of a block's sequences s. Every lane runs the same
// repeat-offset history over 32 sequences at a time (shuffled in) and keeps
// its own sequence's value; counts by shared atomics. CPU twin:
// offset_values, then count_seq_codes.
__device__ GPO_FORCEINLINE void seq_values_and_counts_warp(const Sequence* s, uint32_t nseq, bool frame_start,
                                                           uint32_t* ov, uint32_t (*cnt)[kFseMaxSymbols],
                                                           uint32_t lane) {
  for (uint32_t k = lane; k < 3 * kFseMaxSymbols; k += 32) (&cnt[0][0])[k] = 0;
  __syncwarp();
  RepHistory h;
  h.start(frame_start);
  Sequence nxt{0, 4, 1};
  if (lane < nseq) nxt = s[lane];
  for (uint32_t base = 0; base < nseq; base += 32) {
    const uint32_t i = base + lane;
    const Sequence sq = nxt;
    if (i + 32 < nseq) nxt = s[i + 32];  // next chunk's load in flight during this one
    const uint32_t n_here = min(32u, nseq - base);
    uint32_t my = 0;
#pragma unroll 4
    for (uint32_t j = 0; j < n_here; ++j) {
      const uint32_t o = __shfl_sync(kFullWarp, sq.offset, j);
      const uint32_t l = __shfl_sync(kFullWarp, sq.lit_len, j);
      const uint32_t v = h.code(o, l > 0);
      if (lane == j) my = v;
    }
    if (i < nseq) {
      ov[i] = my;
      const SeqCodes c = seq_codes(sq, my);
      atomicAdd(&cnt[0][c.ll], 1u);
      atomicAdd(&cnt[1][c.of], 1u);
      atomicAdd(&cnt[2][c.ml], 1u);
    }
  }
  __syncwarp();
}

// Pass 2 of the sequences kernel, the whole warp: the bitstream of nseq >= 1
// sequences s with offset values ov and tables ct (LL, OF, ML), last sequence
// first, into out (whole words, at most cap_words). ring: a shared window of
// kSeqRingWords words. Each lane loads its own sequence's table entries
// first, so the walk over the three FSE state chains (on every lane) costs
// one shared load per step and stream; a warp scan of bit counts places the
// six fields of each sequence in the window, flushed as whole words. Returns
// the stream size in bytes (every lane). CPU twin: write_seq_bitstream.
__device__ GPO_FORCEINLINE uint32_t seq_bitstream_warp(const Sequence* s, const uint32_t* ov, uint32_t nseq,
                                                       const FseCTable* ct, uint32_t* ring, uint32_t* out,
                                                       uint32_t cap_words, uint32_t lane) {
  for (uint32_t k = lane; k < kSeqRingWords; k += 32) ring[k] = 0;
  __syncwarp();
  const FseCTable& ct_ll = ct[0];
  const FseCTable& ct_of = ct[1];
  const FseCTable& ct_ml = ct[2];
  const uint32_t lg_ll = ct_ll.log, lg_of = ct_of.log, lg_ml = ct_ml.log;
  uint32_t s_ll = 0, s_of = 0, s_ml = 0;  // the same on every lane
  uint32_t bits = 0, wbase = 0;           // window-relative bit count, window start (words)
  const uint32_t last = nseq - 1;
  Sequence nxt{0, 4, 1};
  uint32_t nxt_ov = 4;
  if (lane <= last) {
    nxt = s[last - lane];
    nxt_ov = ov[last - lane];
  }
  for (int32_t hi = int32_t(last); hi >= 0; hi -= 32) {
    const uint32_t n_here = min(32u, uint32_t(hi) + 1);
    const Sequence sq = nxt;
    const uint32_t v_ov = nxt_ov;
    if (int32_t(lane) <= hi - 32) {
      nxt = s[hi - 32 - int32_t(lane)];
      nxt_ov = ov[hi - 32 - int32_t(lane)];
    }
    const SeqCodes c = seq_codes(sq, v_ov);
    const uint32_t cl = c.ll, co = c.of, cm = c.ml;
    // Each lane loads its own symbols' table entries: they are off the state
    // chains, so the serial walk below is one shared load per step and stream.
    const bool in_chunk = lane < n_here;
    const uint32_t d_of = in_chunk && lg_of ? ct_of.delta_nb_bits[co] : 0;
    const uint32_t d_ml = in_chunk && lg_ml ? ct_ml.delta_nb_bits[cm] : 0;
    const uint32_t d_ll = in_chunk && lg_ll ? ct_ll.delta_nb_bits[cl] : 0;
    const int32_t f_of = in_chunk && lg_of ? ct_of.find_state[co] : 0;
    const int32_t f_ml = in_chunk && lg_ml ? ct_ml.find_state[cm] : 0;
    const int32_t f_ll = in_chunk && lg_ll ? ct_ll.find_state[cl] : 0;
    uint32_t v_of = 0, n_of = 0, v_ml = 0, n_ml = 0, v_ll = 0, n_ll = 0;
    uint32_t j = 0;
    if (uint32_t(hi) == last) {  // the walk's first sequence: states start here, no bits
      const uint32_t jm = __shfl_sync(kFullWarp, cm, 0), jo = __shfl_sync(kFullWarp, co, 0),
                     jl = __shfl_sync(kFullWarp, cl, 0);
      s_ml = fse_init_state(ct_ml, jm);
      s_of = fse_init_state(ct_of, jo);
      s_ll = fse_init_state(ct_ll, jl);
      j = 1;
    }
#pragma unroll 4
    for (; j < n_here; ++j) {
      const uint32_t dO = __shfl_sync(kFullWarp, d_of, j), dM = __shfl_sync(kFullWarp, d_ml, j),
                     dL = __shfl_sync(kFullWarp, d_ll, j);
      const int32_t fO = __shfl_sync(kFullWarp, f_of, j), fM = __shfl_sync(kFullWarp, f_ml, j),
                    fL = __shfl_sync(kFullWarp, f_ll, j);
      uint32_t a0 = 0, a1 = 0, b0 = 0, b1 = 0, c0 = 0, c1 = 0;
      if (lg_of) {
        a1 = (s_of + dO) >> 16;
        a0 = s_of;
        s_of = ct_of.state[int32_t(s_of >> a1) + fO];
      }
      if (lg_ml) {
        b1 = (s_ml + dM) >> 16;
        b0 = s_ml;
        s_ml = ct_ml.state[int32_t(s_ml >> b1) + fM];
      }
      if (lg_ll) {
        c1 = (s_ll + dL) >> 16;
        c0 = s_ll;
        s_ll = ct_ll.state[int32_t(s_ll >> c1) + fL];
      }
      if (lane == j) {
        v_of = a0; n_of = a1;
        v_ml = b0; n_ml = b1;
        v_ll = c0; n_ll = c1;
      }
    }
    // This lane's bits in stream order: states OF, ML, LL, then extras LL, ML, OF.
    const uint32_t xl = ll_code_bits(cl), xm = ml_code_bits(cm);
    const uint32_t mine = lane < n_here ? n_of + n_ml + n_ll + xl + xm + co : 0;
    uint32_t incl = mine;
    for (uint32_t d = 1; d < 32; d <<= 1) {
      const uint32_t t = __shfl_up_sync(kFullWarp, incl, d);
      if (lane >= d) incl += t;
    }
    const uint32_t total = __shfl_sync(kFullWarp, incl, 31);
    if (lane < n_here) {
      uint32_t p = bits + incl - mine;
      ring_put(ring, p, v_of, n_of);
      ring_put(ring, p, v_ml, n_ml);
      ring_put(ring, p, v_ll, n_ll);
      ring_put(ring, p, sq.lit_len, xl);
      ring_put(ring, p, sq.match_len - 3, xm);
      ring_put(ring, p, v_ov, co);
    }
    bits += total;
    ring_flush(ring, bits, wbase, out, cap_words, lane);
  }
  // Final states (ML, OF, LL), the end mark, the last words.
  if (lane == 0) {
    ring_put(ring, bits, s_ml, lg_ml);
    ring_put(ring, bits, s_of, lg_of);
    ring_put(ring, bits, s_ll, lg_ll);
    ring_put(ring, bits, 1, 1);
  }
  bits = __shfl_sync(kFullWarp, bits, 0);
  __syncwarp();
  const uint32_t stream_bytes = wbase * 4 + (bits + 7) / 8;
  bits = (bits + 31) & ~31u;  // the partial word too
  ring_flush(ring, bits, wbase, out, cap_words, lane);
  return stream_bytes;
}

}  // namespace gpo::zstd::enc
