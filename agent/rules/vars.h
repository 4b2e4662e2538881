// Rule variables from where users keep them: `--var NAME=VALUE`, the agent
// config file's [vars] table, an existing suricata.yaml's
// vars: address-groups / port-groups, and Suricata's stock defaults for the
// rest (docs/rules.md lists them).
#pragma once
#include <string>
#include <vector>

#include "rules/parser.h"

namespace gpo::rules {

// Suricata's default suricata.yaml values (HOME_NET, EXTERNAL_NET, HTTP_PORTS, ...),
// and snort.conf's for the few names Snort's community rules add (SIP_PORTS, ...).
const std::vector<VarDef>& default_vars();

// "NAME=VALUE" (a leading '$' on NAME is accepted). Throws std::invalid_argument.
VarDef parse_var_arg(const std::string& arg, const std::string& origin = "--var");

// vars: address-groups and port-groups of a suricata.yaml. Throws
// std::runtime_error naming the file when it cannot be read or parsed, or has
// no vars section.
std::vector<VarDef> load_suricata_yaml(const std::string& path);

}  // namespace gpo::rules
