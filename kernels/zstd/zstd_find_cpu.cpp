// Block planning and the CPU twin of the GPU match finder (zstd_find.h has
// the parse; this file follows it step for step, one position at a time).
#include <algorithm>
#include <cstring>

#include "zstd/zstd_find.h"
#include "zstd/zstd_gpu.h"

namespace gpo::zstd::gpu {

uint64_t plan_blocks(std::span<const uint64_t> sizes, std::span<const uint64_t> offsets,
                     std::vector<BlockDesc>& blocks) {
  uint64_t slots = blocks.empty() ? 0 : blocks.back().seq_first + seq_capacity(blocks.back().len);
  for (size_t i = 0; i < sizes.size(); ++i)
    for (uint64_t pos = 0; pos < sizes[i]; pos += kBlockBytes) {
      BlockDesc b{};
      b.src = offsets[i] + pos;
      b.len = uint32_t(std::min<uint64_t>(kBlockBytes, sizes[i] - pos));
      b.input = uint32_t(i);
      b.pos = uint32_t(pos);
      b.seq_first = uint32_t(slots);
      blocks.push_back(b);
      slots += seq_capacity(b.len);
    }
  return slots;
}

namespace {

using namespace find;

uint64_t load64(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}

// Equal bytes at a and b, at most max.
uint32_t match_len(const uint8_t* a, const uint8_t* b, uint32_t max) {
  uint32_t n = 0;
  while (n < max && a[n] == b[n]) ++n;
  return n;
}

void find_block(const uint8_t* base, BlockDesc& b, Sequence* seqs) {
  const uint32_t hist = std::min(b.pos, kHistoryBytes);
  const uint8_t* h0 = base + b.src - hist;  // positions below are relative to h0
  const uint32_t end = hist + b.len;
  const uint64_t in_start = uint64_t(b.pos) - hist;  // h0's offset in its input
  std::vector<uint32_t> table(size_t(1) << kHashLog, 0);  // latest position + 1; 0 = empty
  for (uint32_t q = 0; q < hist; ++q)
    if (q + 8 <= end) {
      uint32_t& t = table[hash_of(load64(h0 + q))];
      t = std::max(t, q + 1);
    }
  // Step 1: every position's hash match (the latest earlier position with its hash).
  std::vector<uint32_t> hlen(b.len, 0), hdist(b.len, 0);
  for (uint32_t p = hist; p < end; ++p) {
    if (p + kTail > end) continue;
    const uint32_t h = hash_of(load64(h0 + p));
    const uint32_t c = table[h];
    table[h] = p + 1;
    if (!c) continue;
    hlen[p - hist] = match_len(h0 + c - 1, h0 + p, std::min(kCapA, end - p));
    hdist[p - hist] = p - (c - 1);
  }
  // Step 2: each segment parsed on its own, then stitched.
  const Segments sg = segments_of(b.len);
  Sequence* out = seqs + b.seq_first;
  uint32_t count[kMaxSegments] = {}, trailing[kMaxSegments] = {};
  Choice ch[kWindow];
  for (uint32_t k = 0; k < sg.count; ++k) {
    const uint32_t ss = hist + k * sg.bytes, se = std::min(ss + sg.bytes, end);
    uint32_t cursor = ss, lit_start = ss, n = 0;
    uint32_t reps[3] = {0, 0, 0};
    Sequence* sout = out + (k * sg.bytes) / 4;
    auto rep_len = [&](uint32_t p, uint32_t rep) -> uint32_t {
      if (!rep || p + kTail > end || in_start + p < rep) return 0;
      return match_len(h0 + p - int64_t(rep), h0 + p, std::min(kCapA, se - p));
    };
    while (cursor < se) {
      const uint32_t wend = std::min(cursor + kWindow, se);
      int f = -1;
      for (uint32_t p = cursor; p < wend; ++p) {
        const uint32_t rl[3] = {rep_len(p, reps[0]), rep_len(p, reps[1]), rep_len(p, reps[2])};
        ch[p - cursor] = choose(std::min(hlen[p - hist], se - p), hdist[p - hist], rl, reps);
        if (f < 0 && ch[p - cursor].len) f = int(p - cursor);
      }
      if (f < 0) {
        cursor = wend;
        continue;
      }
      if (uint32_t(f) + 1 < wend - cursor && prefer_next(ch[f], ch[f + 1])) ++f;
      uint32_t p = cursor + uint32_t(f);
      uint32_t len = ch[f].len;
      const uint32_t d = ch[f].dist;
      if (len == kCapA) len = match_len(h0 + p - d, h0 + p, se - p);
      // Catch up: the match may start earlier, over literals not yet emitted.
      while (p > lit_start && in_start + p > d && h0[p - 1] == h0[int64_t(p) - 1 - int64_t(d)]) --p, ++len;
      sout[n++] = {p - lit_start, len, d};
      update_reps(reps, d);
      cursor = lit_start = p + len;
    }
    count[k] = n;
    trailing[k] = se - lit_start;
  }
  // Stitch: a segment's trailing literals lead the next segment's first
  // sequence; the segments' sequences move down to one run.
  uint32_t carry = 0, n = 0;
  for (uint32_t k = 0; k < sg.count; ++k) {
    Sequence* sout = out + (k * sg.bytes) / 4;
    if (count[k]) {
      sout[0].lit_len += carry;
      carry = trailing[k];
    } else {
      carry += trailing[k];
    }
    for (uint32_t i = 0; i < count[k]; ++i) out[n + i] = sout[i];
    n += count[k];
  }
  b.seq_count = n;
  b.trailing_literals = carry;
}

}  // namespace

void cpu_find(std::span<const uint8_t> in, std::span<BlockDesc> blocks, std::span<Sequence> seqs) {
  for (auto& b : blocks) find_block(in.data(), b, seqs.data());
}

}  // namespace gpo::zstd::gpu
