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
// The block's sections are coded by the steps of zstd_entropy_steps.h, in the
// order the GPU kernels run them.
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

// Per-block scratch: lits has room for len bytes, ofv for nseq entries
// (device: global memory, one slice per block).
struct BlockScratch {
  uint8_t* lits;
  uint32_t* ofv;
};

// Literals section (raw, RLE or Huffman) at out from its plan (t and tree as
// plan_literals left them). Returns its size (never more than the raw
// section: nl + header).
GPO_HD inline size_t encode_planned_literals(const LitPlan& p, const HufTable& t, const uint8_t* tree,
                                             const uint8_t* lits, uint32_t nl, uint8_t* out) {
  if (p.mode == LitMode::kRle) return rle_literals(uint8_t(p.rle_sym), nl, out);
  if (p.mode == LitMode::kRaw) return raw_literals(lits, nl, out);
  const size_t head = p.tree + (nl < 256 ? 0 : 6);  // after the header
  uint32_t sizes[4];
  size_t s;
  if (nl < 256) {
    s = huf_encode_stream(t, lits, nl, out + p.lh + head, p.cap - head);
    sizes[0] = uint32_t(s);
  } else {
    s = huf_encode_4streams(t, lits, nl, out + p.lh + head, p.cap - head, sizes);
  }
  if (s == 0) return raw_literals(lits, nl, out);
  return write_huf_literals_head(out, p, tree, nl, sizes);
}

GPO_HD inline size_t encode_literals(const uint8_t* lits, uint32_t nl, const uint32_t* hist, uint8_t* out) {
  HufTable t;
  uint8_t tree[160];
  LitPlanScratch ws;
  const LitPlan p = plan_literals(nl, hist, t, tree, ws);
  return encode_planned_literals(p, t, tree, lits, nl, out);
}

// Sequences section at out (cap bytes): the steps of zstd_entropy_steps.h in
// the sequences kernel's order. Returns its size, 0 if it does not fit.
GPO_HD inline size_t encode_sequences(const Sequence* seqs, const uint32_t* ofv, uint32_t nseq, uint8_t* out,
                                      size_t cap) {
  if (cap < 4) return 0;
  if (nseq == 0) return seq_count_header(out, 0);
  uint32_t cnt[3][kFseMaxSymbols];
  count_seq_codes(seqs, ofv, nseq, cnt);
  SeqStreamPlan plan[3];
  FseCTable ct[3];
  int16_t norm[3][kFseMaxSymbols];
  uint8_t desc[3][kSeqTableDescMax];
  FseBuildScratch build;
  for (int w = 0; w < 3; ++w) plan[w] = build_seq_table(w, cnt[w], nseq, norm[w], desc[w], ct[w], build);
  const uint32_t hs = write_seq_header(out, cap, nseq, plan, desc);
  if (hs == 0) return 0;
  const size_t bs = write_seq_bitstream(seqs, ofv, nseq, ct, out + hs, cap - hs);
  if (bs == 0) return 0;
  return hs + bs;
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
  if (too_many_literals(nl, len)) return raw_block(src, len, last, out);
  const size_t ls = encode_literals(ws.lits, nl, hist, out + 3);
  const size_t room = len - ls;  // content must stay below len to beat raw
  const size_t ss = encode_sequences(seqs, ws.ofv, nseq, out + 3 + ls, room);
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
