// zstd stage 2's cooperative steps on the GPU against their CPU twins: every
// block of the data kinds and sequence shapes (zstd_entropy_data.h) goes
// through the kernels' steps, in their order and shared memory, on the GPU
// (zstd_entropy_step_runs.cu), and what each step made must equal what its
// CPU twin (kernels/zstd/zstd_entropy_steps.h) makes of the same input; the
// Huffman plan, its parts and the four streams also on edge histograms.
// Skipped without a GPU; with one, every test checks that all its test CTAs
// ran to the end.
#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <string>
#include <vector>

#include "gpu/zstd_entropy_step_runs.h"
#include "kernels/common/cuda_check.h"
#include "kernels/zstd/zstd_entropy_block.h"
#include "unit/zstd_entropy_data.h"

namespace {

namespace enc = gpo::zstd::enc;
namespace data = gpo::test::zstd_data;
namespace steps = gpo::test::zstd_steps;
using gpo::zstd::gpu::BlockDesc;
using gpo::zstd::gpu::Sequence;

class GpuZstdEntropySteps : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string why;
    if (gpo::cuda::device_count(&why) <= 0) GTEST_SKIP() << "no usable CUDA device: " << why;
  }
};

// The entries of an FSE encoder table that its log and symbols 0..max_sym use.
void expect_same_table(const enc::FseCTable& gpu, const enc::FseCTable& cpu, uint32_t max_sym, const std::string& what) {
  ASSERT_EQ(gpu.log, cpu.log) << what;
  if (cpu.log == 0) return;
  EXPECT_TRUE(std::equal(cpu.state, cpu.state + (1u << cpu.log), gpu.state)) << what << ": states";
  EXPECT_TRUE(std::equal(cpu.find_state, cpu.find_state + max_sym + 1, gpu.find_state)) << what << ": find_state";
  EXPECT_TRUE(std::equal(cpu.delta_nb_bits, cpu.delta_nb_bits + max_sym + 1, gpu.delta_nb_bits))
      << what << ": delta_nb_bits";
}

struct CpuPlan {
  uint8_t order[256];
  enc::LitPlan plan;
  enc::HufTable table;
  uint8_t tree[160];
};

// The CPU twins of the ranks and the plan.
CpuPlan cpu_plan(const std::vector<uint32_t>& hist, uint32_t nl) {
  CpuPlan c;
  enc::huf_rank_symbols(hist.data(), c.order);
  enc::LitPlanScratch ws;
  c.plan = enc::plan_literals(nl, hist.data(), c.table, c.tree, ws, c.order);
  return c;
}

// Ranks, plan, and for Huffman the whole table and the weights' description.
void expect_same_plan(const steps::PlanSteps& gpu, const CpuPlan& cpu, const std::string& what) {
  ASSERT_TRUE(std::equal(gpu.order.begin(), gpu.order.end(), cpu.order)) << what << ": ranks";
  const enc::LitPlan& p = cpu.plan;
  ASSERT_EQ(gpu.plan.mode, p.mode) << what;
  EXPECT_EQ(gpu.plan.rle_sym, p.rle_sym) << what;
  if (p.mode != enc::LitMode::kHuffman) return;
  EXPECT_EQ(gpu.plan.lh, p.lh) << what;
  EXPECT_EQ(gpu.plan.cap, p.cap) << what;
  ASSERT_EQ(gpu.plan.tree, p.tree) << what;
  EXPECT_TRUE(std::equal(gpu.tree.begin(), gpu.tree.end(), cpu.tree)) << what << ": weights";
  EXPECT_EQ(gpu.table.max_bits, cpu.table.max_bits) << what;
  EXPECT_EQ(gpu.table.last_sym, cpu.table.last_sym) << what;
  EXPECT_TRUE(std::equal(cpu.table.len, cpu.table.len + 256, gpu.table.len)) << what << ": lengths";
  EXPECT_TRUE(std::equal(cpu.table.code, cpu.table.code + 256, gpu.table.code)) << what << ": codes";
}

