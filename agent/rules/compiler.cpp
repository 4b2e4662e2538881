#include "rules/compiler.h"

#include <cstring>
#include <map>
#include <stdexcept>
#include <utility>

#include <fmt/format.h>

#include "rules/default_rules.h"
#include "rules/parser.h"

namespace gpo::rules {
namespace {

classify::AddrEntry to_entry(const Cidr& c) {
  classify::AddrEntry e{};
  e.family = c.family;
  e.negated = c.negated;
  if (c.family == 4) {  // v4-mapped ::ffff:a.b.c.d, as the frame parser stores IPv4
    e.addr[10] = e.addr[11] = 0xff;
    std::memcpy(e.addr + 12, c.addr.data(), 4);
    e.prefix_len = uint8_t(c.prefix_len + 96);
  } else if (c.family == 6) {
    std::memcpy(e.addr, c.addr.data(), 16);
    e.prefix_len = c.prefix_len;
  } else {
    e.prefix_len = 0;  // any
  }
  return e;
}

// Identical address/port specs (every rule using $HOME_NET) share one run of
// entries: the key is the spec's bytes.
struct SpecCache {
  std::map<std::string, classify::FieldSet> addrs, ports;
};

template <typename Spec>
std::string spec_key(const Spec& s) {
  std::string k(1, char(s.negated));
  k.append(reinterpret_cast<const char*>(s.entries.data()), s.entries.size() * sizeof(s.entries[0]));
  return k;
}

classify::FieldSet add_addrs(classify::RuleTables& t, const AddrSpec& s, SpecCache& cache) {
  if (s.entries.size() > UINT16_MAX) throw std::length_error("rules: address list longer than 65535 entries");
  auto [it, fresh] = cache.addrs.try_emplace(spec_key(s));
  if (!fresh) return it->second;
  classify::FieldSet& f = it->second;
  f.first = uint32_t(t.addrs.size());
  f.count = uint16_t(s.entries.size());
  f.negated = s.negated;
  for (const Cidr& c : s.entries) t.addrs.push_back(to_entry(c));
  return f;
}

classify::FieldSet add_ports(classify::RuleTables& t, const PortSpec& s, SpecCache& cache) {
  if (s.entries.size() > UINT16_MAX) throw std::length_error("rules: port list longer than 65535 entries");
  auto [it, fresh] = cache.ports.try_emplace(spec_key(s));
  if (!fresh) return it->second;
  classify::FieldSet& f = it->second;
  f.first = uint32_t(t.ports.size());
  f.count = uint16_t(s.entries.size());
  f.negated = s.negated;
  for (const PortRange& r : s.entries) t.ports.push_back(classify::PortEntry{r.lo, r.hi, r.negated, {}});
  return f;
}

}  // namespace

classify::RuleTables compile(const RuleSet& set, const CompileOptions& opt) {
  classify::RuleTables t;
  t.default_action = set.default_action;
  t.inspect_depth = opt.inspect_depth;
  std::vector<match::Pattern> patterns;
  std::map<std::pair<std::string, bool>, uint32_t> pattern_ids;  // one pattern per distinct (bytes, nocase)
  std::map<std::string, uint32_t> pattern_bytes;                  // positional patterns in content_bytes
  SpecCache specs;
  t.rules.reserve(set.rules.size());
  for (const Rule& r : set.rules) {
    classify::RuleEntry e{};
    e.sid = r.sid;
    e.action = r.action;
    e.proto_mask = r.proto_mask;
    e.bidirectional = r.bidirectional;
    e.src = add_addrs(t, r.src, specs);
    e.sport = add_ports(t, r.sport, specs);
    e.dst = add_addrs(t, r.dst, specs);
    e.dport = add_ports(t, r.dport, specs);
    e.flow_set = r.flow_set;
    e.flow_clear = r.flow_clear;
    e.icmp_only = r.icmp_only;
    e.ip_proto = r.ip_proto;
    e.dsize = r.dsize;
    e.tcp_flags = r.tcp_flags;
    e.itype = r.itype;
    e.icode = r.icode;
    e.ttl = r.ttl;
    e.isdataat = r.isdataat;
    e.content_first = uint32_t(t.contents.size());
    e.content_count = uint32_t(r.contents.size());
    for (const Content& c : r.contents) e.positional |= c.positional();
    for (const Content& c : r.contents) {
      auto key = std::make_pair(c.bytes, c.nocase);
      auto [it, fresh] = pattern_ids.emplace(key, uint32_t(patterns.size()));
      if (fresh) patterns.push_back({c.bytes, c.nocase});
      classify::ContentRef ref{};
      ref.pattern_id = it->second;
      ref.negated = c.negated;
      ref.nocase = c.nocase;
      ref.relative = c.relative();
      ref.has_within = c.has_within;
      ref.len = uint32_t(c.bytes.size());
      ref.offset = c.has_offset ? c.offset : 0;
      ref.end = c.has_depth ? ref.offset + c.depth : 0;
      ref.distance = c.distance;
      ref.within = c.within;
      ref.isdataat_rel = c.isdataat_rel;
      if (e.positional) {  // the position search reads the pattern's bytes
        auto [b, new_bytes] = pattern_bytes.emplace(c.bytes, uint32_t(t.content_bytes.size()));
        if (new_bytes) t.content_bytes.insert(t.content_bytes.end(), c.bytes.begin(), c.bytes.end());
        ref.bytes = b->second;
      }
      t.contents.push_back(ref);
    }
    t.rule_by_sid.emplace(r.sid, uint32_t(t.rules.size()));
    t.rules.push_back(e);
    t.msgs.push_back(r.msg);
    t.lines.push_back(r.line);
    t.meta.push_back({r.gid, r.rev, r.priority, r.classtype});
  }
  t.matcher = match::build(patterns);
  return t;
}

classify::RuleTables load_rules(const std::string& path, const CompileOptions& opt) {
  ParseResult r = path.empty() ? parse_rules(default_rules_text()) : parse_rules_file(path);
  const std::string name = path.empty() ? kDefaultRulesName : path;
  if (!r.ok())
    throw std::runtime_error(fmt::format("{} ({} problem{} in all; run `gpuoffload-agent rules check {}` for the list)",
                                         format_diagnostic(name, r.problems.front()), r.problems.size(),
                                         r.problems.size() == 1 ? "" : "s", path.empty() ? "FILE" : path));
  return compile(r.set, opt);
}

}  // namespace gpo::rules
