// The steps of zstd stage 2's block encoder, in the order the GPU kernels
// (zstd_entropy_gpu.cu) run them. Literals: positions and gather (with the
// histogram), symbol ranks, the Huffman plan (table, weights' description,
// mode), the stream split and bit-packing, the section's head. Sequences:
// offset values, codes and their counts, each stream's FSE table choice and
// build, the section header, the backward bitstream.
//
// A step is GPO_HD code that the CPU encoder (zstd_entropy_block.h) and the
// kernels both run, or the CPU twin of a step that the GPU runs
// cooperatively (a warp or a CTA): the same contract, so a test can run both
// on a block and compare.
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

// Whether a block of len bytes with nl literals is stored raw before any
// coding: its literals section alone (up to nl + 3 bytes) would leave no room.
GPO_HD GPO_FORCEINLINE bool too_many_literals(uint32_t nl, uint32_t len) { return size_t(nl) + 3 + 4 >= len; }

// Step "literal positions" (CPU twin of the literals kernel's
// mark_sequence_literals_cta and mark_trailing_literals_cta): bit p of bitmap
// ((len + 31) / 32 words, cleared here) is set when source byte p of the
// block is a literal. Returns their count.
inline uint32_t mark_literal_positions(const Sequence* seqs, uint32_t nseq, uint32_t len, uint32_t* bitmap) {
  for (uint32_t w = 0; w < (len + 31) / 32; ++w) bitmap[w] = 0;
  uint32_t ip = 0, nl = 0;
  auto mark = [&](uint32_t n) {
    for (uint32_t k = ip; k < ip + n; ++k) bitmap[k / 32] |= 1u << (k % 32);
    nl += n;
  };
  for (uint32_t i = 0; i < nseq; ++i) {
    mark(seqs[i].lit_len);
    ip += seqs[i].lit_len + seqs[i].match_len;
  }
  mark(len - ip);
  return nl;
}

