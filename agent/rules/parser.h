// Rule file parser (docs/rules.md). Every rule with a problem is left out of
// the RuleSet and reported with its line, column and keyword: nothing in a
// rule is silently ignored except the keywords documented as not affecting
// matching (rev, classtype, metadata, reference, priority, gid, fast_pattern).
#pragma once
#include <string>
#include <string_view>

#include "rules/rule.h"

namespace gpo::rules {

ParseResult parse_rules(std::string_view text);

// Reads and parses a file. Throws std::runtime_error when it cannot be read.
ParseResult parse_rules_file(const std::string& path);

// "FILE:LINE:COL: message"
std::string format_diagnostic(const std::string& file, const Diagnostic& d);

}  // namespace gpo::rules
