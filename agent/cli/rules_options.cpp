#include "cli/rules_options.h"

#include <fmt/format.h>

#include "cli/commands.h"
#include "rules/vars.h"

namespace gpo::cli {

void add_rules_options(CLI::App* cmd, RulesOptions& o) {
  cmd->add_option("--var", o.vars,
                  "Define a rule variable, NAME=VALUE (repeatable; wins over the config's [vars], --suricata-yaml "
                  "and the rule file's own var lines), e.g. --var HOME_NET=[10.0.0.0/8,fd00::/8]")
      ->allow_extra_args(false);  // one NAME=VALUE per --var: a rule file after it stays the positional
  cmd->add_option("--suricata-yaml", o.suricata_yaml,
                  "Read rule variables from an existing suricata.yaml (vars: address-groups, port-groups)")
      ->check(CLI::Validator([](std::string& s) { return s.empty() ? std::string() : CLI::ExistingFile(s); }, "FILE"));
  cmd->add_flag("--strict", o.strict,
                "Refuse the whole rule file when any rule has a problem (default: load the rules that can be "
                "enforced, skip the others with one line each)");
  cmd->add_flag("--no-default-vars", o.no_default_vars,
                "Do not give variables defined nowhere Suricata's default values (HOME_NET, EXTERNAL_NET, HTTP_PORTS, ...)");
}

std::vector<rules::VarDef> read_config_vars(const std::string& config_file) {
  std::vector<rules::VarDef> out;
  if (config_file.empty()) return out;
  std::vector<CLI::ConfigItem> items;
  try {
    items = CLI::ConfigTOML().from_file(config_file);
  } catch (const CLI::Error& e) {
    throw CLI::RuntimeError("--config " + config_file + ": " + e.what(), kUsage);
  }
  for (auto& it : items) {
    if (it.parents.size() != 1 || it.parents[0] != "vars" || it.name == "++" || it.name == "--") continue;
    std::string value;
    for (size_t i = 0; i < it.inputs.size(); ++i) value += (i ? "," : "") + it.inputs[i];
    if (it.inputs.size() > 1) value = "[" + value + "]";  // a TOML array of addresses or ports
    try {
      out.push_back(rules::parse_var_arg(it.name + "=" + value, "config " + config_file));
    } catch (const std::invalid_argument& e) {
      throw CLI::RuntimeError(fmt::format("--config {}: [vars] {}", config_file, e.what()), kUsage);
    }
  }
  return out;
}

rules::ParseOptions make_parse_options(const RulesOptions& o, const std::vector<rules::VarDef>& config_vars) {
  rules::ParseOptions p;
  p.default_vars = !o.no_default_vars;
  for (const std::string& v : o.vars) {
    try {
      p.vars.push_back(rules::parse_var_arg(v));
    } catch (const std::invalid_argument& e) {
      throw CLI::RuntimeError(std::string("--var ") + e.what(), kUsage);
    }
  }
  p.vars.insert(p.vars.end(), config_vars.begin(), config_vars.end());
  if (!o.suricata_yaml.empty()) {
    try {
      auto y = rules::load_suricata_yaml(o.suricata_yaml);
      p.vars.insert(p.vars.end(), y.begin(), y.end());
    } catch (const std::exception& e) {
      throw CLI::RuntimeError(std::string("--suricata-yaml: ") + e.what(), kUsage);
    }
  }
  return p;
}

}  // namespace gpo::cli