// Pass 1 (offset values, code counts), the tables and header of lanes 0-2,
// pass 2 (the bitstream), block by block.
TEST_F(GpuZstdEntropySteps, SequenceStepsMatchCpuTwins) {
  size_t checked = 0;
  for (const data::ParsedInput& in : data::step_inputs()) {
    uint32_t ran = 0;
    const std::vector<steps::SeqSteps> got = steps::run_sequence_steps(in.blocks, in.seqs, &ran);
    ASSERT_EQ(ran, in.blocks.size()) << in.name << ": test CTAs that ran on the GPU";
    for (size_t b = 0; b < in.blocks.size(); ++b) {
      const BlockDesc& bd = in.blocks[b];
      const Sequence* s = in.seqs.data() + bd.seq_first;
      const uint32_t n = bd.seq_count;
      const std::string what = in.name + " block " + std::to_string(b);
      const steps::SeqSteps& g = got[b];
      if (n == 0) continue;
      std::vector<uint32_t> ofv(n);
      enc::offset_values(s, n, bd.pos == 0, ofv.data());
      ASSERT_TRUE(g.ofv == ofv) << what << ": offset values";
      uint32_t cnt[3][enc::kFseMaxSymbols];
      enc::count_seq_codes(s, ofv.data(), n, cnt);
      ASSERT_TRUE(std::equal(&cnt[0][0], &cnt[0][0] + 3 * enc::kFseMaxSymbols, &g.cnt[0][0])) << what << ": counts";
      enc::SeqStreamPlan plan[3];
      enc::FseCTable ct[3];
      int16_t norm[3][enc::kFseMaxSymbols];
      uint8_t desc[3][enc::kSeqTableDescMax];
      enc::FseBuildScratch ws;
      for (int w = 0; w < 3; ++w) {
        plan[w] = enc::build_seq_table(w, cnt[w], n, norm[w], desc[w], ct[w], ws);
        const std::string stream = what + " stream " + std::to_string(w);
        ASSERT_EQ(g.plan[w].mode, plan[w].mode) << stream;
        EXPECT_EQ(g.plan[w].max_code, plan[w].max_code) << stream;
        EXPECT_EQ(g.plan[w].desc_size, plan[w].desc_size) << stream;
        expect_same_table(g.ct[w], ct[w], plan[w].mode == 0 ? enc::predefined_max_sym(w) : plan[w].max_code, stream);
      }
      uint8_t header[320];
      const uint32_t hs = enc::write_seq_header(header, sizeof(header), n, plan, desc);
      EXPECT_TRUE(g.header == std::vector<uint8_t>(header, header + hs)) << what << ": header";
      std::vector<uint8_t> bits(16 * size_t(n) + 64);
      bits.resize(enc::write_seq_bitstream(s, ofv.data(), n, ct, bits.data(), bits.size()));
      ASSERT_FALSE(bits.empty()) << what;
      EXPECT_TRUE(g.bitstream == bits) << what << ": bitstream (" << g.bitstream.size() << " B on the GPU, "
                                       << bits.size() << " B on the CPU)";
      checked++;
    }
  }
  EXPECT_GT(checked, 100u);
}

