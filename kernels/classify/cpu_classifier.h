// The CPU classifier: the reference implementation of Classifier over
// compiled RuleTables. Per frame: parse, walk the rules in file order with the
// header matchers, then the rest of a header-matching rule as the GPU does
// (decide.h's rule_rest: packet tests, contents), scanning the payload once
// with the Aho-Corasick matcher the first time a rule has contents.
// Not thread-safe (it keeps per-payload scratch): one instance per thread;
// instances may share the same tables.
#pragma once
#include <memory>
#include <vector>

#include "kernels/classify/classify.h"
#include "kernels/classify/frame.h"
#include "kernels/classify/tables.h"

namespace gpo::classify {

class CpuClassifier final : public Classifier {
 public:
  // Byte comparisons the position search of one rule may spend before the
  // exact sweep takes over (the GPU kernel's per-frame budget is larger).
  static constexpr uint32_t kSearchBudget = 1u << 16;

  explicit CpuClassifier(std::shared_ptr<const RuleTables> tables);
  std::string_view name() const override { return "cpu"; }
  void classify(std::span<const Frame> frames, std::span<Verdict> out) override;

  Verdict classify_one(const Frame& frame);
  // For callers that already parsed the frame (the agent needs the flow key too).
  Verdict classify_parsed(const Frame& frame, const ParsedFrame& parsed);
  const RuleTables& tables() const { return *tables_; }

 private:
  bool header_match(const RuleEntry& r, const ParsedFrame& p) const;

  std::shared_ptr<const RuleTables> tables_;
  // seen_[pattern] == generation_ <=> the pattern occurs in the current payload.
  std::vector<uint32_t> seen_;
  uint32_t generation_ = 0;
};

}  // namespace gpo::classify
