#include "afxdp/rule_snapshot.h"

#include <cstring>

#include <fmt/format.h>

#include "rules/compiler.h"
#include "rules/default_rules.h"
#include "rules/parser.h"

namespace gpo::afxdp {

std::shared_ptr<const RuleSnapshot> make_rule_snapshot(const std::string& name, rules::RuleSet set) {
  auto snap = std::make_shared<RuleSnapshot>();
  snap->name = name;
  snap->set = std::move(set);
  snap->tables = std::make_shared<const classify::RuleTables>(rules::compile(snap->set));
  snap->acl = classify::acl::build(*snap->tables);
  snap->what = fmt::format("{} rules from {}, default {}", snap->set.rules.size(), snap->name,
                           gpo_action_name(snap->set.default_action));
  return snap;
}

std::shared_ptr<const RuleSnapshot> load_rule_snapshot(const std::string& path, std::vector<std::string>& problems,
                                                       const rules::ParseOptions& opt) {
  const std::string name = path.empty() ? rules::kDefaultRulesName : path;
  rules::ParseResult pr =
      path.empty() ? rules::parse_rules(rules::default_rules_text(), opt) : rules::parse_rules_file(path, opt);
  if (!pr.ok()) {
    for (auto& d : pr.problems) problems.push_back(rules::format_diagnostic(name, d));
    return nullptr;
  }
  return make_rule_snapshot(name, std::move(pr.set));
}

namespace {

// The rule at index i as comparable bytes: its compiled entry with the table
// indices cleared (so every scalar field, present and future, takes part), the
// address and port entries it refers to, and its contents.
std::string rule_identity(const RuleSnapshot& s, uint32_t i) {
  const classify::RuleTables& t = *s.tables;
  classify::RuleEntry e = t.rules[i];
  std::string out;
  auto put = [&](const void* p, size_t n) { out.append(static_cast<const char*>(p), n); };
  auto fields = [&](const classify::FieldSet& f, bool addr) {
    if (f.count == 0) return;  // `any`: no entries (the tables may even be empty)
    if (addr) put(t.addrs.data() + f.first, f.count * sizeof(classify::AddrEntry));
    else put(t.ports.data() + f.first, f.count * sizeof(classify::PortEntry));
  };
  fields(e.src, true);
  fields(e.dst, true);
  fields(e.sport, false);
  fields(e.dport, false);
  e.src.first = e.dst.first = e.sport.first = e.dport.first = 0;
  e.content_first = 0;
  put(&e, sizeof e);
  // Contents: their compiled windows and flags (table indices cleared) and the pattern bytes.
  const auto& cs = s.set.rules[i].contents;
  for (uint32_t k = 0; k < t.rules[i].content_count; k++) {
    classify::ContentRef c = t.contents[t.rules[i].content_first + k];
    c.pattern_id = c.bytes = 0;
    put(&c, sizeof c);
    if (k < cs.size()) out += std::to_string(cs[k].bytes.size()) + ':' + cs[k].bytes;
  }
  return out;
}

// Header-matching rules for a packet from (src, sport) to (dst, dport), in
// file order, up to and including the rule with sid `stop` (0: all).
std::vector<std::string> matching(const RuleSnapshot& s, const classify::ParsedFrame& p, uint32_t stop) {
  std::vector<std::string> out;
  const classify::acl::View v = s.acl.view();
  classify::acl::for_each_match(v, p, [&](uint32_t slot) {
    uint32_t r = v.slot_rule[slot];
    // A bidirectional rule has two slots: count it once.
    std::string id = rule_identity(s, r);
    if (out.empty() || out.back() != id) out.push_back(std::move(id));
    return stop != 0 && s.tables->rules[r].sid == stop;
  });
  return out;
}

classify::ParsedFrame frame_of(const gpo_flow_key& k, bool a_to_b) {
  classify::ParsedFrame p;
  p.status = classify::ParseStatus::kOk;
  static const uint8_t v4_prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  p.ip_version = std::memcmp(k.addr_a, v4_prefix, 12) == 0 && std::memcmp(k.addr_b, v4_prefix, 12) == 0 ? 4 : 6;
  p.proto = k.proto;
  std::memcpy(p.src, a_to_b ? k.addr_a : k.addr_b, 16);
  std::memcpy(p.dst, a_to_b ? k.addr_b : k.addr_a, 16);
  uint16_t pa = uint16_t(__builtin_bswap16(k.port_a)), pb = uint16_t(__builtin_bswap16(k.port_b));
  p.sport = a_to_b ? pa : pb;
  p.dport = a_to_b ? pb : pa;
  return p;
}

}  // namespace

bool verdict_could_change(const RuleSnapshot& prev, const RuleSnapshot& next, const gpo_flow_key& key,
                          const gpo_flow_verdict& v) {
  if (v.rule_id == 0 && prev.tables->default_action != next.tables->default_action) return true;
  for (bool a_to_b : {true, false}) {
    classify::ParsedFrame p = frame_of(key, a_to_b);
    if (matching(prev, p, v.rule_id) != matching(next, p, v.rule_id)) return true;
  }
  return false;
}

}  // namespace gpo::afxdp
