// The GPU classifier's kernel: one thread per frame. Parse (frame_parse.h),
// walk the header-matching slots in file order (acl.h), and scan the payload
// only when a matching rule has contents (decide.h): the same code the CPU
// tests run, so the verdicts are the CPU classifier's.
//
// Contents with positions (offset/depth/distance/within, isdataat) go through
// contents.h's search with a per-frame budget of byte comparisons; a frame
// that exhausts it is classified again on the CPU (kActionRetryOnCpu).
//
// The payload scan is match_gpu.h's scan_payload (both Aho-Corasick DFAs,
// exact and nocase, in one pass over the payload); the kernel keeps the
// distinct pattern ids it reports in a small per-thread list, which
// decide() asks for each content of a header-matching rule.
#include "kernels/classify/classify_gpu.h"
#include "kernels/classify/frame_parse.h"

namespace gpo::classify::gpu {
namespace {

constexpr uint32_t kMaxHitsCap = 32;

struct Hits {
  uint32_t ids[kMaxHitsCap];
  uint32_t n = 0;
  bool scanned = false;
  bool overflow = false;

  __device__ void add(uint32_t id, uint32_t cap) {
    for (uint32_t i = 0; i < n; ++i)
      if (ids[i] == id) return;
    if (n == cap) overflow = true;
    else ids[n++] = id;
  }
};

__global__ void __launch_bounds__(128) k_classify(DeviceTables t, const uint8_t* __restrict__ bytes,
                                                  const uint32_t* __restrict__ offsets,
                                                  const uint32_t* __restrict__ lens,
                                                  const uint8_t* __restrict__ flows, uint32_t n,
                                                  Verdict* __restrict__ out, uint32_t cap) {
  // The byte -> class table in shared memory (one load per payload byte).
  __shared__ uint32_t classes[256];
  if (t.matcher.classes)  // null only without patterns (then nothing is scanned)
    for (uint32_t i = threadIdx.x; i < 256; i += blockDim.x) classes[i] = t.matcher.classes[i];
  __syncthreads();
  match::gpu::MatcherView mv = t.matcher;
  mv.classes = classes;
  const uint32_t i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const uint8_t* f = bytes + offsets[i];
  const ParsedFrame p = parse::frame(f, lens[i]);
  Hits h;
  auto present = [&](uint32_t id) -> int {
    if (!h.scanned) {
      h.scanned = true;
      match::gpu::scan_payload(mv, f + p.payload_offset, p.payload_len, t.inspect_depth,
                               [&](uint32_t id) { h.add(id, cap); });
    }
    if (h.overflow) return -1;
    for (uint32_t k = 0; k < h.n; ++k)
      if (h.ids[k] == id) return 1;
    return 0;
  };
  uint32_t budget = kSearchBudget;
  auto search = [&](const RuleEntry& r) -> int {
    uint32_t starts[kMaxChainLevels];
    const uint32_t m = p.payload_len < t.inspect_depth ? p.payload_len : t.inspect_depth;
    return contents_search(t.rules.contents + r.content_first, r.content_count, t.rules.content_bytes,
                           f + p.payload_offset, m, p.payload_len, starts, kMaxChainLevels, budget);
  };
  Verdict v;
  if (!decide(t.acl, t.rules, p, flows[i], present, search, v)) v.action = kActionRetryOnCpu;
  out[i] = v;
}

}  // namespace

void launch_classify(const DeviceTables& t, const uint8_t* bytes, const uint32_t* offsets, const uint32_t* lens,
                     const uint8_t* flows, uint32_t n, Verdict* out, uint32_t max_hits, cudaStream_t stream) {
  if (n == 0) return;
  const uint32_t block = 128;
  const uint32_t cap = max_hits < kMaxHitsCap ? max_hits : kMaxHitsCap;
  k_classify<<<(n + block - 1) / block, block, 0, stream>>>(t, bytes, offsets, lens, flows, n, out, cap);
}

}  // namespace gpo::classify::gpu
