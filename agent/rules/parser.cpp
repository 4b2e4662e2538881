#include "rules/parser.h"

#include <arpa/inet.h>

#include <fmt/format.h>

#include <cctype>
#include <fstream>
#include <map>
#include <sstream>
#include <stdexcept>

#include "kernels/classify/tables.h"

namespace gpo::rules {
namespace {

using classify::ProtoBits;

constexpr int kMaxVarDepth = 8;

// Keywords that never change which packets a rule matches: accepted, ignored.
bool is_ignored_keyword(std::string_view k) {
  return k == "rev" || k == "classtype" || k == "metadata" || k == "reference" || k == "priority" ||
         k == "gid" || k == "fast_pattern";
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

// Offset of `inner` inside `outer` (both views of the same buffer).
uint32_t offset_in(std::string_view outer, std::string_view inner) {
  return static_cast<uint32_t>(inner.data() - outer.data());
}

bool parse_uint(std::string_view s, uint64_t max, uint64_t& out) {
  if (s.empty() || s.size() > 10) return false;
  uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + uint64_t(c - '0');
  }
  if (v > max) return false;
  out = v;
  return true;
}

struct Var {
  std::string value;
  uint32_t line;
};

// Parsing state for one logical line (a rule, possibly joined from several).
class LineParser {
 public:
  LineParser(std::string_view text, uint32_t line, const std::map<std::string, Var>& vars,
             std::vector<Diagnostic>& problems)
      : text_(text), line_(line), vars_(vars), problems_(problems) {}

  bool failed() const { return failed_; }

  void error(std::string_view at, std::string keyword, std::string message) {
    uint32_t col = (at.data() >= text_.data() && at.data() <= text_.data() + text_.size()) ? offset_in(text_, at) + 1 : 1;
    problems_.push_back({line_, col, std::move(keyword), std::move(message)});
    failed_ = true;
  }

  bool parse_rule(Rule& r);

 private:
  bool parse_addr(std::string_view s, std::string_view at, AddrSpec& out, int depth);
  bool parse_ports(std::string_view s, std::string_view at, PortSpec& out, int depth);
  template <typename Spec, typename Leaf>
  bool parse_spec(std::string_view s, std::string_view at, Spec& out, int depth, std::string_view what,
                  bool (LineParser::*parse_leaf)(std::string_view, std::string_view, Leaf&));
  bool parse_cidr(std::string_view s, std::string_view at, Cidr& out);
  bool parse_port_range(std::string_view s, std::string_view at, PortRange& out);
  const Var* lookup(std::string_view ref, std::string_view at);
  void parse_options(std::string_view body, Rule& r);
  bool decode_content(std::string_view quoted, std::string_view at, std::string& out);
  bool unquote(std::string_view v, std::string_view at, std::string_view keyword, std::string& out);

