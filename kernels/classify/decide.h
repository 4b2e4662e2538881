// The classifier's decision as host+device code: the ACL structure (acl.h)
// yields header-matching slots in file order; the rest of a rule (packet
// tests, contents) is checked by rule_rest(), shared with CpuClassifier, so
// the payload is scanned only when a header-matching rule has contents.
// Same verdict, rule id, action and cacheable as CpuClassifier::classify_parsed.
#pragma once
#include <cstdint>

#include "kernels/classify/acl.h"
#include "kernels/classify/classify.h"
#include "kernels/classify/contents.h"
#include "kernels/common/host_device.h"
#include "kernels/classify/tables.h"

namespace gpo::classify {

// The rule tables' arrays as pointers (host vectors or device copies).
struct RulesView {
  const RuleEntry* rules = nullptr;
  const ContentRef* contents = nullptr;
  const uint8_t* content_bytes = nullptr;
  uint8_t default_action = 0;
  uint32_t inspect_depth = kDefaultInspectDepth;
};

// What the rest of a header-matching rule says about a packet.
enum class Rest : uint8_t {
  kMatch,
  kPacketMiss,  // a test that another packet of the same flow may pass (contents, dsize, flow state, ...)
  kFlowMiss,    // a test no packet of this flow passes (ip_proto)
  kUnknown,     // the content scan or search gave up: decide the frame another way
};

// ip_proto: the same for every packet of the flow.
GPO_HD GPO_FORCEINLINE bool flow_tests(const RuleEntry& r, const ParsedFrame& p) { return uint_test(r.ip_proto, p.proto); }

GPO_HD GPO_FORCEINLINE bool packet_tests(const RuleEntry& r, const ParsedFrame& p, uint8_t flow) {
  if ((flow & r.flow_set) != r.flow_set || (flow & r.flow_clear) != 0) return false;
  if (r.icmp_only && p.proto != 1 && p.proto != 58) return false;
  if (r.tcp_flags.op != kUintAny && (p.proto != 6 || !uint_test(r.tcp_flags, p.tcp_flags))) return false;
  return uint_test(r.dsize, p.payload_len) && uint_test(r.itype, p.icmp_type) && uint_test(r.icode, p.icmp_code) &&
         uint_test(r.ttl, p.ttl) && uint_test(r.isdataat, p.payload_len);
}

// present(pattern_id) -> 1 occurs in the inspected payload, 0 does not, -1
// unknown. search(r) -> the position search of the rule's contents (1, 0 or
// -1 unknown), called only when every positive pattern is present.
template <typename Present, typename Search>
GPO_HD GPO_FORCEINLINE Rest rule_rest(const RulesView& rv, const RuleEntry& r, const ParsedFrame& p, uint8_t flow, Present& present,
                      Search& search) {
  if (!flow_tests(r, p)) return Rest::kFlowMiss;
  if (!packet_tests(r, p, flow)) return Rest::kPacketMiss;
  bool all = true;
  for (uint32_t c = r.content_first; c < r.content_first + r.content_count && all; ++c) {
    const ContentRef& ref = rv.contents[c];
    const int got = present(ref.pattern_id);
    if (got < 0) return Rest::kUnknown;
    // Absent anywhere: a positive content fails, a negated one holds in any window.
    if (ref.negated) all = got == 0 || r.positional;
    else all = got == 1;
  }
  if (all && r.positional) {
    const int s = search(r);
    if (s < 0) return Rest::kUnknown;
    all = s == 1;
  }
  return all ? Rest::kMatch : Rest::kPacketMiss;
}

// The frame with source and destination swapped: the flow's other direction.
GPO_HD GPO_FORCEINLINE ParsedFrame reversed(const ParsedFrame& p) {
  ParsedFrame r = p;
  for (int i = 0; i < 16; ++i) {
    r.src[i] = p.dst[i];
    r.dst[i] = p.src[i];
  }
  r.sport = p.dport;
  r.dport = p.sport;
  return r;
}

// decide() returns false when the verdict is unknown (the caller must
// classify the frame some other way).
template <typename Present, typename Search>
GPO_HD GPO_FORCEINLINE bool decide(const acl::View& acl, const RulesView& rv, const ParsedFrame& p, uint8_t flow, Present&& present,
                   Search&& search, Verdict& v) {
  v.rule_id = 0;
  v.action = rv.default_action;
  v.cacheable = false;
  if (!p.ok()) return true;
  bool cacheable = true, known = true;
  uint32_t decided = 0xffffffffu;  // rule index of the deciding rule
  acl::for_each_match(acl, p, [&](uint32_t slot) {
    const uint32_t ri = acl.slot_rule[slot];
    const RuleEntry& r = rv.rules[ri];
    switch (rule_rest(rv, r, p, flow, present, search)) {
      case Rest::kUnknown: known = false; return true;
      case Rest::kFlowMiss: return false;
      case Rest::kPacketMiss: cacheable = false; return false;  // a later packet of this flow may match it
      default: break;
    }
    decided = ri;
    v.rule_id = r.sid;
    v.action = r.action;
    return true;
  });
  if (!known) return false;
  if (cacheable) {
    // The flow cache answers both directions: a rule before the deciding one
    // that matches the other direction's header must see those packets.
    const ParsedFrame q = reversed(p);
    acl::for_each_match(acl, q, [&](uint32_t slot) {
      const uint32_t ri = acl.slot_rule[slot];
      if (ri >= decided) return true;
      if (!flow_tests(rv.rules[ri], q)) return false;
      cacheable = false;
      return true;
    });
  }
  v.cacheable = cacheable;
  return true;
}

}  // namespace gpo::classify