// Positions, gather and histogram, ranks, plan, and the four streams placed
// behind the head, block by block, with the source aligned and not.
TEST_F(GpuZstdEntropySteps, LiteralStepsMatchCpuTwins) {
  size_t packed = 0, checked = 0;
  for (uint32_t misalign : {0u, 5u})
    for (const data::ParsedInput& in : data::step_inputs()) {
      uint32_t ran = 0;
      const std::vector<steps::LitSteps> got = steps::run_literal_steps(in.blocks, in.seqs, in.data, misalign, &ran);
      ASSERT_EQ(ran, in.blocks.size()) << in.name << ": test CTAs that ran on the GPU";
      for (size_t b = 0; b < in.blocks.size(); ++b) {
        const BlockDesc& bd = in.blocks[b];
        const uint8_t* src = in.data.data() + bd.src;
        const std::string what = in.name + " block " + std::to_string(b) + " misalign " + std::to_string(misalign);
        const steps::LitSteps& g = got[b];
        std::vector<uint32_t> bitmap((bd.len + 31) / 32);
        const uint32_t nl = enc::mark_literal_positions(in.seqs.data() + bd.seq_first, bd.seq_count, bd.len, bitmap.data());
        ASSERT_EQ(g.nl, nl) << what;
        ASSERT_TRUE(g.bitmap == bitmap) << what << ": positions";
        std::vector<uint8_t> lits(bd.len);
        std::vector<uint32_t> hist(256);
        lits.resize(enc::gather_marked_literals(src, bd.len, bitmap.data(), lits.data(), hist.data()));
        ASSERT_TRUE(g.lits == lits) << what << ": gather";
        ASSERT_TRUE(g.hist == hist) << what << ": histogram";
        const CpuPlan cpu = cpu_plan(hist, nl);
        expect_same_plan(g.planned, cpu, what);
        // Four streams: the CPU encoder's section, Huffman when its streams fit.
        bool fits = false;
        std::vector<uint8_t> section(nl + 8);
        if (cpu.plan.mode == enc::LitMode::kHuffman && nl >= 256) {
          section.resize(enc::encode_planned_literals(cpu.plan, cpu.table, cpu.tree, lits.data(), nl, section.data()));
          fits = (section[0] & 3) == 2;
        }
        ASSERT_EQ(g.packed, fits) << what;
        if (fits) {
          EXPECT_TRUE(g.section == section) << what << ": four-stream section";
        }
        packed += fits;
        checked++;
      }
    }
  EXPECT_GT(checked, 200u);
  EXPECT_GT(packed, 20u);
}

// A tree deeper than 11 bits (the build halves the counts) with these counts.
bool too_deep(const std::vector<uint32_t>& hist) {
  uint8_t order[256];
  enc::huf_rank_symbols(hist.data(), order);
  const uint32_t n = uint32_t(std::count_if(hist.begin(), hist.end(), [](uint32_t c) { return c != 0; }));
  if (n < 2) return false;
  enc::HufBuildScratch ws;
  for (uint32_t i = 0; i < n; ++i) ws.w[i] = hist[order[i]];
  enc::huf_merge(ws.w, n, ws.node_w, ws.parent);
  return enc::huf_depths(ws.parent, n, ws.depth) > enc::kHufMaxBits;
}

// Histograms of at most a block of literals beyond the blocks': the literal
// edge cases, powers of two over 17 symbols (16 levels deep), two symbols far
// apart, every symbol once, random ones.
std::vector<std::pair<std::string, std::vector<uint32_t>>> edge_histograms() {
  std::vector<std::pair<std::string, std::vector<uint32_t>>> v;
  for (const auto& [name, lits] : data::literal_edge_cases()) v.push_back({name, data::histogram(lits)});
  std::vector<uint32_t> pow2(256, 0);
  for (uint32_t s = 0; s < 17; ++s) pow2[s * 13] = 1u << (s ? s - 1 : 0);
  v.push_back({"powers of two over 17 symbols", pow2});
  std::vector<uint32_t> two(256, 0);
  two[3] = 1;
  two[250] = 100000;
  v.push_back({"two symbols", two});
  v.push_back({"every symbol once", std::vector<uint32_t>(256, 1)});
  std::mt19937 rng(21);
  for (int round = 0; round < 64; ++round) {
    std::vector<uint32_t> h(256, 0);
    const int present = 2 + int(rng() % 255);
    for (int k = 0; k < present; ++k) h[rng() % 256] = 1 + (round % 2 ? rng() % 4 : rng() % 500);
    v.push_back({"random " + std::to_string(round), h});
  }
  return v;
}

uint32_t total(const std::vector<uint32_t>& hist) {
  uint32_t n = 0;
  for (uint32_t c : hist) n += c;
  return n;
}

TEST_F(GpuZstdEntropySteps, PlanStepsMatchCpuOnEdgeHistograms) {
  const auto cases = edge_histograms();
  std::vector<std::vector<uint32_t>> hists;
  std::vector<uint32_t> nls;
  size_t deep = 0;
  for (const auto& [name, h] : cases) {
    hists.push_back(h);
    nls.push_back(total(h));
    deep += too_deep(h);
  }
  EXPECT_GT(deep, 0u);
  uint32_t ran = 0;
  const std::vector<steps::PlanSteps> got = steps::run_plan_steps(hists, nls, &ran);
  ASSERT_EQ(ran, cases.size()) << "test CTAs that ran on the GPU";
  for (size_t i = 0; i < cases.size(); ++i) expect_same_plan(got[i], cpu_plan(hists[i], nls[i]), cases[i].first);
}

