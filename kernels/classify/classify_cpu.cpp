#include "kernels/classify/classify_cpu.h"

#include <algorithm>
#include <stdexcept>

#include "kernels/classify/decide.h"

namespace gpo::classify {

CpuClassifier::CpuClassifier(std::shared_ptr<const RuleTables> tables) : tables_(std::move(tables)) {
  if (!tables_) throw std::invalid_argument("CpuClassifier: no rule tables");
  seen_.assign(tables_->matcher.num_patterns(), 0);
  acl_ = acl::build(*tables_);
}

void CpuClassifier::classify(std::span<const Frame> frames, std::span<Verdict> out) {
  if (out.size() != frames.size()) throw std::invalid_argument("classify: out.size() != frames.size()");
  for (size_t i = 0; i < frames.size(); ++i) out[i] = classify_one(frames[i]);
}

Verdict CpuClassifier::classify_one(const Frame& frame) {
  return classify_parsed(frame, parse_frame(frame.data, frame.len));
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
  decide(acl_.view(), rv, p, frame.flow, present, search, v);  // never unknown: the CPU's search always answers
  return v;
}

}  // namespace gpo::classify
