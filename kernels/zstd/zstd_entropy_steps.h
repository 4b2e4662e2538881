// The steps of zstd stage 2's block encoder, as portable code that g++ and
// nvcc compile alike (__host__ __device__): the repeat-offset history, the
// literals' gather, section headers and plans, the sequences streams' modes.
// The CPU encoder (zstd_entropy_block.h) runs them in order; the GPU kernels
// (zstd_entropy_gpu.cu) run the same functions.
#pragma once
#include <cstddef>
#include <cstdint>

#include "kernels/common/host_device.h"
#include "kernels/zstd/zstd_entropy_coders.h"
#include "kernels/zstd/zstd_find.h"

namespace gpo::zstd::enc {

using gpu::Sequence;

// The decoder's repeat-offset history (RFC 8878 3.1.2.5) and which slots this
// block knows: a slot is known at the frame start (1, 4, 8) or once this block
// has set it (the previous block is encoded in parallel).
struct RepHistory {
  uint32_t r0, r1, r2;
  bool k0, k1, k2;
  GPO_HD inline void start(bool frame_start) {
    r0 = 1;
    r1 = 4;
    r2 = 8;
    k0 = k1 = k2 = frame_start;
  }
  // The zstd offset value of a match at offset o (has_lits: lit_len > 0):
  // repeat code 1..3 where a known slot matches, else o + 3. Updates the history.
  GPO_HD inline uint32_t code(uint32_t o, bool has_lits) {
    uint32_t c = 0;
    if (has_lits) {
      c = (k0 && r0 == o) ? 1 : (k1 && r1 == o) ? 2 : (k2 && r2 == o) ? 3 : 0;
      if (c == 1) return 1;  // rep0 again: history unchanged
    } else {
      c = (k1 && r1 == o) ? 1 : (k2 && r2 == o) ? 2 : (k0 && r0 - 1 == o) ? 3 : 0;
    }
    // Slot used: with literals code c takes slot c - 1, without them slot c
    // (code 3 = rep0 - 1 acts as a new offset).
    const bool slot1 = has_lits ? c == 2 : c == 1;
    if (!slot1) {  // [o, r0, r1]
      r2 = r1;
      k2 = k1;
    }
    r1 = r0;  // slot 1: [o, r0, r2]
    k1 = k0;
    r0 = o;
    k0 = true;
    return c ? c : o + 3;
  }
};

// Offsets turned into zstd offset values (RepHistory::code) for the block.
GPO_HD inline void offset_values(const Sequence* seqs, uint32_t nseq, bool frame_start, uint32_t* ofv) {
  RepHistory h;
  h.start(frame_start);
  for (uint32_t i = 0; i < nseq; ++i) ofv[i] = h.code(seqs[i].offset, seqs[i].lit_len > 0);
}

// The block's literals, in order, into lits. Returns their count.
GPO_HD inline uint32_t gather_literals(const uint8_t* src, uint32_t len, const Sequence* seqs, uint32_t nseq, uint8_t* lits) {
  uint32_t ip = 0, nl = 0;
  for (uint32_t i = 0; i < nseq; ++i) {
    const Sequence sq = seqs[i];
    for (uint32_t k = 0; k < sq.lit_len; ++k) lits[nl + k] = src[ip + k];
    nl += sq.lit_len;
    ip += sq.lit_len + sq.match_len;
  }
  for (uint32_t k = 0; k < len - ip; ++k) lits[nl + k] = src[ip + k];
  return nl + (len - ip);
}

// Literals section headers (RFC 8878 3.1.1.3.1.1).
GPO_HD inline size_t lit_plain_header(uint8_t* out, uint32_t type, uint32_t nl) {  // type 0 raw, 1 RLE
  if (nl < 32) {
    out[0] = uint8_t(type | (nl << 3));
    return 1;
  }
  if (nl < 4096) {
    put_le16(out, type | (1u << 2) | (nl << 4));
    return 2;
  }
  put_le24(out, type | (3u << 2) | (nl << 4));
  return 3;
}
GPO_HD inline size_t huf_lit_header_size(uint32_t nl) { return nl < 1024 ? 3 : nl < 16384 ? 4 : 5; }
GPO_HD inline void huf_lit_header(uint8_t* out, uint32_t nl, uint32_t cs) {
  const size_t lh = huf_lit_header_size(nl);
  const uint32_t fmt = nl < 256 ? 0 : (lh == 3 ? 1 : lh == 4 ? 2 : 3);  // 0: one stream
  if (lh == 3) {
    put_le24(out, 2 | (fmt << 2) | (nl << 4) | (cs << 14));
  } else if (lh == 4) {
    put_le32(out, 2 | (fmt << 2) | (nl << 4) | (cs << 18));
  } else {
    put_le32(out, 2 | (fmt << 2) | (nl << 4) | (cs << 22));
    out[4] = uint8_t(cs >> 10);
  }
}

// What the literals section will be, from the histogram alone (the GPU
// kernel takes the same decisions before it encodes the streams in parallel).
enum class LitMode { kRaw, kRle, kHuffman };
struct LitPlan {
  LitMode mode;
  uint32_t rle_sym;
  size_t lh;        // Huffman: literals header bytes
  size_t cap;       // Huffman: room after the header before it loses to raw
  size_t tree;      // Huffman: tree description bytes (in tree_buf)
};
// The decisions after the table (t built, bits = its estimated size).
GPO_HD inline LitPlan plan_huffman_literals(LitPlan p, uint32_t nl, uint64_t bits, const HufTable& t, uint8_t* tree_buf,
                                      HufTreeScratch& ws) {
  const size_t lh = huf_lit_header_size(nl);
  const bool single = nl < 256;
  const size_t raw_size = nl + (nl < 32 ? 1 : nl < 4096 ? 2 : 3);
  if (lh + bits / 8 + (single ? 0 : 6) + 8 >= raw_size) return p;
  p.lh = lh;
  p.cap = raw_size - lh;
  p.tree = huf_write_tree(t, tree_buf, p.cap, ws);
  if (p.tree == 0) return p;
  if (!single && p.tree + 6 >= p.cap) return p;
  p.mode = LitMode::kHuffman;
  return p;
}

// The decisions that need no table: RLE when the block's nl > 0 literals are
// one symbol (distinct = 1), raw under 64 literals. True when decided (p set).
GPO_HD inline bool plan_without_table(LitPlan& p, uint32_t nl, uint32_t distinct) {
  if (nl > 0 && distinct == 1) {
    p.mode = LitMode::kRle;
    return true;
  }
  return nl < 64;
}

// Work arrays of plan_literals (one after the other, so they share memory).
union LitPlanScratch {
  HufBuildScratch build;
  HufTreeScratch tree;
};
GPO_HD inline LitPlan plan_literals(uint32_t nl, const uint32_t* hist, HufTable& t, uint8_t* tree_buf,
                              LitPlanScratch& ws, const uint8_t* order = nullptr) {
  LitPlan p{LitMode::kRaw, 0, 0, 0, 0};
  uint32_t distinct = 0;
  for (uint32_t s = 0; s < 256; ++s)
    if (hist[s]) {
      distinct++;
      p.rle_sym = s;
    }
  if (plan_without_table(p, nl, distinct)) return p;
  huf_build(hist, t, ws.build, order);
  // Estimate first: a table that does not pay is not worth encoding.
  uint64_t bits = 0;
  for (uint32_t s = 0; s < 256; ++s) bits += uint64_t(hist[s]) * t.len[s];
  return plan_huffman_literals(p, nl, bits, t, tree_buf, ws.tree);
}

GPO_HD inline size_t raw_literals(const uint8_t* lits, uint32_t nl, uint8_t* out) {
  const size_t h = lit_plain_header(out, 0, nl);
  for (uint32_t i = 0; i < nl; ++i) out[h + i] = lits[i];
  return h + nl;
}

// The header of a sequences section: the sequence count (1 to 3 bytes).
GPO_HD inline size_t seq_count_header(uint8_t* op, uint32_t nseq) {
  if (nseq < 128) {
    op[0] = uint8_t(nseq);
    return 1;
  }
  if (nseq < 0x7F00) {
    op[0] = uint8_t((nseq >> 8) + 128);
    op[1] = uint8_t(nseq);
    return 2;
  }
  op[0] = 0xFF;
  put_le16(op + 1, nseq - 0x7F00);
  return 3;
}

// Mode of one sequences stream (w: 0 LL, 1 OF, 2 ML) from its code counts
// (max code ms, nseq codes in all): 1 RLE (one code), else the cheaper of 0
// Predefined and 2 FSE_Compressed (table from these counts; norm and its
// description hdr[*hsize] filled), by an integer cost in 1/256 bit, so CPU
// and GPU decide alike.
GPO_HD inline uint32_t plan_seq_stream(int w, const uint32_t* cnt, uint32_t ms, uint32_t nseq, int16_t* norm,
                                 uint32_t* log_out, uint8_t* hdr, size_t* hsize) {
  uint32_t present = 0;
  for (uint32_t s = 0; s <= ms; ++s) present += cnt[s] != 0;
  *hsize = 0;
  if (present == 1 && nseq > 2) return 1;
  const int16_t* pn = predefined_norm(w);
  const uint32_t plog = predefined_log(w);
  uint64_t pre_cost = ~uint64_t(0);
  if (ms <= predefined_max_sym(w)) {
    pre_cost = 0;
    for (uint32_t s = 0; s <= ms; ++s)
      if (cnt[s]) {
        const uint32_t p = pn[s] < 0 ? 1 : uint32_t(pn[s]);
        pre_cost += uint64_t(cnt[s]) * (plog * 256 - log2_fp8(p));
      }
  }
  const uint32_t log = fse_table_log(max_log_of(w), nseq, ms);
  fse_normalize(norm, cnt, ms, nseq, log);
  const size_t hs = fse_write_ncount(hdr, norm, ms, log);
  uint64_t fse_cost = uint64_t(hs) * 8 * 256;
  for (uint32_t s = 0; s <= ms; ++s)
    if (cnt[s]) fse_cost += uint64_t(cnt[s]) * (log * 256 - log2_fp8(uint32_t(norm[s])));
  if (fse_cost < pre_cost) {
    *hsize = hs;
    *log_out = log;
    return 2;
  }
  return 0;
}

}  // namespace gpo::zstd::enc
