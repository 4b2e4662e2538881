#include "kernels/classify/cpu_classifier.h"

#include <algorithm>
#include <stdexcept>

#include "kernels/classify/decide.h"

namespace gpo::classify {

CpuClassifier::CpuClassifier(std::shared_ptr<const RuleTables> tables) : tables_(std::move(tables)) {
  if (!tables_) throw std::invalid_argument("CpuClassifier: no rule tables");
  seen_.assign(tables_->matcher.num_patterns(), 0);
}

void CpuClassifier::classify(std::span<const Frame> frames, std::span<Verdict> out) {
  if (out.size() != frames.size()) throw std::invalid_argument("classify: out.size() != frames.size()");
  for (size_t i = 0; i < frames.size(); ++i) out[i] = classify_one(frames[i]);
}

Verdict CpuClassifier::classify_one(const Frame& frame) {
  return classify_parsed(frame, parse_frame(frame.data, frame.len));
}

bool CpuClassifier::header_match(const RuleEntry& r, const ParsedFrame& p) const {
  const RuleTables& t = *tables_;
  if (!(r.proto_mask & proto_bit(p.proto))) return false;
  if (addr_set_match(t, r.src, p.src, p.ip_version) && addr_set_match(t, r.dst, p.dst, p.ip_version) && port_set_match(t, r.sport, p.sport) &&
      port_set_match(t, r.dport, p.dport))
    return true;
  return r.bidirectional && addr_set_match(t, r.src, p.dst, p.ip_version) && addr_set_match(t, r.dst, p.src, p.ip_version) &&
         port_set_match(t, r.sport, p.dport) && port_set_match(t, r.dport, p.sport);
}

Verdict CpuClassifier::classify_parsed(const Frame& frame, const ParsedFrame& p) {
  const RuleTables& t = *tables_;
  Verdict v;
  v.rule_id = 0;
  v.action = t.default_action;
  if (!p.ok()) {
    v.cacheable = false;
    return v;
  }
  const RulesView rv{t.rules.data(), t.contents.data(), t.content_bytes.data(), t.default_action, t.inspect_depth};
  const uint8_t* payload = frame.data + p.payload_offset;
  const uint32_t n = std::min(p.payload_len, t.inspect_depth);
  bool scanned = false;
  auto present = [&](uint32_t id) -> int {
    if (!scanned) {
      scanned = true;
      if (++generation_ == 0) {  // wrapped: forget every stale mark
        std::fill(seen_.begin(), seen_.end(), 0);
        generation_ = 1;
      }
      match::scan(t.matcher, payload, n, [&](uint32_t pid, size_t) { seen_[pid] = generation_; });
    }
    return seen_[id] == generation_ ? 1 : 0;
  };
  auto search = [&](const RuleEntry& r) -> int {
    // The GPU's search first (same budget per rule), the exact sweep when it gives up.
    uint32_t starts[kMaxChainLevels];
    uint32_t budget = kSearchBudget;
    int got = contents_search(&t.contents[r.content_first], r.content_count, t.content_bytes.data(), payload, n,
                              p.payload_len, starts, kMaxChainLevels, budget);
    if (got < 0)
      got = contents_exact(&t.contents[r.content_first], r.content_count, t.content_bytes.data(), payload, n,
                           p.payload_len);
    return got;
  };
  bool cacheable = true;
  size_t decided = t.rules.size();
  for (size_t i = 0; i < t.rules.size(); ++i) {
    const RuleEntry& r = t.rules[i];
    if (!header_match(r, p)) continue;
    const Rest rest = rule_rest(rv, r, p, frame.flow, present, search);
    if (rest == Rest::kFlowMiss) continue;
    if (rest != Rest::kMatch) {
      cacheable = false;  // a later packet of this flow may match it
      continue;
    }
    v.rule_id = r.sid;
    v.action = r.action;
    decided = i;
    break;
  }
  if (cacheable) {
    // The flow cache answers both directions: no earlier rule may match the other one.
    const ParsedFrame q = reversed(p);
    for (size_t i = 0; i < decided && cacheable; ++i)
      if (header_match(t.rules[i], q) && flow_tests(t.rules[i], q)) cacheable = false;
  }
  v.cacheable = cacheable;
  return v;
}

}  // namespace gpo::classify