  std::string_view text_;
  uint32_t line_;
  const std::map<std::string, Var>& vars_;
  std::vector<Diagnostic>& problems_;
  bool failed_ = false;
};

// Splits a bracket list's inside at top-level commas.
std::vector<std::string_view> split_list(std::string_view inner) {
  std::vector<std::string_view> parts;
  int depth = 0;
  size_t start = 0;
  for (size_t i = 0; i <= inner.size(); ++i) {
    if (i == inner.size() || (inner[i] == ',' && depth == 0)) {
      parts.push_back(trim(inner.substr(start, i - start)));
      start = i + 1;
    } else if (inner[i] == '[') {
      ++depth;
    } else if (inner[i] == ']') {
      --depth;
    }
  }
  return parts;
}

const Var* LineParser::lookup(std::string_view ref, std::string_view at) {
  std::string name(ref.substr(1));
  auto it = vars_.find(name);
  if (it == vars_.end()) {
    error(at, std::string(ref),
          fmt::format("undefined variable '{}' (define it in the file: var {} <value>)", ref, name));
    return nullptr;
  }
  return &it->second;
}

bool LineParser::parse_cidr(std::string_view s, std::string_view at, Cidr& out) {
  std::string_view addr = s, len;
  if (auto slash = s.find('/'); slash != std::string_view::npos) {
    addr = s.substr(0, slash);
    len = s.substr(slash + 1);
  }
  bool v6 = addr.find(':') != std::string_view::npos;
  std::string a(addr);
  out = Cidr{};
  out.family = v6 ? 6 : 4;
  if (inet_pton(v6 ? AF_INET6 : AF_INET, a.c_str(), out.addr.data()) != 1) {
    error(at, std::string(s), fmt::format("invalid address '{}'", s));
    return false;
  }
  uint64_t width = v6 ? 128 : 32, plen = width;
  if (!len.empty() || s.find('/') != std::string_view::npos) {
    if (!parse_uint(len, width, plen)) {
      error(at, std::string(s), fmt::format("invalid prefix length in '{}' (0..{})", s, width));
      return false;
    }
  }
  out.prefix_len = uint8_t(plen);
  for (unsigned bit = unsigned(plen); bit < width; ++bit) out.addr[bit / 8] &= uint8_t(~(0x80u >> (bit % 8)));
  return true;
}

// Addresses and ports share one grammar: [!]any | [!]$VAR | [!][a, b, ...] | [!]leaf,
// where list elements may be any of these again (one level of negation inside).
template <typename Spec, typename Leaf>
bool LineParser::parse_spec(std::string_view s, std::string_view at, Spec& out, int depth, std::string_view what,
                            bool (LineParser::*parse_leaf)(std::string_view, std::string_view, Leaf&)) {
  out = Spec{};
  s = trim(s);
  bool neg = false;
  if (!s.empty() && s[0] == '!') {
    neg = true;
    s = trim(s.substr(1));
  }
  if (s.empty()) {
    error(at, "", fmt::format("empty {}", what));
    return false;
  }
  if (s == "any") {
    if (neg) {
      error(at, "!any", "'!any' matches nothing");
      return false;
    }
    return true;
  }
  if (s[0] == '$') {
    if (depth >= kMaxVarDepth) {
      error(at, std::string(s), fmt::format("variable '{}' nests too deep (a loop?)", s));
      return false;
    }
    const Var* v = lookup(s, at);
    if (!v || !parse_spec(v->value, at, out, depth + 1, what, parse_leaf)) return false;
    if (neg) {
      if (out.is_any()) {
        error(at, std::string(s), fmt::format("'!{}' is '!any' and matches nothing", s));
        return false;
      }
      out.negated = !out.negated;
    }
    return true;
  }
  if (s[0] == '[') {
    if (s.back() != ']') {
      error(at, std::string(s), fmt::format("unterminated {} list '{}'", what, s));
      return false;
    }
    auto parts = split_list(s.substr(1, s.size() - 2));
    for (auto part : parts) {
      Spec e;
      if (!parse_spec(part, at, e, depth + 1, what, parse_leaf)) return false;
      if (e.is_any()) {
        out.entries.push_back(Leaf{});  // a default leaf matches everything
        continue;
      }
      bool has_neg = false;
      for (auto& c : e.entries) has_neg |= c.negated;
      if (has_neg && (e.negated || parts.size() > 1)) {
        error(at, std::string(part),
              fmt::format("unsupported nesting of negations in '{}': flatten the list", part));
        return false;
      }
      for (auto c : e.entries) {
        c.negated = c.negated != e.negated;
        out.entries.push_back(c);
      }
    }
    out.negated = neg;
    return true;
  }
  Leaf c;
  if (!(this->*parse_leaf)(s, at, c)) return false;
  out.entries.push_back(c);
  out.negated = neg;
  return true;
}

bool LineParser::parse_addr(std::string_view s, std::string_view at, AddrSpec& out, int depth) {
  return parse_spec(s, at, out, depth, "address", &LineParser::parse_cidr);
}

bool LineParser::parse_port_range(std::string_view s, std::string_view at, PortRange& out) {
  out = PortRange{};
  uint64_t lo = 0, hi = 65535;
  auto colon = s.find(':');
  bool ok;
  if (colon == std::string_view::npos) {
    ok = parse_uint(s, 65535, lo);
    hi = lo;
  } else {
    auto a = s.substr(0, colon), b = s.substr(colon + 1);
    ok = (a.empty() || parse_uint(a, 65535, lo)) && (b.empty() || parse_uint(b, 65535, hi)) && !(a.empty() && b.empty());
  }
  if (!ok) {
    error(at, std::string(s), fmt::format("invalid port '{}' (N, N:M, N:, :M with 0..65535)", s));
    return false;
  }
  if (lo > hi) {
    error(at, std::string(s), fmt::format("empty port range '{}'", s));
    return false;
  }
  out.lo = uint16_t(lo);
  out.hi = uint16_t(hi);
  return true;
}

bool LineParser::parse_ports(std::string_view s, std::string_view at, PortSpec& out, int depth) {
  return parse_spec(s, at, out, depth, "port", &LineParser::parse_port_range);
}

bool LineParser::unquote(std::string_view v, std::string_view at, std::string_view keyword, std::string& out) {
  out.clear();
  if (v.size() < 2 || v.front() != '"' || v.back() != '"') {
    error(at, std::string(keyword), fmt::format("{}: value must be a quoted string", keyword));
    return false;
  }
  v = v.substr(1, v.size() - 2);
  for (size_t i = 0; i < v.size(); ++i) {
    if (v[i] == '\\' && i + 1 < v.size()) {
      out += v[++i];
    } else if (v[i] == '"') {
      error(at, std::string(keyword), fmt::format("{}: unescaped '\"' inside the string (write \\\")", keyword));
      return false;
    } else {
      out += v[i];
    }
  }
  return true;
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

bool LineParser::decode_content(std::string_view v, std::string_view at, std::string& out) {
  out.clear();
  if (v.size() < 2 || v.front() != '"' || v.back() != '"') {
    error(at, "content", "content: value must be a quoted string, e.g. content:\"GET |20|\"");
    return false;
  }
  v = v.substr(1, v.size() - 2);
  bool hex = false;
  int pending = -1;  // first nibble of a hex byte
  for (size_t i = 0; i < v.size(); ++i) {
    char c = v[i];
    if (c == '|') {
      if (hex && pending >= 0) {
        error(v.substr(i), "content", "content: odd number of hex digits between '|'");
        return false;
      }
      hex = !hex;
      continue;
    }
    if (hex) {
      if (c == ' ') continue;
      int h = hex_value(c);
      if (h < 0) {
        error(v.substr(i), "content", fmt::format("content: '{}' is not a hex digit (inside |...|)", c));
        return false;
      }
      if (pending < 0) {
        pending = h;
      } else {
        out += char(pending << 4 | h);
        pending = -1;
      }
      continue;
    }
    if (c == '\\') {
      if (i + 1 == v.size()) {
        error(v.substr(i), "content", "content: dangling '\\' at the end");
        return false;
      }
      out += v[++i];
      continue;
    }
    if (c == '"') {
      error(v.substr(i), "content", "content: unescaped '\"' inside the string (write \\\" or |22|)");
      return false;
    }
    out += c;
  }
  if (hex) {
    error(at, "content", "content: unterminated |hex| block");
    return false;
  }
  if (out.empty()) {
    error(at, "content", "content: empty pattern");
    return false;
  }
  return true;
}

// body: the text between '(' and the final ')'.
void LineParser::parse_options(std::string_view body, Rule& r) {
  bool have_sid = false;
  size_t i = 0;
  while (i < body.size()) {
    // One option: up to the first ';' outside quotes (backslash escapes).
    size_t start = i;
    bool quoted = false;
    for (; i < body.size(); ++i) {
      char c = body[i];
      if (c == '\\' && i + 1 < body.size()) {
        ++i;
      } else if (c == '"') {
        quoted = !quoted;
      } else if (c == ';' && !quoted) {
        break;
      }
    }
    std::string_view opt = trim(body.substr(start, i - start));
    ++i;  // past ';'
    if (opt.empty()) continue;
    if (quoted) {
      error(opt, "", "unterminated quoted string in the options");
      return;
    }
    std::string_view key = opt, value;
    bool has_value = false;
    if (auto colon = opt.find(':'); colon != std::string_view::npos) {
      key = trim(opt.substr(0, colon));
      value = trim(opt.substr(colon + 1));
      has_value = true;
    }
    std::string k(key);
    if (k == "msg") {
      unquote(value, opt, "msg", r.msg);
    } else if (k == "content") {
      Content c;
      std::string_view v = value;
      if (!v.empty() && v[0] == '!') {
        c.negated = true;
        v = trim(v.substr(1));
      }
      if (decode_content(v, opt, c.bytes)) r.contents.push_back(std::move(c));
    } else if (k == "nocase") {
      if (has_value) {
        error(opt, k, "nocase takes no value");
      } else if (r.contents.empty()) {
        error(opt, k, "nocase must follow a content option");
      } else {
        r.contents.back().nocase = true;
      }
    } else if (k == "sid") {
      uint64_t sid;
      if (!parse_uint(value, UINT32_MAX, sid) || sid == 0) {
        error(opt, k, fmt::format("sid: '{}' is not a number in 1..4294967295 (0 is the default policy)", value));
      } else if (have_sid) {
        error(opt, k, "sid given twice");
      } else {
        r.sid = uint32_t(sid);
        have_sid = true;
      }
    } else if (is_ignored_keyword(k)) {
      // Documented as accepted and ignored: it does not affect matching.
    } else {
      error(opt, k, fmt::format("unsupported keyword '{}'", k));
    }
  }
  if (!have_sid && !failed_) error(text_, "sid", "rule has no sid (add sid:N; with a unique N > 0)");
}

// Header tokens: whitespace separated; whitespace inside [...] belongs to the token.
std::vector<std::string_view> header_tokens(std::string_view h) {
  std::vector<std::string_view> out;
  size_t i = 0;
  while (i < h.size()) {
    while (i < h.size() && std::isspace(static_cast<unsigned char>(h[i]))) ++i;
    if (i == h.size()) break;
    size_t start = i;
    int depth = 0;
    while (i < h.size() && (depth > 0 || !std::isspace(static_cast<unsigned char>(h[i])))) {
      if (h[i] == '[') ++depth;
      if (h[i] == ']') --depth;
      ++i;
    }
    out.push_back(h.substr(start, i - start));
  }
  return out;
}

bool LineParser::parse_rule(Rule& r) {
  r.line = line_;
  // Header is everything before the first '(' outside brackets.
  size_t open = std::string_view::npos;
  int depth = 0;
  for (size_t i = 0; i < text_.size(); ++i) {
    if (text_[i] == '[') ++depth;
    else if (text_[i] == ']') --depth;
    else if (text_[i] == '(' && depth == 0) {
      open = i;
      break;
    }
  }
  std::string_view header = open == std::string_view::npos ? text_ : text_.substr(0, open);
  auto tok = header_tokens(header);
  if (!tok.empty()) {
    std::string_view a = tok[0];
    if (a == "pass") r.action = GPO_ACT_PASS;
    else if (a == "drop") r.action = GPO_ACT_DROP;
    else if (a == "alert") r.action = GPO_ACT_ALERT;
    else error(a, std::string(a), fmt::format("unsupported action '{}' (pass, drop or alert)", a));
  }
  if (tok.size() != 7) {
    error(tok.size() > 7 ? tok[7] : header, "",
          "expected 'ACTION PROTO SRC SPORT -> DST DPORT (OPTIONS)': the header has " +
              std::to_string(tok.size()) + " fields, not 7");
    return false;
  }
  r.proto = std::string(tok[1]);
  if (r.proto == "ip") r.proto_mask = classify::kProtoAnyIp;
  else if (r.proto == "tcp") r.proto_mask = classify::kProtoTcp;
  else if (r.proto == "udp") r.proto_mask = classify::kProtoUdp;
  else if (r.proto == "icmp") r.proto_mask = classify::kProtoIcmp4 | classify::kProtoIcmp6;
  else if (r.proto == "icmpv4") r.proto_mask = classify::kProtoIcmp4;
  else if (r.proto == "icmpv6") r.proto_mask = classify::kProtoIcmp6;
  else
    error(tok[1], r.proto,
          fmt::format("unsupported protocol '{}' (ip, tcp, udp, icmp, icmpv4, icmpv6)", r.proto));
  parse_addr(tok[2], tok[2], r.src, 0);
  parse_ports(tok[3], tok[3], r.sport, 0);
  if (tok[4] == "->") r.bidirectional = false;
  else if (tok[4] == "<>") r.bidirectional = true;
  else error(tok[4], std::string(tok[4]), fmt::format("invalid direction '{}' (-> or <>)", tok[4]));
  parse_addr(tok[5], tok[5], r.dst, 0);
  parse_ports(tok[6], tok[6], r.dport, 0);
  bool portless = r.proto_mask & ~(classify::kProtoTcp | classify::kProtoUdp);
  if (r.proto_mask && portless) {
    if (!r.sport.is_any()) error(tok[3], std::string(tok[3]), fmt::format("ports need protocol tcp or udp, not '{}'", r.proto));
    if (!r.dport.is_any()) error(tok[6], std::string(tok[6]), fmt::format("ports need protocol tcp or udp, not '{}'", r.proto));
  }
  std::string_view rest = trim(text_.substr(header.size()));
  if (rest.empty()) {
    error(text_.substr(text_.size()), "", "missing rule options: end the rule with (msg:\"...\"; sid:N;)");
    return false;
  }
  if (rest.back() != ')') {
    error(rest.substr(rest.size() - 1), "", "rule options must end with ')'");
    return false;
  }
  parse_options(rest.substr(1, rest.size() - 2), r);
  return !failed_;
}

struct LogicalLine {
  std::string text;
  uint32_t line;
};

std::vector<LogicalLine> logical_lines(std::string_view text, uint32_t& comment_lines) {
  std::vector<LogicalLine> out;
  uint32_t n = 0;
  std::string pending;
  uint32_t pending_line = 0;
  size_t pos = 0;
  while (pos <= text.size()) {
    size_t nl = text.find('\n', pos);
    if (nl == std::string_view::npos) nl = text.size();
    std::string_view l = text.substr(pos, nl - pos);
    pos = nl + 1;
    ++n;
    if (!l.empty() && l.back() == '\r') l.remove_suffix(1);
    std::string_view t = trim(l);
    if (pending.empty()) {
      if (t.empty()) continue;
      if (t[0] == '#') {
        ++comment_lines;
        continue;
      }
      pending_line = n;
    }
    if (!t.empty() && t.back() == '\\') {  // continues on the next line
      pending += std::string(l.substr(0, l.find_last_of('\\')));
      pending += ' ';
      continue;
    }
    pending += std::string(l);
    out.push_back({std::move(pending), pending_line});
    pending.clear();
  }
  if (!pending.empty()) out.push_back({std::move(pending), pending_line});
  return out;
}

bool valid_var_name(std::string_view s) {
  if (s.empty() || !(std::isalpha(static_cast<unsigned char>(s[0])) || s[0] == '_')) return false;
  for (char c : s)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_')) return false;
  return true;
}

}  // namespace

const char* action_name(uint8_t action) {
  switch (action) {
    case GPO_ACT_PASS: return "pass";
    case GPO_ACT_DROP: return "drop";
    case GPO_ACT_ALERT: return "alert";
  }
  return "?";
}

ParseResult parse_rules(std::string_view text) {
  ParseResult res;
  auto lines = logical_lines(text, res.set.comment_lines);
  auto first_word = [](std::string_view t) {
    t = trim(t);
    return t.substr(0, std::min(t.size(), t.find_first_of(" \t")));
  };

  // Pass 1: variables, so a rule may use one defined further down.
  std::map<std::string, Var> vars;
  for (auto& l : lines) {
    std::string_view t = trim(l.text);
    std::string_view w = first_word(t);
    if (w != "var" && w != "ipvar" && w != "portvar") continue;
    ++res.set.variables;
    std::string_view rest = trim(t.substr(w.size()));
    std::string_view name = rest.substr(0, std::min(rest.size(), rest.find_first_of(" \t")));
    std::string_view value = trim(rest.substr(name.size()));
    if (value.size() >= 2 && value.front() == '"' && value.back() == '"') value = value.substr(1, value.size() - 2);
    uint32_t col = offset_in(l.text, name) + 1;
    if (!valid_var_name(name) || value.empty()) {
      res.problems.push_back({l.line, col, std::string(w),
                              fmt::format("expected '{} NAME VALUE' (NAME: letters, digits, _)", w)});
    } else if (auto it = vars.find(std::string(name)); it != vars.end()) {
      res.problems.push_back({l.line, col, std::string(name),
                              fmt::format("variable '{}' defined twice (first on line {})", name, it->second.line)});
    } else {
      vars.emplace(std::string(name), Var{std::string(value), l.line});
    }
  }

  // Pass 2: rules and the default policy.
  std::map<uint32_t, uint32_t> sid_line;
  for (auto& l : lines) {
    std::string_view t = l.text;
    std::string_view w = first_word(t);
    uint32_t wcol = offset_in(t, trim(t)) + 1;
    if (w == "var" || w == "ipvar" || w == "portvar") continue;
    if (w == "default") {
      std::string_view a = trim(trim(t).substr(w.size()));
      if (res.set.default_explicit) {
        res.problems.push_back({l.line, wcol, "default",
                                fmt::format("second default policy (first on line {})", res.set.default_line)});
      } else if (a != "pass" && a != "drop" && a != "alert") {
        res.problems.push_back({l.line, wcol, "default",
                                fmt::format("default policy must be 'default pass', 'default drop' or 'default alert', not '{}'", a)});
      } else {
        res.set.default_explicit = true;
        res.set.default_line = l.line;
        res.set.default_action = a == "pass" ? GPO_ACT_PASS : a == "drop" ? GPO_ACT_DROP : GPO_ACT_ALERT;
      }
      continue;
    }
    LineParser p(l.text, l.line, vars, res.problems);
    Rule r;
    bool ok = p.parse_rule(r);
    if (ok && res.set.default_explicit) {
      p.error(trim(l.text), "default",
              fmt::format("rule after the default policy (line {}): the default line must end the file",
                          res.set.default_line));
      ok = false;
    }
    if (ok) {
      auto [it, fresh] = sid_line.emplace(r.sid, l.line);
      if (!fresh) {
        p.error(trim(l.text), "sid", fmt::format("duplicate sid {} (first on line {})", r.sid, it->second));
        ok = false;
      }
    }
    if (ok) res.set.rules.push_back(std::move(r));
  }
  return res;
}

ParseResult parse_rules_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error(fmt::format("cannot open rule file '{}'", path));
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) throw std::runtime_error(fmt::format("cannot read rule file '{}'", path));
  return parse_rules(ss.str());
}

std::string format_diagnostic(const std::string& file, const Diagnostic& d) {
  return fmt::format("{}:{}:{}: {}", file, d.line, d.col, d.message);
}

}  // namespace gpo::rules
