#include "rules/vars.h"

#include <yaml.h>

#include <fmt/format.h>

#include <cctype>
#include <cstdio>
#include <memory>
#include <stdexcept>

namespace gpo::rules {

const std::vector<VarDef>& default_vars() {
  // The values of Suricata's stock suricata.yaml (vars: address-groups, port-groups).
  static const std::vector<VarDef> kDefaults = [] {
    std::vector<VarDef> v;
    auto add = [&](const char* n, const char* val) { v.push_back({n, val, "default"}); };
    add("HOME_NET", "[192.168.0.0/16,10.0.0.0/8,172.16.0.0/12]");
    add("EXTERNAL_NET", "!$HOME_NET");
    for (const char* n : {"HTTP_SERVERS", "SMTP_SERVERS", "SQL_SERVERS", "DNS_SERVERS", "TELNET_SERVERS",
                          "DC_SERVERS", "DNP3_SERVER", "DNP3_CLIENT", "MODBUS_CLIENT", "MODBUS_SERVER",
                          "ENIP_CLIENT", "ENIP_SERVER"})
      add(n, "$HOME_NET");
    add("AIM_SERVERS", "$EXTERNAL_NET");
    add("HTTP_PORTS", "80");
    add("SHELLCODE_PORTS", "!80");
    add("ORACLE_PORTS", "1521");
    add("SSH_PORTS", "22");
    add("DNP3_PORTS", "20000");
    add("MODBUS_PORTS", "502");
    add("FILE_DATA_PORTS", "[$HTTP_PORTS,110,143]");
    add("FTP_PORTS", "21");
    add("GENEVE_PORTS", "6081");
    add("VXLAN_PORTS", "4789");
    add("TEREDO_PORTS", "3544");
    // Names Snort's community rules use that suricata.yaml lacks: snort.conf's values.
    for (const char* n : {"SIP_SERVERS", "SNMP_SERVERS", "SSH_SERVERS"}) add(n, "$HOME_NET");
    add("SIP_PORTS", "[5060,5061,5600]");
    add("GTP_PORTS", "[2123,2152,3386]");
    return v;
  }();
  return kDefaults;
}

namespace {

bool valid_name(const std::string& s) {
  if (s.empty() || !(std::isalpha(static_cast<unsigned char>(s[0])) || s[0] == '_')) return false;
  for (char c : s)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_')) return false;
  return true;
}

}  // namespace

VarDef parse_var_arg(const std::string& arg, const std::string& origin) {
  const size_t eq = arg.find('=');
  if (eq == std::string::npos)
    throw std::invalid_argument(fmt::format("'{}': expected NAME=VALUE, e.g. HOME_NET=[10.0.0.0/8]", arg));
  std::string name = arg.substr(0, eq), value = arg.substr(eq + 1);
  if (!name.empty() && name[0] == '$') name.erase(0, 1);
  if (!valid_name(name))
    throw std::invalid_argument(fmt::format("'{}': variable names are letters, digits and _", arg));
  while (!value.empty() && std::isspace(static_cast<unsigned char>(value.back()))) value.pop_back();
  while (!value.empty() && std::isspace(static_cast<unsigned char>(value.front()))) value.erase(0, 1);
  if (value.size() >= 2 && value.front() == '"' && value.back() == '"') value = value.substr(1, value.size() - 2);
  if (value.empty()) throw std::invalid_argument(fmt::format("'{}': empty value", arg));
  return {name, value, origin};
}

std::vector<VarDef> load_suricata_yaml(const std::string& path) {
  std::unique_ptr<FILE, int (*)(FILE*)> f(std::fopen(path.c_str(), "rb"), &std::fclose);
  if (!f) throw std::runtime_error(fmt::format("cannot open '{}'", path));
  yaml_parser_t parser;
  yaml_document_t doc;
  if (!yaml_parser_initialize(&parser)) throw std::runtime_error("libyaml: out of memory");
  yaml_parser_set_input_file(&parser, f.get());
  if (!yaml_parser_load(&parser, &doc)) {
    std::string why = fmt::format("{}:{}:{}: {}", path, parser.problem_mark.line + 1, parser.problem_mark.column + 1,
                                  parser.problem ? parser.problem : "YAML error");
    yaml_parser_delete(&parser);
    throw std::runtime_error(why);
  }
  yaml_parser_delete(&parser);
  std::unique_ptr<yaml_document_t, void (*)(yaml_document_t*)> guard(&doc, &yaml_document_delete);

  auto scalar = [&](yaml_node_t* n) -> std::string {
    if (!n || n->type != YAML_SCALAR_NODE) return {};
    return std::string(reinterpret_cast<const char*>(n->data.scalar.value), n->data.scalar.length);
  };
  // The value of `key` in mapping node m, or null.
  auto lookup = [&](yaml_node_t* m, const char* key) -> yaml_node_t* {
    if (!m || m->type != YAML_MAPPING_NODE) return nullptr;
    for (yaml_node_pair_t* p = m->data.mapping.pairs.start; p < m->data.mapping.pairs.top; ++p)
      if (scalar(yaml_document_get_node(&doc, p->key)) == key) return yaml_document_get_node(&doc, p->value);
    return nullptr;
  };
  yaml_node_t* vars = lookup(yaml_document_get_root_node(&doc), "vars");
  if (!vars) throw std::runtime_error(fmt::format("{}: no 'vars:' section", path));
  std::vector<VarDef> out;
  const std::string origin = "suricata.yaml " + path;
  for (const char* group : {"address-groups", "port-groups"}) {
    yaml_node_t* g = lookup(vars, group);
    if (!g) continue;
    if (g->type != YAML_MAPPING_NODE)
      throw std::runtime_error(fmt::format("{}: vars: {}: expected NAME: VALUE entries", path, group));
    for (yaml_node_pair_t* p = g->data.mapping.pairs.start; p < g->data.mapping.pairs.top; ++p) {
      yaml_node_t* v = yaml_document_get_node(&doc, p->value);
      std::string name = scalar(yaml_document_get_node(&doc, p->key));
      if (!v || v->type != YAML_SCALAR_NODE)
        throw std::runtime_error(fmt::format("{}:{}: vars: {}: {}: the value must be a string", path,
                                             v ? v->start_mark.line + 1 : 0, group, name));
      try {
        out.push_back(parse_var_arg(name + "=" + scalar(v), origin));
      } catch (const std::invalid_argument& e) {
        throw std::runtime_error(fmt::format("{}:{}: vars: {}: {}", path, v->start_mark.line + 1, group, e.what()));
      }
    }
  }
  return out;
}

}  // namespace gpo::rules
