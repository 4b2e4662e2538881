// Rules -> the classifier's flat tables (kernels/classify/tables.h), shared by
// the CPU classifier and the GPU classifier.
#pragma once
#include <memory>

#include "kernels/classify/tables.h"
#include "rules/rule.h"

namespace gpo::rules {

struct CompileOptions {
  uint32_t inspect_depth = classify::kDefaultInspectDepth;  // bytes of L4 payload scanned for contents
};

classify::RuleTables compile(const RuleSet& set, const CompileOptions& opt = {});

}  // namespace gpo::rules

namespace gpo::rules {

// For `run --rules`: parses FILE (the built-in default.rules when path is
// empty) and compiles it. Any problem throws std::runtime_error whose message
// names the first problem as FILE:LINE:COL and how many there are, pointing
// at `gpuoffload-agent rules check FILE` for the full list.
classify::RuleTables load_rules(const std::string& path, const CompileOptions& opt = {});

}  // namespace gpo::rules
