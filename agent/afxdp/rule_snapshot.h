// One loaded rule file as the packet path uses it: the parsed rules, their
// compiled tables (the classifiers' input) and the header ACL index that the
// stream inspector decides with. A reload builds a new snapshot beside the
// running one and swaps it in between two batches; the two together tell
// which cached flow verdicts the new rules could change.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "bpf/xdp_filter.h"
#include "kernels/classify/acl.h"
#include "kernels/classify/decide.h"
#include "kernels/classify/tables.h"
#include "rules/parser.h"
#include "rules/rule.h"

namespace gpo::afxdp {

struct RuleSnapshot {
  std::string name;  // the file, or the built-in rules' name
  rules::RuleSet set;
  std::shared_ptr<const classify::RuleTables> tables;
  classify::acl::Index acl;
  std::string what;  // "N rules from FILE, default pass"

  classify::RulesView rules_view() const {
    return {tables->rules.data(), tables->contents.data(), tables->content_bytes.data(), tables->default_action,
            tables->inspect_depth};
  }
};

// Compiles a parsed rule set (name: its file, for messages and `status`).
std::shared_ptr<const RuleSnapshot> make_rule_snapshot(const std::string& name, rules::RuleSet set);

// Parses and compiles path ("" = the built-in default rules) strictly: on any
// problem returns nullptr and fills problems with one "FILE:LINE:COL: message"
// each. Throws std::runtime_error when the file cannot be read. (`run` loads
// partially, skipping unsupported rules: cli/cmd_run.cpp.)
std::shared_ptr<const RuleSnapshot> load_rule_snapshot(const std::string& path, std::vector<std::string>& problems,
                                                       const rules::ParseOptions& opt = {});

// Could the verdict cached for key (deciding sid v.rule_id, or the default
// when 0) come out differently under `next` than under `prev`? Conservative:
// false only when, in both directions of the flow, the rules whose headers
// match it are the same rules (header, action, contents, sid) in the same
// order up to the deciding one (all of them for the default, whose action
// must also be the same). A rule earlier in the file that now matches, a
// changed or removed decider, a changed content: true.
bool verdict_could_change(const RuleSnapshot& prev, const RuleSnapshot& next, const gpo_flow_key& key,
                          const gpo_flow_verdict& v);

}  // namespace gpo::afxdp
