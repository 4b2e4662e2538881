// Rule file parser (docs/rules.md). Every rule with a problem is left out of
// the RuleSet and reported with its line, column, keyword and kind
// (unsupported: the filter cannot enforce it; invalid: a mistake): nothing in
// a rule is silently ignored except the keywords documented as not affecting
// matching (rev, classtype, metadata, reference, priority, gid, fast_pattern,
// rawbytes), which are kept for alerts.
//
// Any input is safe to parse: lists and variables nest at most kMaxNesting
// deep, a list holds at most kMaxListEntries entries, and variable expansion
// produces at most kMaxExpandedEntries entries for the whole file (each
// variable is expanded once and reused), so time and memory stay linear in
// the input plus that bound.
#pragma once
#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "rules/rule.h"

namespace gpo::rules {

inline constexpr int kMaxNesting = 32;
inline constexpr size_t kMaxListEntries = 65535;          // what a compiled FieldSet holds
// Address/port entries all rules of a file may hold together (every use of a
// variable counts): about 80 MB, and what the ACL build and the classifiers
// walk stays bounded with it. 50K rules with a 40-entry $HOME_NET fit.
inline constexpr size_t kMaxExpandedEntries = size_t(1) << 22;

// A variable defined outside the rule file.
struct VarDef {
  std::string name;    // without '$'
  std::string value;   // an address or port expression
  std::string origin;  // "--var", "config FILE", "suricata.yaml FILE", "default"
};

struct ParseOptions {
  // Override the file's own `var` lines of the same name. The first
  // definition of a name in this list wins (order them by precedence).
  std::vector<VarDef> vars;
  // Variables defined nowhere take Suricata's stock values (vars.h).
  bool default_vars = true;
};

ParseResult parse_rules(std::string_view text, const ParseOptions& opt = {});

// Reads and parses a file. Throws std::runtime_error when it cannot be read.
ParseResult parse_rules_file(const std::string& path, const ParseOptions& opt = {});

// "FILE:LINE:COL: message"
std::string format_diagnostic(const std::string& file, const Diagnostic& d);

}  // namespace gpo::rules
