// The CPU classifier: Classifier over compiled RuleTables. Per frame: parse,
// find the header-matching rules in file order through the ACL structure
// (acl.h, built once per instance), and decide as the GPU kernel does
// (decide.h: packet tests, contents), scanning the payload once with the
// Aho-Corasick matcher the first time a rule has contents. Content position
// searches that exceed the GPU's budget run the exact sweep (contents.h), so
// this classifier always answers. The tests check it against an independent
// naive reference (tests/unit/rules_reference.h).
// Not thread-safe (it keeps per-payload scratch): one instance per thread;
// instances may share the same tables.
#pragma once
#include <memory>
#include <vector>

#include "kernels/classify/acl.h"
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
  std::shared_ptr<const RuleTables> tables_;
  acl::Index acl_;
  // seen_[pattern] == generation_ <=> the pattern occurs in the current payload.
  std::vector<uint32_t> seen_;
  uint32_t generation_ = 0;
};

}  // namespace gpo::classify