// The build's parts alone: depths of the two-queue tree, canonical codes of
// the final lengths and the streams' size.
TEST_F(GpuZstdEntropySteps, HuffmanBuildPartsMatchCpu) {
  size_t checked = 0;
  for (const auto& [name, hist] : edge_histograms()) {
    uint8_t order[256];
    enc::huf_rank_symbols(hist.data(), order);
    const uint32_t n = uint32_t(std::count_if(hist.begin(), hist.end(), [](uint32_t c) { return c != 0; }));
    if (n < 2) continue;
    enc::HufBuildScratch ws;
    for (uint32_t i = 0; i < n; ++i) ws.w[i] = hist[order[i]];
    enc::huf_merge(ws.w, n, ws.node_w, ws.parent);
    std::vector<uint16_t> parent(ws.parent, ws.parent + 2 * n - 1);
    parent[2 * n - 2] = 0;  // the root has none
    std::vector<uint8_t> depth(2 * n - 1);
    const uint32_t maxd = enc::huf_depths(parent.data(), n, depth.data());
    enc::HufTable t;
    enc::huf_build(hist.data(), t);
    uint32_t ran = 0;
    const steps::HufParts got = steps::run_huf_parts(parent, n, t, hist, &ran);
    ASSERT_EQ(ran, 1u) << name << ": test CTAs that ran on the GPU";
    EXPECT_EQ(got.maxd, maxd) << name;
    EXPECT_TRUE(got.depth == depth) << name << ": depths";
    enc::HufTable c = t;
    std::fill(c.code, c.code + 256, 0);
    enc::huf_canonical_codes(c, ws);
    EXPECT_TRUE(std::equal(c.code, c.code + 256, got.table.code)) << name << ": codes";
    EXPECT_EQ(got.bits, enc::huf_stream_bits(hist.data(), t)) << name;
    checked++;
  }
  EXPECT_GT(checked, 60u);
}

// The four streams fit in exactly their size, as the CPU's, and not in one
// byte less.
TEST_F(GpuZstdEntropySteps, PackStreamsFitOrRefuseLikeCpu) {
  std::vector<std::pair<std::string, std::vector<uint8_t>>> cases = data::literal_edge_cases();
  for (const data::ParsedInput& in : data::step_inputs())
    if (in.data.size() == 300 * 1024 + 77)  // each kind's three blocks
      for (const BlockDesc& bd : in.blocks) {
        std::vector<uint8_t> lits(bd.len);
        lits.resize(enc::gather_literals(in.data.data() + bd.src, bd.len, in.seqs.data() + bd.seq_first, bd.seq_count,
                                         lits.data()));
        cases.push_back({in.name, lits});
      }
  size_t checked = 0;
  for (const auto& [name, lits] : cases) {
    const uint32_t nl = uint32_t(lits.size());
    if (nl < 256) continue;
    const CpuPlan cpu = cpu_plan(data::histogram(lits), nl);
    if (cpu.plan.mode != enc::LitMode::kHuffman) continue;
    std::vector<uint8_t> streams(2 * size_t(nl) + 64);
    uint32_t sizes[4];
    streams.resize(enc::huf_encode_4streams(cpu.table, lits.data(), nl, streams.data(), streams.size(), sizes));
    ASSERT_FALSE(streams.empty()) << name;
    uint32_t ran = 0;
    const steps::Packed got = steps::run_pack_streams(cpu.table, lits, streams.size(), &ran);
    ASSERT_EQ(ran, 1u) << name << ": test CTAs that ran on the GPU";
    ASSERT_TRUE(got.fits) << name;
    EXPECT_TRUE(std::equal(sizes, sizes + 4, got.sizes)) << name;
    EXPECT_TRUE(got.streams == streams) << name;
    EXPECT_FALSE(steps::run_pack_streams(cpu.table, lits, streams.size() - 1, &ran).fits) << name;
    checked++;
  }
  EXPECT_GT(checked, 5u);
}

}  // namespace
