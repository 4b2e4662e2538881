// The classifier's decision as host+device code: the ACL structure (acl.h)
// yields header-matching slots in file order; contents are checked through a
// caller-supplied presence test, so the payload is scanned only when a
// header-matching rule has contents (as CpuClassifier does). Same verdict,
// rule id, action and cacheable as CpuClassifier::classify_parsed.
#pragma once
#include <cstdint>

#include "kernels/classify/acl.h"
#include "kernels/classify/classify.h"
#include "kernels/classify/hd.h"
#include "kernels/classify/tables.h"

namespace gpo::classify {

// The rule tables' arrays as pointers (host vectors or device copies).
struct RulesView {
  const RuleEntry* rules = nullptr;
  const ContentRef* contents = nullptr;
  uint8_t default_action = 0;
};

// present(pattern_id) -> 1 occurs in the inspected payload, 0 does not,
// -1 unknown (the scanner gave up: the caller must classify the frame some
// other way). decide() returns false in that case.
template <typename Present>
GPO_HD bool decide(const acl::View& acl, const RulesView& rv, const ParsedFrame& p, Present&& present, Verdict& v) {
  v.rule_id = 0;
  v.action = rv.default_action;
  v.cacheable = false;
  if (!p.ok()) return true;
  bool cacheable = true, known = true;
  acl::for_each_match(acl, p, [&](uint32_t slot) {
    const RuleEntry& r = rv.rules[acl.slot_rule[slot]];
    bool all = true;
    for (uint32_t c = r.content_first; c < r.content_first + r.content_count && all; ++c) {
      const ContentRef& ref = rv.contents[c];
      int got = present(ref.pattern_id);
      if (got < 0) {
        known = false;
        return true;
      }
      all = (got == 1) != bool(ref.negated);
    }
    if (!all) {
      cacheable = false;  // a later packet of this flow may carry the content
      return false;
    }
    v.rule_id = r.sid;
    v.action = r.action;
    return true;
  });
  v.cacheable = cacheable;
  return known;
}

}  // namespace gpo::classify