// Step "gather" (CPU twin of the literals kernel's gather_literals_cta): the
// bytes of src[0..len) marked in bitmap, in order, into lits, and their
// histogram (256 counts). Returns their count.
inline uint32_t gather_marked_literals(const uint8_t* src, uint32_t len, const uint32_t* bitmap, uint8_t* lits,
                                       uint32_t* hist) {
  for (uint32_t s = 0; s < 256; ++s) hist[s] = 0;
  uint32_t nl = 0;
  for (uint32_t p = 0; p < len; ++p)
    if ((bitmap[p / 32] >> (p % 32)) & 1u) {
      lits[nl++] = src[p];
      hist[src[p]]++;
    }
  return nl;
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

// Step "symbol ranks": the rank of present symbol s by (count, symbol) among
// the present symbols of hist, the order huf_build sorts its leaves in. The
// literals kernel ranks every symbol at once (a thread each) and hands the
// order to its Huffman plan, which then needs no sort.
GPO_HD GPO_FORCEINLINE uint32_t huf_symbol_rank(const uint32_t* hist, uint32_t s) {
  const uint32_t my = hist[s];
  uint32_t rank = 0;
  for (uint32_t o = 0; o < 256; ++o) {
    const uint32_t c = hist[o];
    rank += (c != 0) & ((c < my) | ((c == my) & (o < s)));
  }
  return rank;
}
// All present symbols in that order: order[huf_symbol_rank(s)] = s.
GPO_HD inline void huf_rank_symbols(const uint32_t* hist, uint8_t* order) {
  for (uint32_t s = 0; s < 256; ++s)
    if (hist[s]) order[huf_symbol_rank(hist, s)] = uint8_t(s);
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
  return plan_huffman_literals(p, nl, huf_stream_bits(hist, t), t, tree_buf, ws.tree);
}

GPO_HD inline size_t raw_literals(const uint8_t* lits, uint32_t nl, uint8_t* out) {
  const size_t h = lit_plain_header(out, 0, nl);
  for (uint32_t i = 0; i < nl; ++i) out[h + i] = lits[i];
  return h + nl;
}

GPO_HD inline size_t rle_literals(uint8_t sym, uint32_t nl, uint8_t* out) {
  const size_t h = lit_plain_header(out, 1, nl);
  out[h] = sym;
  return h + 1;
}

// Stream k (0..3) of nl >= 256 Huffman-coded literals: lits[a, b), the RFC's
// split (three of (nl + 3) / 4 literals, the rest in the fourth).
GPO_HD GPO_FORCEINLINE void huf_stream_range(uint32_t nl, uint32_t k, uint32_t& a, uint32_t& b) {
  const uint32_t seg = (nl + 3) / 4;
  a = k * seg;
  b = k == 3 ? nl : (k + 1) * seg;
}

// Step "four streams" (CPU twin of the literals kernel's huf_pack_streams_cta):
// the Huffman streams of lits[0..nl) (nl >= 256, split by huf_stream_range)
// back to back at out; sizes[k] = their sizes. Returns their total, 0 when
// they do not fit in cap bytes.
GPO_HD inline size_t huf_encode_4streams(const HufTable& t, const uint8_t* lits, uint32_t nl, uint8_t* out, size_t cap,
                                         uint32_t* sizes) {
  size_t used = 0;
  for (uint32_t k = 0; k < 4; ++k) {
    uint32_t a, b;
    huf_stream_range(nl, k, a, b);
    const size_t s = huf_encode_stream(t, lits + a, b - a, out + used, cap - used);
    if (s == 0) return 0;
    sizes[k] = uint32_t(s);
    used += s;
  }
  return used;
}

// Step "section head" of Huffman literals planned as p: the header, the tree
// description and, with four streams (nl >= 256), the jump table, for the
// streams of sizes[] that follow at out + p.lh + p.tree (+ 6 with four).
// Returns the section's size.
GPO_HD inline size_t write_huf_literals_head(uint8_t* out, const LitPlan& p, const uint8_t* tree, uint32_t nl,
                                             const uint32_t* sizes) {
  for (size_t i = 0; i < p.tree; ++i) out[p.lh + i] = tree[i];
  size_t cs = p.tree;
  if (nl < 256) {
    cs += sizes[0];
  } else {
    for (uint32_t k = 0; k < 3; ++k) put_le16(out + p.lh + p.tree + 2 * k, sizes[k]);
    cs += 6 + size_t(sizes[0]) + sizes[1] + sizes[2] + sizes[3];
  }
  huf_lit_header(out, nl, uint32_t(cs));
  return p.lh + cs;
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

// A sequence's three codes (RFC 8878 3.1.1.3.2.1): literal length, offset (of
// its zstd offset value ofv, RepHistory::code) and match length.
struct SeqCodes {
  uint32_t ll, of, ml;
};
GPO_HD GPO_FORCEINLINE SeqCodes seq_codes(const Sequence& sq, uint32_t ofv) {
  return {ll_code(sq.lit_len), highbit(ofv), ml_code(sq.match_len)};
}

// Step "code counts": cnt[w][code] of the streams w (0 LL, 1 OF, 2 ML) over
// nseq sequences with offset values ofv. With offset_values, the CPU twin of
// the sequences kernel's pass 1 (seq_values_and_counts_warp).
GPO_HD inline void count_seq_codes(const Sequence* seqs, const uint32_t* ofv, uint32_t nseq,
                                   uint32_t (*cnt)[kFseMaxSymbols]) {
  for (int w = 0; w < 3; ++w)
    for (uint32_t s = 0; s < kFseMaxSymbols; ++s) cnt[w][s] = 0;
  for (uint32_t i = 0; i < nseq; ++i) {
    const SeqCodes c = seq_codes(seqs[i], ofv[i]);
    cnt[0][c.ll]++;
    cnt[1][c.of]++;
    cnt[2][c.ml]++;
  }
}

// Room for one stream's FSE table description (a 4-bit log, at most 53
// counts of at most 10 bits, a 2-bit repeat flag after a zero: at most 80
// bytes) and fse_write_ncount's 2 bytes of slack.
inline constexpr uint32_t kSeqTableDescMax = 96;

// One sequences stream's choice.
struct SeqStreamPlan {
  uint32_t mode;       // 0 Predefined, 1 RLE, 2 FSE_Compressed
  uint32_t max_code;   // the highest code present (RLE: the only one)
  uint32_t desc_size;  // FSE_Compressed: bytes of the table description
};

// Step "FSE table choice and build" of stream w from its code counts (nseq
// codes in all): the mode (plan_seq_stream) and the encoder table ct, log 0
// for RLE (no bits); FSE_Compressed also fills norm and the description desc.
// The CPU encoder runs it for each stream, the sequences kernel on lane w.
GPO_HD GPO_FORCEINLINE SeqStreamPlan build_seq_table(int w, const uint32_t* cnt, uint32_t nseq, int16_t* norm,
                                                     uint8_t* desc, FseCTable& ct, FseBuildScratch& ws) {
  uint32_t ms = 0;
  for (uint32_t s = 0; s < kFseMaxSymbols; ++s)
    if (cnt[s]) ms = s;
  size_t hs = 0;
  uint32_t lg = 0;
  const uint32_t mode = plan_seq_stream(w, cnt, ms, nseq, norm, &lg, desc, &hs);
  if (mode == 2) {
    fse_build(ct, norm, ms, lg, ws);
  } else if (mode == 0) {
    fse_build(ct, predefined_norm(w), predefined_max_sym(w), predefined_log(w), ws);
  } else {
    ct.log = 0;
  }
  return {mode, ms, uint32_t(hs)};
}

// Step "section header": the sequence count, the modes, then per stream its
// RLE code or its table description. Returns its size, 0 when that is over
// cap (nothing written then).
GPO_HD inline uint32_t write_seq_header(uint8_t* out, size_t cap, uint32_t nseq, const SeqStreamPlan* plan,
                                        const uint8_t (*desc)[kSeqTableDescMax]) {
  uint8_t count[3];
  const uint32_t nc = uint32_t(seq_count_header(count, nseq));
  uint32_t size = nc + 1;
  for (int w = 0; w < 3; ++w) size += plan[w].mode == 1 ? 1 : plan[w].mode == 2 ? plan[w].desc_size : 0;
  if (size > cap) return 0;
  for (uint32_t i = 0; i < nc; ++i) out[i] = count[i];
  uint32_t p = nc;
  out[p++] = uint8_t((plan[0].mode << 6) | (plan[1].mode << 4) | (plan[2].mode << 2));
  for (int w = 0; w < 3; ++w) {
    if (plan[w].mode == 1) out[p++] = uint8_t(plan[w].max_code);
    if (plan[w].mode == 2)
      for (uint32_t k = 0; k < plan[w].desc_size; ++k) out[p++] = desc[w][k];
  }
  return size;
}

// Step "backward bitstream" (CPU twin of the sequences kernel's pass 2,
// seq_bitstream_warp) of nseq >= 1 sequences with tables ct (LL, OF, ML):
// the last sequence starts the three FSE states and gives its extra bits;
// then, towards the first, each sequence's state bits (OF, ML, LL) and extra
// bits (LL, ML, OF); last the final states (ML, OF, LL) and the end mark.
// Extra bits: every base is a multiple of 1 << bits, so BitWriter::add's mask
// of the value itself gives value - base. Returns the stream size, 0 when it
// is over cap.
GPO_HD inline size_t write_seq_bitstream(const Sequence* seqs, const uint32_t* ofv, uint32_t nseq,
                                         const FseCTable* ct, uint8_t* out, size_t cap) {
  BitWriter bw;
  bw.init(out, cap);
  const uint32_t last = nseq - 1;
  const SeqCodes cl = seq_codes(seqs[last], ofv[last]);
  uint32_t s_ml = fse_init_state(ct[2], cl.ml);
  uint32_t s_of = fse_init_state(ct[1], cl.of);
  uint32_t s_ll = fse_init_state(ct[0], cl.ll);
  bw.add(seqs[last].lit_len, ll_code_bits(cl.ll));
  bw.add(seqs[last].match_len - 3, ml_code_bits(cl.ml));
  bw.add(ofv[last], cl.of);
  for (uint32_t n = last; n-- > 0;) {
    const SeqCodes c = seq_codes(seqs[n], ofv[n]);
    fse_encode(ct[1], s_of, c.of, bw);
    fse_encode(ct[2], s_ml, c.ml, bw);
    fse_encode(ct[0], s_ll, c.ll, bw);
    bw.add(seqs[n].lit_len, ll_code_bits(c.ll));
    bw.add(seqs[n].match_len - 3, ml_code_bits(c.ml));
    bw.add(ofv[n], c.of);
  }
  fse_flush(ct[2], s_ml, bw);
  fse_flush(ct[1], s_of, bw);
  fse_flush(ct[0], s_ll, bw);
  return bw.close();
}

}  // namespace gpo::zstd::enc
