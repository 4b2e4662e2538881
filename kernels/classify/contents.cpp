#include "kernels/classify/contents.h"

#include <vector>

namespace gpo::classify {

bool contents_exact(const ContentRef* cs, uint32_t count, const uint8_t* pool, const uint8_t* buf, uint32_t n,
                    uint32_t payload_len) {
  std::vector<uint8_t> ends(n + 1), next_ends(n + 1);  // ends[e]: some choice so far ends a match at e
  std::vector<int32_t> allowed(n + 2);                  // difference array of allowed starts
  uint32_t i = 0;
  while (i < count) {
    uint32_t j = i + 1;
    while (j < count && cs[j].relative) ++j;
    if (cs[i].negated) {
      uint32_t budget = UINT32_MAX;
      if (find_in_window(buf, content_window(cs[i], 0, n), 0, pool + cs[i].bytes, cs[i].len, cs[i].nocase, budget) >= 0)
        return false;
      i = j;
      continue;
    }
    // Level 0: the previous end is 0.
    std::fill(ends.begin(), ends.end(), 0);
    ends[0] = 1;
    for (uint32_t k = i; k < j; ++k) {
      const ContentRef& c = cs[k];
      std::fill(allowed.begin(), allowed.end(), 0);
      bool any = false;
      for (uint32_t e = 0; e <= n; ++e) {
        if (!ends[e]) continue;
        const Window w = content_window(c, e, n);
        if (w.hi == 0 || w.lo > w.hi || c.len > w.hi || w.lo + c.len > w.hi) continue;
        allowed[w.lo] += 1;
        allowed[w.hi - c.len + 1] -= 1;
        any = true;
      }
      if (!any) return false;
      std::fill(next_ends.begin(), next_ends.end(), 0);
      bool found = false;
      int32_t run = 0;
      for (uint32_t s = 0; s + c.len <= n; ++s) {
        run += allowed[s];
        if (run <= 0 || !bytes_at(buf, s, pool + c.bytes, c.len, c.nocase)) continue;
        if (c.isdataat_rel >= 0 && uint64_t(s) + c.len + uint32_t(c.isdataat_rel) > payload_len) continue;
        next_ends[s + c.len] = 1;
        found = true;
      }
      if (!found) return false;
      ends.swap(next_ends);
    }
    i = j;
  }
  return true;
}

}  // namespace gpo::classify
