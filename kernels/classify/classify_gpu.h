// Between classify_runner.cpp (host side) and classify_gpu.cu (the kernel):
// the device copies of the tables as plain pointers, and the launcher.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/classify/acl.h"
#include "kernels/classify/classify.h"
#include "kernels/classify/decide.h"
#include "kernels/match/match_gpu.h"

namespace gpo::classify::gpu {

struct DeviceTables {
  acl::View acl;
  RulesView rules;
  match::gpu::MatcherView matcher;  // engineer "match"'s GPU layout (DeviceMatcher::view())
  uint32_t inspect_depth = 0;
};

// The kernel writes this action for a frame it could not decide (more than
// kMaxHits distinct patterns in its payload, or a content position search
// over its budget): the host classifies it again.
inline constexpr uint8_t kActionRetryOnCpu = 0xff;

// Byte comparisons the content position search (contents.h) may spend per frame.
inline constexpr uint32_t kSearchBudget = 1u << 18;

// One batch: frame i is bytes[offsets[i], + lens[i]) with flow context
// flows[i] (FlowBits); offsets are 4-aligned and the buffer is padded to a
// multiple of 4 (the scanner reads words).
void launch_classify(const DeviceTables& t, const uint8_t* bytes, const uint32_t* offsets, const uint32_t* lens,
                     const uint8_t* flows, uint32_t n, Verdict* out, uint32_t max_hits, cudaStream_t stream);

}  // namespace gpo::classify::gpu
