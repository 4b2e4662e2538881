// The built-in rule file (agent/rules/default.rules, embedded at build time).
#pragma once
#include <string_view>

namespace gpo::rules {

std::string_view default_rules_text();
inline constexpr const char* kDefaultRulesName = "<built-in default.rules>";

}  // namespace gpo::rules
