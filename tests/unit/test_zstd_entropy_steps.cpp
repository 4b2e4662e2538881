// zstd stage 2's block encoder step by step (zstd_entropy_steps.h), on the
// CPU: the CPU twins of the kernels' cooperative steps against the CPU
// encoder's own steps, and every step against a reference of its own:
// libzstd decoding a section built from the steps, RFC 8878's rules read from
// the decoder's side (repeat offsets, table descriptions, code tables), and
// table invariants (FSE counts summing to 1 << log, Huffman lengths forming a
// complete prefix code). Inputs: the data kinds at sizes up to a few blocks
// and the sequence shapes, parsed by stage 1 (zstd_entropy_data.h), plus
// edge cases (no literal, one, one symbol, every symbol).
#include <gtest/gtest.h>
#include <zstd.h>

#include <algorithm>
#include <bit>
#include <random>
#include <string>
#include <vector>

#include "kernels/zstd/zstd_entropy_block.h"
#include "unit/zstd_entropy_data.h"

namespace {

namespace enc = gpo::zstd::enc;
namespace data = gpo::test::zstd_data;
using gpo::zstd::gpu::BlockDesc;
using gpo::zstd::gpu::Sequence;

// Calls f(name, block, its source, its sequences) for every block of the
// step inputs; returns how many.
template <typename F>
size_t for_each_block(F&& f) {
  size_t n = 0;
  for (const data::ParsedInput& in : data::step_inputs())
    for (size_t b = 0; b < in.blocks.size(); ++b, ++n) {
      const BlockDesc& bd = in.blocks[b];
      f(in.name + " block " + std::to_string(b), bd, in.data.data() + bd.src, in.seqs.data() + bd.seq_first);
    }
  return n;
}

std::vector<uint8_t> block_literals(const BlockDesc& bd, const uint8_t* src, const Sequence* seqs) {
  std::vector<uint8_t> lits(bd.len);
  lits.resize(enc::gather_literals(src, bd.len, seqs, bd.seq_count, lits.data()));
  return lits;
}

// ---------------------------------------------------------------- literals

// The twins of the kernel's positions and gather steps give the literals and
// histogram of the encoder's own gather (sequence by sequence).
TEST(ZstdEntropySteps, LiteralPositionsAndGatherMatchTheEncodersGather) {
  const size_t blocks = for_each_block([](const std::string& what, const BlockDesc& bd, const uint8_t* src,
                                          const Sequence* seqs) {
    const uint32_t words = (bd.len + 31) / 32;
    std::vector<uint32_t> bm(words + 1, 0xA5A5A5A5u);  // one word past the end stays untouched
    const uint32_t nl = enc::mark_literal_positions(seqs, bd.seq_count, bd.len, bm.data());
    ASSERT_EQ(bm[words], 0xA5A5A5A5u) << what;
    uint32_t marked = 0;
    for (uint32_t w = 0; w < words; ++w) marked += uint32_t(std::popcount(bm[w]));
    EXPECT_EQ(marked, nl) << what;
    if (bd.len % 32) {
      EXPECT_EQ(bm[words - 1] >> (bd.len % 32), 0u) << what << ": bits past the block";
    }
    const std::vector<uint8_t> ref = block_literals(bd, src, seqs);
    ASSERT_EQ(nl, ref.size()) << what;
    std::vector<uint8_t> lits(bd.len);
    std::vector<uint32_t> hist(256, 0xFFFF);
    ASSERT_EQ(enc::gather_marked_literals(src, bd.len, bm.data(), lits.data(), hist.data()), nl) << what;
    lits.resize(nl);
    EXPECT_TRUE(lits == ref) << what;
    EXPECT_TRUE(hist == data::histogram(ref)) << what;
  });
  EXPECT_GT(blocks, 100u);
}

// Ranks: the present symbols sorted by (count, symbol), as a sort says.
TEST(ZstdEntropySteps, SymbolRanksSortByCountThenSymbol) {
  std::vector<std::vector<uint32_t>> hists;
  for_each_block([&](const std::string&, const BlockDesc& bd, const uint8_t* src, const Sequence* seqs) {
    hists.push_back(data::histogram(block_literals(bd, src, seqs)));
  });
  for (const auto& [name, lits] : data::literal_edge_cases()) hists.push_back(data::histogram(lits));
  std::mt19937 rng(11);
  for (int round = 0; round < 100; ++round) {  // many ties
    std::vector<uint32_t> h(256, 0);
    for (int k = 0; k < 1 + round * 2; ++k) h[rng() % 256] = 1 + rng() % 3;
    hists.push_back(h);
  }
  for (const auto& h : hists) {
    std::vector<uint8_t> want;
    for (uint32_t s = 0; s < 256; ++s)
      if (h[s]) want.push_back(uint8_t(s));
    std::sort(want.begin(), want.end(), [&](uint8_t a, uint8_t b) { return h[a] != h[b] ? h[a] < h[b] : a < b; });
    std::vector<uint8_t> order(256, 0);
    enc::huf_rank_symbols(h.data(), order.data());
    order.resize(want.size());
    ASSERT_TRUE(order == want);
  }
}

// The plan: raw under 64 literals, RLE for one symbol, else a Huffman table
// whose lengths (<= 11) form a complete prefix code and whose canonical codes
// tile the code space; the same with the ranked order handed in (the GPU's
// way); the estimate is the literals' coded size.
TEST(ZstdEntropySteps, HuffmanPlanIsACompletePrefixCode) {
  std::vector<std::pair<std::string, std::vector<uint8_t>>> cases = data::literal_edge_cases();
  for_each_block([&](const std::string& what, const BlockDesc& bd, const uint8_t* src, const Sequence* seqs) {
    cases.push_back({what, block_literals(bd, src, seqs)});
  });
  size_t huffman = 0;
  for (const auto& [what, lits] : cases) {
    const uint32_t nl = uint32_t(lits.size());
    const std::vector<uint32_t> h = data::histogram(lits);
    uint32_t distinct = 0;
    for (uint32_t c : h) distinct += c != 0;
    enc::HufTable t, t2;
    uint8_t tree[160], tree2[160];
    enc::LitPlanScratch ws;
    const enc::LitPlan p = enc::plan_literals(nl, h.data(), t, tree, ws);
    if (nl > 0 && distinct == 1) {
      EXPECT_EQ(p.mode, enc::LitMode::kRle) << what;
      EXPECT_EQ(p.rle_sym, lits[0]) << what;
      continue;
    }
    if (nl < 64) {
      EXPECT_EQ(p.mode, enc::LitMode::kRaw) << what;
    }
    if (p.mode != enc::LitMode::kHuffman) continue;
    huffman++;
    uint8_t order[256];
    enc::huf_rank_symbols(h.data(), order);
    const enc::LitPlan p2 = enc::plan_literals(nl, h.data(), t2, tree2, ws, order);
    ASSERT_EQ(p2.tree, p.tree) << what;
    EXPECT_TRUE(std::equal(tree, tree + p.tree, tree2)) << what;
    const uint32_t m = t.max_bits;
    ASSERT_GE(m, 1u) << what;
    ASSERT_LE(m, enc::kHufMaxBits) << what;
    std::vector<std::pair<uint32_t, uint32_t>> spans;  // [first, last) of each code in m-bit space
    uint32_t last = 0, longest = 0;
    uint64_t bits = 0;
    for (uint32_t s = 0; s < 256; ++s) {
      EXPECT_EQ(t.len[s], t2.len[s]) << what;
      EXPECT_EQ(t.code[s], t2.code[s]) << what;
      if (!h[s]) {
        EXPECT_EQ(t.len[s], 0) << what << " symbol " << s;
        continue;
      }
      ASSERT_GE(t.len[s], 1) << what << " symbol " << s;
      ASSERT_LE(t.len[s], m) << what << " symbol " << s;
      ASSERT_LT(t.code[s], 1u << t.len[s]) << what << " symbol " << s;
      spans.push_back({uint32_t(t.code[s]) << (m - t.len[s]), uint32_t(t.code[s] + 1) << (m - t.len[s])});
      last = s;
      longest = std::max<uint32_t>(longest, t.len[s]);
      bits += uint64_t(h[s]) * t.len[s];
    }
    EXPECT_EQ(longest, m) << what;
    EXPECT_EQ(t.last_sym, last) << what;
    std::sort(spans.begin(), spans.end());
    uint32_t at = 0;
    for (const auto& [a, b] : spans) {
      ASSERT_EQ(a, at) << what << ": codes overlap or leave a hole";
      at = b;
    }
    EXPECT_EQ(at, 1u << m) << what << ": not a complete code";
    EXPECT_EQ(enc::huf_stream_bits(h.data(), t), bits) << what;
  }
  EXPECT_GT(huffman, 50u);
}

// A frame header of a 2^window_log window and no content size: the blocks
// of a test may be larger than their content, not larger than the window
// (a single-segment frame's window is its content).
size_t frame_header_without_size(uint8_t* out, uint32_t window_log) {
  enc::put_le32(out, 0xFD2FB528u);
  out[4] = 0;
  out[5] = uint8_t((window_log - 10) << 3);
  return 6;
}

// A block made of one literals section and no sequence, in a frame of its own.
std::vector<uint8_t> literals_frame(const uint8_t* section, size_t size) {
  std::vector<uint8_t> f(enc::kFrameHeaderMax + 3 + size + 1);
  size_t p = frame_header_without_size(f.data(), 17);
  enc::write_block_header(f.data() + p, true, 2, uint32_t(size + 1));
  p += 3;
  std::copy(section, section + size, f.begin() + long(p));
  p += size;
  f[p++] = 0;  // no sequences
  f.resize(p);
  return f;
}

// Every literals section the steps make (raw, RLE, Huffman with one or four
// streams, direct or FSE-coded weights) is read back by libzstd.
TEST(ZstdEntropySteps, LiteralsSectionDecodesWithLibzstd) {
  std::vector<std::pair<std::string, std::vector<uint8_t>>> cases = data::literal_edge_cases();
  for_each_block([&](const std::string& what, const BlockDesc& bd, const uint8_t* src, const Sequence* seqs) {
    cases.push_back({what, block_literals(bd, src, seqs)});
  });
  size_t raw = 0, rle = 0, one_stream = 0, four_streams = 0, direct_weights = 0, fse_weights = 0;
  for (const auto& [what, lits] : cases) {
    const uint32_t nl = uint32_t(lits.size());
    // libzstd takes compressed blocks of 3 bytes and more, and none larger
    // than a block (the encoder stores those raw).
    if (nl == 0 || nl + 8 > enc::kMaxBlock) continue;
    const std::vector<uint32_t> h = data::histogram(lits);
    std::vector<uint8_t> section(nl + 8);
    const size_t size = enc::encode_literals(lits.data(), nl, h.data(), section.data());
    ASSERT_LE(size, nl + 3u) << what;
    const uint32_t type = section[0] & 3;
    raw += type == 0;
    rle += type == 1;
    if (type == 2) {
      const size_t lh = enc::huf_lit_header_size(nl);
      ((section[0] >> 2) & 3) == 0 ? one_stream++ : four_streams++;
      section[lh] < 128 ? fse_weights++ : direct_weights++;
    }
    const std::vector<uint8_t> frame = literals_frame(section.data(), size);
    std::vector<uint8_t> back(nl + 1);
    const size_t r = ZSTD_decompress(back.data(), back.size(), frame.data(), frame.size());
    ASSERT_FALSE(ZSTD_isError(r)) << what << ": " << ZSTD_getErrorName(r);
    back.resize(r);
    ASSERT_TRUE(back == lits) << what;
  }
  EXPECT_GT(raw, 0u);
  EXPECT_GT(rle, 0u);
  EXPECT_GT(one_stream, 0u);
  EXPECT_GT(four_streams, 0u);
  EXPECT_GT(direct_weights, 0u);
  EXPECT_GT(fse_weights, 0u);
}

// The four streams: the RFC's split (three of (nl + 3) / 4 literals, the
// rest last), sizes that add up, refused exactly when one byte short.
TEST(ZstdEntropySteps, FourStreamsSplitAndFit) {
  size_t checked = 0;
  for_each_block([&](const std::string& what, const BlockDesc& bd, const uint8_t* src, const Sequence* seqs) {
    const std::vector<uint8_t> lits = block_literals(bd, src, seqs);
    const uint32_t nl = uint32_t(lits.size());
    if (nl < 256) return;
    const std::vector<uint32_t> h = data::histogram(lits);
    enc::HufTable t;
    uint8_t tree[160];
    enc::LitPlanScratch ws;
    if (enc::plan_literals(nl, h.data(), t, tree, ws).mode != enc::LitMode::kHuffman) return;
    uint32_t at = 0;
    for (uint32_t k = 0; k < 4; ++k) {
      uint32_t a, b;
      enc::huf_stream_range(nl, k, a, b);
      ASSERT_EQ(a, at) << what;
      if (k < 3) {
        ASSERT_EQ(b - a, (nl + 3) / 4) << what;
      }
      at = b;
    }
    ASSERT_EQ(at, nl) << what;
    std::vector<uint8_t> out(nl + 64), again(nl + 64);
    uint32_t sizes[4], sizes2[4];
    const size_t total = enc::huf_encode_4streams(t, lits.data(), nl, out.data(), out.size(), sizes);
    ASSERT_GT(total, 0u) << what;
    EXPECT_EQ(size_t(sizes[0]) + sizes[1] + sizes[2] + sizes[3], total) << what;
    EXPECT_EQ(enc::huf_encode_4streams(t, lits.data(), nl, again.data(), total, sizes2), total) << what;
    EXPECT_TRUE(std::equal(out.begin(), out.begin() + long(total), again.begin())) << what;
    EXPECT_EQ(enc::huf_encode_4streams(t, lits.data(), nl, again.data(), total - 1, sizes2), 0u) << what;
    checked++;
  });
  EXPECT_GT(checked, 20u);
}

// --------------------------------------------------------------- sequences

// RFC 8878 3.1.2.5 from the decoder's side: the offset of offset value ofv
// and the update of the repeat offsets rep.
uint32_t decode_offset(uint32_t ofv, bool has_lits, uint32_t* rep) {
  if (ofv > 3) {
    rep[2] = rep[1];
    rep[1] = rep[0];
    rep[0] = ofv - 3;
    return rep[0];
  }
  const uint32_t idx = ofv - 1 + (has_lits ? 0 : 1);  // 0 rep0, 1 rep1, 2 rep2, 3 rep0 - 1
  if (idx == 0) return rep[0];
  const uint32_t o = idx == 3 ? rep[0] - 1 : rep[idx];
  if (idx != 1) rep[2] = rep[1];
  rep[1] = rep[0];
  rep[0] = o;
  return o;
}

// Offset values decode to the offsets; a block after the first must decode
// the same from any history the previous block leaves (slots it has not set
// are never used).
TEST(ZstdEntropySteps, OffsetValuesDecodeBackToTheOffsets) {
  size_t repeats = 0;
  for_each_block([&](const std::string& what, const BlockDesc& bd, const uint8_t*, const Sequence* seqs) {
    std::vector<uint32_t> ofv(bd.seq_count + 1);
    const bool frame_start = bd.pos == 0;
    enc::offset_values(seqs, bd.seq_count, frame_start, ofv.data());
    uint32_t rep[3] = {1, 4, 8};
    if (!frame_start) {
      rep[0] = 0x1234567;
      rep[1] = 0x2345678;
      rep[2] = 0x3456789;
    }
    for (uint32_t i = 0; i < bd.seq_count; ++i) {
      ASSERT_GE(ofv[i], 1u) << what;
      repeats += ofv[i] <= 3;
      ASSERT_EQ(decode_offset(ofv[i], seqs[i].lit_len > 0, rep), seqs[i].offset) << what << " sequence " << i;
    }
  });
  EXPECT_GT(repeats, 1000u);
}

// A code by the RFC's tables: the last one whose base is <= v.
uint32_t code_by_table(uint32_t v, uint32_t (*base)(uint32_t), uint32_t max_code) {
  uint32_t c = 0;
  while (c < max_code && base(c + 1) <= v) c++;
  return c;
}

TEST(ZstdEntropySteps, CodeCountsMatchTheRfcTables) {
  for_each_block([&](const std::string& what, const BlockDesc& bd, const uint8_t*, const Sequence* seqs) {
    const uint32_t n = bd.seq_count;
    std::vector<uint32_t> ofv(n + 1);
    enc::offset_values(seqs, n, bd.pos == 0, ofv.data());
    uint32_t cnt[3][enc::kFseMaxSymbols];
    std::fill(&cnt[0][0], &cnt[0][0] + 3 * enc::kFseMaxSymbols, 0xFFFFu);
    enc::count_seq_codes(seqs, ofv.data(), n, cnt);
    uint32_t want[3][enc::kFseMaxSymbols] = {};
    for (uint32_t i = 0; i < n; ++i) {
      want[0][code_by_table(seqs[i].lit_len, enc::ll_base, 35)]++;
      uint32_t of = 0;
      while ((2u << of) <= ofv[i]) of++;
      want[1][of]++;
      want[2][code_by_table(seqs[i].match_len, enc::ml_base, 52)]++;
    }
    for (int w = 0; w < 3; ++w)
      ASSERT_TRUE(std::equal(cnt[w], cnt[w] + enc::kFseMaxSymbols, want[w])) << what << " stream " << w;
  });
}

// RFC 8878 4.1.1 from the decoder's side: the accuracy log and the counts
// (-1: "less than 1") of an FSE table description. Returns the bytes it
// takes, 0 when it does not end on a full table.
size_t read_table_description(const uint8_t* p, size_t n, uint32_t* log, std::vector<int>* counts) {
  uint64_t at = 0;
  auto peek = [&](uint32_t nb) {
    uint32_t v = 0;
    for (uint32_t i = 0; i < nb; ++i)
      if ((at + i) / 8 < n) v |= uint32_t((p[(at + i) / 8] >> ((at + i) % 8)) & 1u) << i;
    return v;
  };
  *log = peek(4) + 5;
  at = 4;
  int remaining = (1 << *log) + 1, threshold = 1 << *log;
  uint32_t nb = *log + 1;
  counts->clear();
  while (remaining > 1 && counts->size() < 256) {
    const int max = 2 * threshold - 1 - remaining;
    int value = int(peek(nb - 1));
    if (value < max) {
      at += nb - 1;
    } else {
      value = int(peek(nb));
      if (value >= threshold) value -= max;
      at += nb;
    }
    const int count = value - 1;
    remaining -= count < 0 ? -count : count;
    counts->push_back(count);
    if (count == 0) {  // repeat flags: 2 bits each, 3 means another follows
      for (uint32_t flag = 3; flag == 3;) {
        flag = peek(2);
        at += 2;
        counts->insert(counts->end(), flag, 0);
      }
    }
    while (remaining < threshold) {
      nb--;
      threshold >>= 1;
    }
  }
  return remaining == 1 ? size_t((at + 7) / 8) : 0;
}

// Checks one stream's table choice: the RLE rule, the highest code, and for
// FSE_Compressed counts that sum to 1 << log over exactly the present codes,
// described so that a decoder reads them back; every encoder table's states
// a permutation of [size, 2 size). Returns the mode.
uint32_t check_seq_table(const std::string& what, int w, const uint32_t* cnt, uint32_t nseq) {
  int16_t norm[enc::kFseMaxSymbols];
  uint8_t desc[enc::kSeqTableDescMax];
  enc::FseCTable ct;
  enc::FseBuildScratch ws;
  const enc::SeqStreamPlan plan = enc::build_seq_table(w, cnt, nseq, norm, desc, ct, ws);
  uint32_t present = 0, highest = 0;
  for (uint32_t s = 0; s < enc::kFseMaxSymbols; ++s)
    if (cnt[s]) {
      present++;
      highest = s;
    }
  EXPECT_EQ(plan.max_code, highest) << what;
  EXPECT_EQ(plan.mode == 1, present == 1 && nseq > 2) << what;
  if (plan.mode == 1) {
    EXPECT_EQ(ct.log, 0u) << what;
    return plan.mode;
  }
  if (plan.mode == 0) {
    EXPECT_LE(highest, enc::predefined_max_sym(w)) << what;
    EXPECT_EQ(ct.log, enc::predefined_log(w)) << what;
  } else {
    EXPECT_EQ(plan.mode, 2u) << what;
    EXPECT_GE(ct.log, 5u) << what;
    EXPECT_LE(ct.log, enc::max_log_of(w)) << what;
    int sum = 0;
    for (uint32_t s = 0; s <= highest; ++s) {
      EXPECT_EQ(norm[s] != 0, cnt[s] != 0) << what << " code " << s;
      sum += norm[s] < 0 ? 1 : norm[s];
    }
    EXPECT_EQ(sum, 1 << ct.log) << what;
    uint32_t log = 0;
    std::vector<int> counts;
    EXPECT_EQ(read_table_description(desc, plan.desc_size, &log, &counts), plan.desc_size) << what;
    EXPECT_EQ(log, ct.log) << what;
    EXPECT_TRUE(counts == std::vector<int>(norm, norm + highest + 1)) << what;
  }
  std::vector<uint16_t> states(ct.state, ct.state + (1u << ct.log));
  std::sort(states.begin(), states.end());
  for (uint32_t i = 0; i < states.size(); ++i) EXPECT_EQ(states[i], (1u << ct.log) + i) << what;
  return plan.mode;
}

TEST(ZstdEntropySteps, SeqTablesAreValidAndDescribed) {
  size_t modes[3] = {0, 0, 0};
  for_each_block([&](const std::string& what, const BlockDesc& bd, const uint8_t*, const Sequence* seqs) {
    if (bd.seq_count == 0) return;
    std::vector<uint32_t> ofv(bd.seq_count);
    enc::offset_values(seqs, bd.seq_count, bd.pos == 0, ofv.data());
    uint32_t cnt[3][enc::kFseMaxSymbols];
    enc::count_seq_codes(seqs, ofv.data(), bd.seq_count, cnt);
    for (int w = 0; w < 3; ++w) modes[check_seq_table(what + " stream " + std::to_string(w), w, cnt[w], bd.seq_count)]++;
  });
  // One code once, twice (too few for RLE), three times; every code.
  for (int w = 0; w < 3; ++w)
    for (uint32_t n : {1u, 2u, 3u, 1000u}) {
      uint32_t cnt[enc::kFseMaxSymbols] = {};
      cnt[w == 1 ? 20 : 30] = n;
      modes[check_seq_table("one code x " + std::to_string(n), w, cnt, n)]++;
      const uint32_t codes = enc::predefined_max_sym(w) + 1;
      for (uint32_t s = 0; s < codes; ++s) cnt[s] = 1 + s * n % 7;
      uint32_t total = 0;
      for (uint32_t s = 0; s < codes; ++s) total += cnt[s];
      modes[check_seq_table("every code", w, cnt, total)]++;
    }
  EXPECT_GT(modes[0], 0u);
  EXPECT_GT(modes[1], 0u);
  EXPECT_GT(modes[2], 0u);
}

// The header: the count as the RFC reads it, the modes, RLE codes and table
// descriptions in stream order; refused (nothing written) one byte short.
TEST(ZstdEntropySteps, SeqHeaderReadsBackOrRefuses) {
  uint8_t desc[3][enc::kSeqTableDescMax];
  for (int w = 0; w < 3; ++w)
    for (uint32_t k = 0; k < enc::kSeqTableDescMax; ++k) desc[w][k] = uint8_t(w * 100 + k);
  const enc::SeqStreamPlan plans[][3] = {
      {{0, 20, 0}, {0, 10, 0}, {0, 30, 0}},
      {{1, 17, 0}, {2, 12, 9}, {1, 3, 0}},
      {{2, 35, 40}, {2, 28, 33}, {2, 52, 71}},
  };
  for (const auto& plan : plans)
    for (uint32_t nseq : {1u, 127u, 128u, 0x7EFFu, 0x7F00u, 0x7F00u + 300, 43690u}) {
      const std::string what = "nseq " + std::to_string(nseq);
      uint8_t out[400];
      std::fill(out, out + sizeof(out), 0xEE);
      const uint32_t size = enc::write_seq_header(out, sizeof(out), nseq, plan, desc);
      ASSERT_GT(size, 0u) << what;
      uint32_t p = 0, n = out[p++];
      if (n == 255) {
        n = out[p] + (uint32_t(out[p + 1]) << 8) + 0x7F00;
        p += 2;
      } else if (n >= 128) {
        n = ((n - 128) << 8) + out[p++];
      }
      EXPECT_EQ(n, nseq) << what;
      const uint8_t modes = out[p++];
      EXPECT_EQ(modes & 3, 0) << what;
      for (int w = 0; w < 3; ++w) {
        EXPECT_EQ((modes >> (6 - 2 * w)) & 3u, plan[w].mode) << what;
        if (plan[w].mode == 1) {
          EXPECT_EQ(out[p++], plan[w].max_code) << what;
        }
        if (plan[w].mode == 2) {
          EXPECT_TRUE(std::equal(desc[w], desc[w] + plan[w].desc_size, out + p)) << what;
          p += plan[w].desc_size;
        }
      }
      EXPECT_EQ(p, size) << what;
      EXPECT_EQ(out[size], 0xEE) << what;
      uint8_t short_out[400];
      std::fill(short_out, short_out + sizeof(short_out), 0xEE);
      EXPECT_EQ(enc::write_seq_header(short_out, size - 1, nseq, plan, desc), 0u) << what;
      EXPECT_TRUE(std::all_of(short_out, short_out + sizeof(short_out), [](uint8_t c) { return c == 0xEE; })) << what;
    }
}

// Every block as raw literals and a sequences section made of the steps
// (counts, tables, header, bitstream), in frames that libzstd decodes to
// the inputs; a bitstream is refused one byte short.
TEST(ZstdEntropySteps, SequencesSectionDecodesWithLibzstd) {
  size_t coded = 0;
  for (const data::ParsedInput& in : data::step_inputs()) {
    std::vector<uint8_t> frame(enc::frame_bound(in.data.size()) + 64);
    size_t p = frame_header_without_size(frame.data(), 18);
    for (size_t b = 0; b < in.blocks.size(); ++b) {
      const BlockDesc& bd = in.blocks[b];
      const uint8_t* src = in.data.data() + bd.src;
      const Sequence* seqs = in.seqs.data() + bd.seq_first;
      const uint32_t n = bd.seq_count;
      const bool last = b + 1 == in.blocks.size();
      const std::vector<uint8_t> lits = block_literals(bd, src, seqs);
      std::vector<uint8_t> content(lits.size() + 3 + 3 + 4 * (3 * enc::kSeqTableDescMax + 20 * size_t(n)) + 64);
      size_t size = enc::raw_literals(lits.data(), uint32_t(lits.size()), content.data());
      if (n == 0) {
        size += enc::seq_count_header(content.data() + size, 0);
      } else {
        std::vector<uint32_t> ofv(n);
        enc::offset_values(seqs, n, bd.pos == 0, ofv.data());
        uint32_t cnt[3][enc::kFseMaxSymbols];
        enc::count_seq_codes(seqs, ofv.data(), n, cnt);
        enc::SeqStreamPlan plan[3];
        enc::FseCTable ct[3];
        int16_t norm[3][enc::kFseMaxSymbols];
        uint8_t desc[3][enc::kSeqTableDescMax];
        enc::FseBuildScratch ws;
        for (int w = 0; w < 3; ++w) plan[w] = enc::build_seq_table(w, cnt[w], n, norm[w], desc[w], ct[w], ws);
        const uint32_t hs = enc::write_seq_header(content.data() + size, content.size() - size, n, plan, desc);
        ASSERT_GT(hs, 0u) << in.name;
        size += hs;
        const size_t bs = enc::write_seq_bitstream(seqs, ofv.data(), n, ct, content.data() + size, content.size() - size);
        ASSERT_GT(bs, 0u) << in.name;
        std::vector<uint8_t> tight(bs);
        EXPECT_EQ(enc::write_seq_bitstream(seqs, ofv.data(), n, ct, tight.data(), bs), bs) << in.name;
        EXPECT_TRUE(std::equal(tight.begin(), tight.end(), content.begin() + long(size))) << in.name;
        EXPECT_EQ(enc::write_seq_bitstream(seqs, ofv.data(), n, ct, tight.data(), bs - 1), 0u) << in.name;
        size += bs;
      }
      if (size < enc::kMaxBlock) {
        enc::write_block_header(frame.data() + p, last, 2, uint32_t(size));
        std::copy(content.begin(), content.begin() + long(size), frame.begin() + long(p + 3));
        p += 3 + size;
        coded += n > 0;
      } else {  // raw literals and sequences would overflow a block
        p += enc::raw_block(src, bd.len, last, frame.data() + p);
      }
    }
    frame.resize(p);
    std::vector<uint8_t> back(in.data.size() + 1);
    const size_t r = ZSTD_decompress(back.data(), back.size(), frame.data(), frame.size());
    ASSERT_FALSE(ZSTD_isError(r)) << in.name << ": " << ZSTD_getErrorName(r);
    back.resize(r);
    ASSERT_TRUE(back == in.data) << in.name;
  }
  EXPECT_GT(coded, 100u);
}

}  // namespace
