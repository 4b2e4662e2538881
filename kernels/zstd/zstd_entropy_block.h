// zstd stage 2: entropy coding of one block (literals with Huffman, sequences
// with FSE) and frame headers, as portable code that g++ and nvcc compile alike
// (__host__ __device__). The CPU tests and the GPU kernels run this very code,
// so a GPU frame is bit-identical to the CPU one and both are checked against
// libzstd's decompressor (RFC 8878 is the format; no libzstd code here).
//
// Input per block: the source bytes and its sequences in stage 1's layout
// (zstd_find.h: lit_len, match_len, plain backward offset) plus the literals
// after the last match. Output: a complete block (3-byte header + content):
// Compressed_Block when it pays, else Raw_Block; never more than len + 3 bytes.
//
// Choices, per block:
// - literals: Raw, RLE, or Huffman (table from the block's histogram, max 11
//   bits, 1 stream under 256 literals else 4; weights written directly when
//   <= 128 of them, else FSE-compressed when that is smaller or needed);
//   no treeless (table reuse) mode, so every block stands alone.
// - sequences: per stream (literal lengths, offsets, match lengths) the
//   cheapest of Predefined, RLE and FSE_Compressed (table built from the
//   block's codes); no Repeat mode.
// - repeat offsets: tracked inside the block only. The decoder's history at a
//   block start depends on the previous block, which is encoded in parallel, so
//   a slot is used only once this block has set it (or at the frame start,
//   where the history is the known 1, 4, 8).
#pragma once
#include <cstddef>
#include <cstdint>

#include "kernels/common/host_device.h"
#include "kernels/zstd/zstd_entropy_steps.h"

