// Block planning and the CPU twin of the GPU match finder (zstd_find_parse.h has
// the parse; this file follows it step for step, one position at a time).
#include <algorithm>
#include <cstring>

#include "kernels/zstd/zstd_find_parse.h"
#include "kernels/zstd/zstd_find.h"

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

// One segment [ss, se) (positions relative to h0, the block's history
// start), parsed in warp steps as the GPU does; sequences to sout.
void parse_segment(const uint8_t* h0, uint32_t end, uint64_t in_start, uint32_t ss, uint32_t se, Sequence* sout,
                   uint32_t* count, uint32_t* trailing) {
  const uint32_t wbase = ss > kLookback ? ss - kLookback : 0;  // h0 >= the input's start
  std::vector<TableEntry> table(size_t(1) << kHashLog, 0);      // latest position - wbase + 1; 0 = empty
  for (uint32_t q = wbase; q < ss; q += kPrefillStride)
    if (q + 8 <= end) table[hash_of(load64(h0 + q))] = TableEntry(q - wbase + 1);
  constexpr uint32_t kNone = ~0u;
  uint32_t hv[kWindow];
  Choice ch[kWindow];
  uint32_t cursor = ss, lit_start = ss, n = 0;
  uint32_t reps[3] = {0, 0, 0};
  auto rep_len = [&](uint32_t p, uint32_t rep) -> uint32_t {
    if (!rep || p + kTail > end || in_start + p < rep) return 0;
    return match_len(h0 + p - int64_t(rep), h0 + p, std::min(kCapA, se - p));
  };
  while (cursor < se) {
    const uint32_t w = std::min(kWindow, se - cursor);
    for (uint32_t i = 0; i < w; ++i) {
      const uint32_t p = cursor + i;
      hv[i] = p + kTail <= end ? hash_of(load64(h0 + p)) : kNone;
      uint32_t hl = 0, hd = 0;
      if (hv[i] != kNone) {
        uint32_t c = kNone;  // candidate position
        for (uint32_t j = i; j-- > 0;)
          if (hv[j] == hv[i]) {
            c = cursor + j;
            break;
          }
        if (c == kNone && table[hv[i]]) c = wbase + table[hv[i]] - 1;
        if (c != kNone) {
          hl = match_len(h0 + c, h0 + p, std::min(kCapA, se - p));
          hd = p - c;
        }
      }
      const uint32_t rl[3] = {rep_len(p, reps[0]), rep_len(p, reps[1]), rep_len(p, reps[2])};
      ch[i] = choose(hl, hd, rl, reps);
    }
    // Matches from the step's choices, first to last, each starting at or
    // after the previous one's end (the choices keep the step's reps).
    uint32_t from = 0, next_cursor = cursor + w;
    for (uint32_t taken = 0; taken < kMatchesPerStep; ++taken) {
      uint32_t f = from;
      while (f < w && !ch[f].len) ++f;
      if (f >= w) {  // no (more) match: the rest of the step is literals
        next_cursor = std::max(cursor + w, lit_start);
        break;
      }
      if (f + 1 < w && prefer_next(ch[f], ch[f + 1])) ++f;
      uint32_t p = cursor + f;
      uint32_t len = ch[f].len;
      const uint32_t d = ch[f].dist;
      if (len == kCapA) len = match_len(h0 + p - d, h0 + p, se - p);
      // Catch up: the match may start earlier, over literals not yet emitted.
      while (p > lit_start && in_start + p > d && h0[p - 1] == h0[int64_t(p) - 1 - int64_t(d)]) --p, ++len;
      sout[n++] = {p - lit_start, len, d};
      update_reps(reps, d);
      next_cursor = lit_start = p + len;  // where the next step starts if this was the last match taken
      from = lit_start - cursor;
    }
    for (uint32_t i = 0; i < w && cursor + i < next_cursor; ++i)
      if (hv[i] != kNone) table[hv[i]] = TableEntry(cursor + i - wbase + 1);
    cursor = next_cursor;
  }
  *count = n;
  *trailing = se - lit_start;
}

void find_block(const uint8_t* base, BlockDesc& b, Sequence* seqs) {
  const uint32_t hist = std::min(b.pos, kHistoryBytes);
  const uint8_t* h0 = base + b.src - hist;  // positions below are relative to h0
  const uint32_t end = hist + b.len;
  const uint64_t in_start = uint64_t(b.pos) - hist;  // h0's offset in its input
  const Segments sg = segments_of(b.len);
  Sequence* out = seqs + b.seq_first;
  uint32_t count[kMaxSegments] = {}, trailing[kMaxSegments] = {};
  for (uint32_t k = 0; k < sg.count; ++k) {
    const uint32_t ss = hist + k * sg.bytes, se = std::min(ss + sg.bytes, end);
    parse_segment(h0, end, in_start, ss, se, out + (k * sg.bytes) / 4, &count[k], &trailing[k]);
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
