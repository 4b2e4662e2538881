// The position search for contents with offset/depth/distance/within and
// isdataat, as host+device code: the CPU classifier and the GPU kernel run
// the same search, so they reach the same verdicts.
//
// Semantics (Suricata's content inspection, docs/rules.md):
//  - An absolute content must lie inside [offset, offset + depth) of the
//    inspected payload (depth: to the end when absent).
//  - A relative content (distance and/or within) must lie inside
//    [max(0, e + distance), e + distance + within), e = the end of the
//    previous content's match (0 for the first content); without within, up
//    to the end.
//  - `isdataat:N,relative` after a content: at least N more payload bytes
//    follow that content's match.
//  - A chain is a content followed by the contents relative to it. It holds
//    when SOME choice of occurrences satisfies every window (Suricata tries
//    the next occurrence of a content when a later `within` fails; a later
//    occurrence never helps a distance-only window, so the search does not
//    retry there either). Chains are independent of each other.
//  - A negated content is absolute and nothing is relative to it (the parser
//    guarantees both): it holds when the pattern does not occur in its window.
//
// The search is a depth-first walk with one start position per chain level
// and a budget of byte comparisons; when the budget runs out (adversarial
// payloads: many occurrences and nested within windows) it answers "unknown"
// and the caller decides another way: the GPU hands the frame to the CPU, the
// CPU runs the exact interval search of contents_exact() (contents.cpp),
// whose cost is linear in the payload per chain level.
#pragma once
#include <cstdint>

#include "kernels/common/host_device.h"
#include "kernels/classify/tables.h"

namespace gpo::classify {

inline constexpr uint32_t kMaxChainLevels = 16;  // deeper chains: "unknown" on the GPU, exact on the CPU

GPO_HD GPO_FORCEINLINE uint8_t fold(uint8_t c) { return (c >= 'A' && c <= 'Z') ? uint8_t(c + 32) : c; }

GPO_HD GPO_FORCEINLINE bool bytes_at(const uint8_t* buf, uint32_t s, const uint8_t* pat, uint32_t len, bool nocase) {
  for (uint32_t k = 0; k < len; ++k)
    if (nocase ? fold(buf[s + k]) != fold(pat[k]) : buf[s + k] != pat[k]) return false;
  return true;
}

// The window [lo, hi) of content c in a buffer of n bytes, the previous match
// ending at prev_end. Empty (lo > hi or hi == 0) when nothing can lie there.
struct Window {
  uint32_t lo = 0, hi = 0;
};

GPO_HD GPO_FORCEINLINE Window content_window(const ContentRef& c, uint32_t prev_end, uint32_t n) {
  int64_t lo, hi = n;
  if (c.relative) {
    lo = int64_t(prev_end) + c.distance;
    if (lo < 0) lo = 0;
    if (c.has_within) {
      const int64_t end = int64_t(prev_end) + c.distance + c.within;
      // A window end before the buffer's start is read as "to the end", as
      // Suricata's unsigned arithmetic does.
      if (end >= 0 && end < hi) hi = end;
    }
  } else {
    lo = c.offset;
    if (c.end != 0 && c.end < n) hi = c.end;
  }
  Window w;
  w.lo = lo > int64_t(n) ? n + 1 : uint32_t(lo);
  w.hi = uint32_t(hi);
  return w;
}

// The first start s >= from with the pattern inside w; -1 none, -2 budget exhausted.
GPO_HD GPO_FORCEINLINE int64_t find_in_window(const uint8_t* buf, Window w, uint32_t from, const uint8_t* pat, uint32_t len,
                              bool nocase, uint32_t& budget) {
  if (from < w.lo) from = w.lo;
  if (w.hi == 0 || w.lo > w.hi || len > w.hi) return -1;
  for (uint32_t s = from; s + len <= w.hi; ++s) {
    if (budget < len) return -2;
    budget -= len;
    if (bytes_at(buf, s, pat, len, nocase)) return s;
  }
  return -1;
}

// The contents cs[0, count) of one rule on the inspected payload buf[0, n)
// (payload_len: the whole L4 payload, for isdataat). starts: scratch of
// `cap` entries. 1: all hold, 0: not, -1: unknown (budget or cap exceeded).
GPO_HD GPO_FORCEINLINE int contents_search(const ContentRef* cs, uint32_t count, const uint8_t* pool, const uint8_t* buf, uint32_t n,
                           uint32_t payload_len, uint32_t* starts, uint32_t cap, uint32_t& budget) {
  uint32_t i = 0;
  while (i < count) {
    uint32_t j = i + 1;
    while (j < count && cs[j].relative) ++j;
    const uint32_t m = j - i;
    if (cs[i].negated) {  // a lone absolute negated content
      const Window w = content_window(cs[i], 0, n);
      const int64_t s = find_in_window(buf, w, 0, pool + cs[i].bytes, cs[i].len, cs[i].nocase, budget);
      if (s == -2) return -1;
      if (s >= 0) return 0;
      i = j;
      continue;
    }
    if (m > cap) return -1;
    uint32_t level = 0, from = 0;
    for (;;) {
      const ContentRef& c = cs[i + level];
      const uint32_t prev_end = level == 0 ? 0 : starts[level - 1] + cs[i + level - 1].len;
      const Window w = content_window(c, prev_end, n);
      int64_t s = find_in_window(buf, w, from, pool + c.bytes, c.len, c.nocase, budget);
      if (s == -2) return -1;
      // isdataat relative: a later occurrence leaves even fewer bytes, so a
      // failing one ends this level like no occurrence.
      if (s >= 0 && c.isdataat_rel >= 0 && uint64_t(s) + c.len + uint32_t(c.isdataat_rel) > payload_len) s = -1;
      if (s < 0) {
        // Back up to the nearest level whose next occurrence can help: the
        // level below a content with `within`.
        for (;;) {
          if (level == 0) return 0;
          const bool retry = cs[i + level].has_within;
          --level;
          if (retry) {
            from = starts[level] + 1;
            break;
          }
        }
        continue;
      }
      starts[level] = uint32_t(s);
      if (level + 1 == m) break;
      ++level;
      from = 0;
    }
    i = j;
  }
  return 1;
}

// The same answer as contents_search() with an unlimited budget, by an
// interval sweep over the feasible match ends of each chain level: linear in
// n per level (plus the byte comparisons of the occurrences). Host only
// (contents.cpp).
bool contents_exact(const ContentRef* cs, uint32_t count, const uint8_t* pool, const uint8_t* buf, uint32_t n,
                    uint32_t payload_len);

}  // namespace gpo::classify
