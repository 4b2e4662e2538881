#include "kernels/classify/cpu_classifier.h"

#include <algorithm>
#include <stdexcept>

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
  bool scanned = false;
  bool cacheable = true;
  for (const RuleEntry& r : t.rules) {
    if (!header_match(r, p)) continue;
    if (r.content_count != 0) {
      if (!scanned) {
        scanned = true;
        if (++generation_ == 0) {  // wrapped: forget every stale mark
          std::fill(seen_.begin(), seen_.end(), 0);
          generation_ = 1;
        }
        uint32_t n = std::min(p.payload_len, t.inspect_depth);
        match::scan(t.matcher, frame.data + p.payload_offset, n, [&](uint32_t id, size_t) { seen_[id] = generation_; });
      }
      bool all = true;
      for (uint32_t c = r.content_first; c < r.content_first + r.content_count && all; ++c) {
        const ContentRef& ref = t.contents[c];
        bool present = seen_[ref.pattern_id] == generation_;
        all = present != bool(ref.negated);
      }
      if (!all) {
        cacheable = false;  // a later packet of this flow may carry the content
        continue;
      }
    }
    v.rule_id = r.sid;
    v.action = r.action;
    v.cacheable = cacheable;
    return v;
  }
  v.cacheable = cacheable;
  return v;
}

}  // namespace gpo::classify
