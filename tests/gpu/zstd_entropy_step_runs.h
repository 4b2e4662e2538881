// The stage 2 kernels' cooperative steps (kernels/zstd/zstd_entropy_steps_gpu.cuh)
// run on the GPU for test_gpu_zstd_entropy_steps: each function launches a
// test kernel (zstd_entropy_step_runs.cu) that calls the device steps in the
// kernels' order and shared memory, and brings back what every step made,
// for the test to compare with the CPU twins. *ran gets the CTAs that reached
// the kernel's end, so a test knows the device code ran. CUDA errors throw
// cuda::Error. Host code only here.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "kernels/zstd/zstd_entropy_steps.h"
#include "kernels/zstd/zstd_find.h"

namespace gpo::test::zstd_steps {

namespace enc = gpo::zstd::enc;
using gpo::zstd::gpu::BlockDesc;
using gpo::zstd::gpu::Sequence;

// One block's sequences section as the sequences kernel's steps made it.
struct SeqSteps {
  std::vector<uint32_t> ofv;              // pass 1: offset values
  uint32_t cnt[3][enc::kFseMaxSymbols];   // and code counts
  enc::SeqStreamPlan plan[3];             // lanes 0-2: each stream's choice
  enc::FseCTable ct[3];                   // and table
  std::vector<uint8_t> header;            // lane 0
  std::vector<uint8_t> bitstream;         // pass 2
};
// The blocks (src, pos, seq_first and seq_count used) with sequences seqs,
// a warp each; a block without sequences gets an empty entry.
std::vector<SeqSteps> run_sequence_steps(const std::vector<BlockDesc>& blocks, const std::vector<Sequence>& seqs,
                                         uint32_t* ran);

// A Huffman plan as the literals kernel's steps made it.
struct PlanSteps {
  std::vector<uint8_t> order;  // ranks: the present symbols
  enc::LitPlan plan;           // the plan
  enc::HufTable table;         // Huffman: the table
  std::vector<uint8_t> tree;   // and the weights' description
};

// One block's literals as the literals kernel's steps made them.
struct LitSteps {
  std::vector<uint32_t> bitmap;  // positions, (len + 31) / 32 words
  uint32_t nl;                   // literals by the scan's totals
  std::vector<uint8_t> lits;     // gather
  std::vector<uint32_t> hist;
  PlanSteps planned;             // ranks and plan
  bool packed;                   // Huffman, nl >= 256: the four streams fit
  std::vector<uint8_t> section;  // and, placed behind the head, the section
};
// The blocks of one input (data), a CTA each; data lies misalign bytes past
// a 16-byte boundary on the device.
std::vector<LitSteps> run_literal_steps(const std::vector<BlockDesc>& blocks, const std::vector<Sequence>& seqs,
                                        const std::vector<uint8_t>& data, uint32_t misalign, uint32_t* ran);

// rank_symbols_cta and plan_literals_cta alone, on the histograms of nls[i]
// literals, a CTA each.
std::vector<PlanSteps> run_plan_steps(const std::vector<std::vector<uint32_t>>& hists,
                                      const std::vector<uint32_t>& nls, uint32_t* ran);

// Parts of the Huffman build: huf_depths_cta on a tree of n leaves (its
// 2n - 1 parent links), huf_canonical_codes_cta on the lengths of `lengths`
// (codes of absent symbols left 0) with the stream bits of hist.
struct HufParts {
  std::vector<uint8_t> depth;
  uint32_t maxd;
  enc::HufTable table;
  uint64_t bits;
};
HufParts run_huf_parts(const std::vector<uint16_t>& parent, uint32_t n, const enc::HufTable& lengths,
                       const std::vector<uint32_t>& hist, uint32_t* ran);

// huf_pack_streams_cta on lits with table t and cap bytes: whether the four
// streams fit, and if so the streams back to back and their sizes.
struct Packed {
  bool fits;
  std::vector<uint8_t> streams;
  uint32_t sizes[4];
};
Packed run_pack_streams(const enc::HufTable& t, const std::vector<uint8_t>& lits, size_t cap, uint32_t* ran);

}  // namespace gpo::test::zstd_steps
