// The rule-loading options `run` and `rules check` share: --var, --suricata-yaml,
// --strict, and the [vars] table of the --config file (docs/rules.md).
#pragma once
#include <CLI/CLI.hpp>

#include <string>
#include <vector>

#include "rules/parser.h"

namespace gpo::cli {

struct RulesOptions {
  std::vector<std::string> vars;  // NAME=VALUE, repeatable
  std::string suricata_yaml;
  bool strict = false;
  bool no_default_vars = false;
};

void add_rules_options(CLI::App* cmd, RulesOptions& o);

// [vars] of a TOML/INI config file: NAME = "VALUE" lines (origin "config FILE").
// Throws CLI::RuntimeError (usage) when the file cannot be read.
std::vector<rules::VarDef> read_config_vars(const std::string& config_file);

// The parser options: --var first, then the config's [vars], then
// --suricata-yaml, then Suricata's defaults. Throws CLI::RuntimeError (usage).
rules::ParseOptions make_parse_options(const RulesOptions& o, const std::vector<rules::VarDef>& config_vars);

}  // namespace gpo::cli