namespace gpo::zstd::enc {

inline constexpr uint32_t kMaxBlock = 128 * 1024;
inline constexpr uint32_t kFrameHeaderMax = 4 + 1 + 1 + 8;

// ---------------------------------------------------------- the block

// Per-block scratch: lits has room for len bytes, ofv for nseq entries, codes
// for 3 * nseq bytes (device: global memory, one slice per block).
struct BlockScratch {
  uint8_t* lits;
  uint32_t* ofv;
  uint8_t* codes;
};

// Literals section (raw, RLE or Huffman) at out from its plan (t and tree as
// plan_literals left them). Returns its size (never more than the raw
// section: nl + header).
GPO_HD inline size_t encode_planned_literals(const LitPlan& p, const HufTable& t, const uint8_t* tree,
                                       const uint8_t* lits, uint32_t nl, uint8_t* out) {
  if (p.mode == LitMode::kRle) {
    const size_t h = lit_plain_header(out, 1, nl);
    out[h] = uint8_t(p.rle_sym);
    return h + 1;
  }
  if (p.mode == LitMode::kRaw) return raw_literals(lits, nl, out);
  uint8_t* op = out + p.lh;
  for (size_t i = 0; i < p.tree; ++i) op[i] = tree[i];
  size_t used = p.tree;
  if (nl < 256) {
    const size_t s = huf_encode_stream(t, lits, nl, op + used, p.cap - used);
    if (s == 0) return raw_literals(lits, nl, out);
    used += s;
  } else {
    uint8_t* jump = op + used;
    used += 6;
    const uint32_t seg = (nl + 3) / 4;
    for (uint32_t k = 0; k < 4; ++k) {
      const uint32_t a = k * seg, b = k == 3 ? nl : (k + 1) * seg;
      const size_t s = huf_encode_stream(t, lits + a, b - a, op + used, p.cap - used);
      if (s == 0) return raw_literals(lits, nl, out);
      if (k < 3) put_le16(jump + 2 * k, uint32_t(s));
      used += s;
    }
  }
  huf_lit_header(out, nl, uint32_t(used));
  return p.lh + used;
}

GPO_HD inline size_t encode_literals(const uint8_t* lits, uint32_t nl, const uint32_t* hist, uint8_t* out) {
  HufTable t;
  uint8_t tree[160];
  LitPlanScratch ws;
  const LitPlan p = plan_literals(nl, hist, t, tree, ws);
  return encode_planned_literals(p, t, tree, lits, nl, out);
}

// Sequences section at out (cap bytes). Returns its size, 0 if it does not fit.
GPO_HD inline size_t encode_sequences(const Sequence* seqs, const uint32_t* ofv, uint32_t nseq, uint8_t* codes, uint8_t* out,
                                size_t cap) {
  if (cap < 4) return 0;
  uint8_t* op = out + seq_count_header(out, nseq);
  if (nseq == 0) return size_t(op - out);
  uint8_t* llc = codes;
  uint8_t* ofc = codes + nseq;
  uint8_t* mlc = codes + 2 * nseq;
  uint32_t cnt[3][kFseMaxSymbols] = {};
  uint32_t maxc[3] = {0, 0, 0};
  for (uint32_t i = 0; i < nseq; ++i) {
    const uint32_t l = ll_code(seqs[i].lit_len), f = highbit(ofv[i]), m = ml_code(seqs[i].match_len);
    llc[i] = uint8_t(l);
    ofc[i] = uint8_t(f);
    mlc[i] = uint8_t(m);
    cnt[0][l]++;
    cnt[1][f]++;
    cnt[2][m]++;
    if (l > maxc[0]) maxc[0] = l;
    if (f > maxc[1]) maxc[1] = f;
    if (m > maxc[2]) maxc[2] = m;
  }
  uint8_t* modes = op++;
  uint32_t mode_bits = 0;
  FseCTable ct[3];
  for (int w = 0; w < 3; ++w) {  // LL, OF, ML
    int16_t norm[kFseMaxSymbols];
    uint8_t hdr[96];
    size_t hsize = 0;
    uint32_t log = 0;
    const uint32_t mode = plan_seq_stream(w, cnt[w], maxc[w], nseq, norm, &log, hdr, &hsize);
    if (mode == 1) {
      if (size_t(op - out) + 1 > cap) return 0;
      *op++ = uint8_t(maxc[w]);
      ct[w].log = 0;
    } else if (mode == 2) {
      if (size_t(op - out) + hsize > cap) return 0;
      for (size_t i = 0; i < hsize; ++i) op[i] = hdr[i];
      op += hsize;
      fse_build(ct[w], norm, maxc[w], log);
    } else {
      fse_build(ct[w], predefined_norm(w), predefined_max_sym(w), predefined_log(w));
    }
    mode_bits |= mode << (6 - 2 * w);
  }
  *modes = uint8_t(mode_bits);
  BitWriter bw;
  bw.init(op, cap - size_t(op - out));
  // Extra bits: every base is a multiple of 1 << bits, so BitWriter::add's
  // mask of the value itself gives value - base.
  const uint32_t last = nseq - 1;
  uint32_t s_ml = fse_init_state(ct[2], mlc[last]);
  uint32_t s_of = fse_init_state(ct[1], ofc[last]);
  uint32_t s_ll = fse_init_state(ct[0], llc[last]);
  bw.add(seqs[last].lit_len, ll_code_bits(llc[last]));
  bw.add(seqs[last].match_len - 3, ml_code_bits(mlc[last]));
  bw.add(ofv[last], ofc[last]);
  for (uint32_t n = last; n-- > 0;) {
    fse_encode(ct[1], s_of, ofc[n], bw);
    fse_encode(ct[2], s_ml, mlc[n], bw);
    fse_encode(ct[0], s_ll, llc[n], bw);
    bw.add(seqs[n].lit_len, ll_code_bits(llc[n]));
    bw.add(seqs[n].match_len - 3, ml_code_bits(mlc[n]));
    bw.add(ofv[n], ofc[n]);
  }
  fse_flush(ct[2], s_ml, bw);
  fse_flush(ct[1], s_of, bw);
  fse_flush(ct[0], s_ll, bw);
  const size_t bs = bw.close();
  if (bs == 0) return 0;
  return size_t(op - out) + bs;
}

GPO_HD inline void write_block_header(uint8_t* out, bool last, uint32_t type, uint32_t size) {
  put_le24(out, (last ? 1u : 0u) | (type << 1) | (size << 3));
}

GPO_HD inline size_t raw_block(const uint8_t* src, uint32_t len, bool last, uint8_t* out) {
  write_block_header(out, last, 0, len);
  for (uint32_t i = 0; i < len; ++i) out[3 + i] = src[i];
  return 3 + size_t(len);
}

// The whole block: out has room for len + 3 bytes. Returns bytes written.
GPO_HD inline size_t encode_block(const uint8_t* src, uint32_t len, const Sequence* seqs, uint32_t nseq, bool frame_start,
                            bool last, const BlockScratch& ws, uint8_t* out) {
  offset_values(seqs, nseq, frame_start, ws.ofv);
  const uint32_t nl = gather_literals(src, len, seqs, nseq, ws.lits);
  uint32_t hist[256];
  for (uint32_t s = 0; s < 256; ++s) hist[s] = 0;
  for (uint32_t i = 0; i < nl; ++i) hist[ws.lits[i]]++;
  // The literals section can be up to nl + 3 bytes: only when nl + 3 < len
  // does it fit the slot (else the block is raw anyway).
  if (size_t(nl) + 3 + 4 >= len) return raw_block(src, len, last, out);
  const size_t ls = encode_literals(ws.lits, nl, hist, out + 3);
  const size_t room = len - ls;  // content must stay below len to beat raw
  const size_t ss = encode_sequences(seqs, ws.ofv, nseq, ws.codes, out + 3 + ls, room);
  if (ss == 0 || ls + ss >= len) return raw_block(src, len, last, out);
  write_block_header(out, last, 2, uint32_t(ls + ss));
  return 3 + ls + ss;
}

// ---------------------------------------------------------- the frame

// Frame header for content_size bytes whose matches reach back at most
// window bytes (window >= min(content, 128 KiB)). Returns its size.
GPO_HD inline size_t write_frame_header(uint8_t* out, uint64_t content_size, uint32_t window_log) {
  put_le32(out, 0xFD2FB528u);
  const bool single = content_size <= (uint64_t(1) << window_log);
  uint32_t fcs_flag, fcs_bytes;
  if (single && content_size < 256) {
    fcs_flag = 0;
    fcs_bytes = 1;
  } else if (content_size >= 256 && content_size < 65536 + 256) {
    fcs_flag = 1;
    fcs_bytes = 2;
  } else if (content_size <= 0xFFFFFFFFu) {
    fcs_flag = 2;
    fcs_bytes = 4;
  } else {
    fcs_flag = 3;
    fcs_bytes = 8;
  }
  out[4] = uint8_t((fcs_flag << 6) | (single ? 0x20 : 0));
  size_t p = 5;
  if (!single) out[p++] = uint8_t((window_log - 10) << 3);
  uint64_t v = fcs_flag == 1 ? content_size - 256 : content_size;
  for (uint32_t i = 0; i < fcs_bytes; ++i) out[p++] = uint8_t(v >> (8 * i));
  return p;
}

// Bound of a frame of n bytes cut into blocks of kMaxBlock.
GPO_HD inline size_t frame_bound(uint64_t n) {
  const uint64_t blocks = n ? (n + kMaxBlock - 1) / kMaxBlock : 1;
  return size_t(kFrameHeaderMax + n + 3 * blocks);
}

}  // namespace gpo::zstd::enc
