#include "rules/parser.h"

#include <arpa/inet.h>

#include <fmt/format.h>

#include <cctype>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <stdexcept>

#include "kernels/classify/classify.h"
#include "kernels/classify/tables.h"
#include "rules/vars.h"

namespace gpo::rules {
namespace {

using classify::ProtoBits;

using D = Diagnostic;

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

// Optional '-' then digits, within [lo, hi].
bool parse_int(std::string_view s, int64_t lo, int64_t hi, int64_t& out) {
  bool neg = !s.empty() && s[0] == '-';
  if (neg) s.remove_prefix(1);
  uint64_t v;
  if (!parse_uint(s, uint64_t(std::max(-lo, hi)), v)) return false;
  const int64_t x = neg ? -int64_t(v) : int64_t(v);
  if (x < lo || x > hi) return false;
  out = x;
  return true;
}

// Suricata's integer syntax for packet fields: N, =N, !N, <N, <=N, >N, >=N,
// N-M and N<>M (exclusive), !N-M.
bool parse_uint_test(std::string_view v, uint32_t max, classify::UintTest& t) {
  using namespace classify;
  v = trim(v);
  t = UintTest{};
  uint64_t a, b;
  auto num = [&](std::string_view s, uint64_t& out) { return parse_uint(trim(s), max, out); };
  bool neg = !v.empty() && v[0] == '!';
  std::string_view body = neg ? trim(v.substr(1)) : v;
  size_t sep = body.find("<>");
  size_t seplen = 2;
  if (sep == std::string_view::npos && !body.empty() && body[0] != '<' && body[0] != '>') {
    sep = body.find('-');
    seplen = 1;
  }
  if (sep != std::string_view::npos && sep > 0) {
    if (!num(body.substr(0, sep), a) || !num(body.substr(sep + seplen), b) || b <= a + 1) return false;
    t.op = neg ? kUintNotRange : kUintRange;
    t.a = uint32_t(a);
    t.b = uint32_t(b);
    return true;
  }
  if (neg) {
    if (!num(body, a)) return false;
    t.op = kUintNe;
  } else if (v.substr(0, 2) == "<=" || v.substr(0, 2) == ">=") {
    if (!num(v.substr(2), a)) return false;
    t.op = v[0] == '<' ? kUintLe : kUintGe;
    if ((t.op == kUintLe && a == max) || (t.op == kUintGe && a == 0)) return false;
  } else if (!v.empty() && (v[0] == '<' || v[0] == '>')) {
    if (!num(v.substr(1), a)) return false;
    t.op = v[0] == '<' ? kUintLt : kUintGt;
    if ((t.op == kUintLt && a == 0) || (t.op == kUintGt && a == max)) return false;
  } else {
    if (!num(!v.empty() && v[0] == '=' ? v.substr(1) : v, a)) return false;
    t.op = kUintEq;
  }
  t.a = uint32_t(a);
  return true;
}

// TCP flags: [modifier]LETTERS[,IGNORED] with F S R P A U C E (1 and 2: C and
// E), modifiers + (at least these) * (any of these) ! (not all of these), or
// Suricata's integer syntax on the flags byte (flags:0 = no flag set).
bool parse_tcp_flags(std::string_view v, classify::UintTest& t, std::string& why) {
  using namespace classify;
  v = trim(v);
  if (parse_uint_test(v, 255, t)) return true;
  auto bit = [](char c) -> int {
    switch (c) {
      case 'F': return 0x01;
      case 'S': return 0x02;
      case 'R': return 0x04;
      case 'P': return 0x08;
      case 'A': return 0x10;
      case 'U': return 0x20;
      case 'E': case '2': return 0x40;
      case 'C': case '1': return 0x80;
    }
    return -1;
  };
  char mod = 0;
  bool ignoring = false;
  uint32_t listed = 0, keep = 0xff;
  for (char c : v) {
    if (c == ' ') continue;
    if (c == ',') {
      if (ignoring) return why = "more than one ','", false;
      if (mod) return why = "ignored flags (after ',') need the plain form, without + * !", false;
      ignoring = true;
    } else if (c == '+' || c == '*' || c == '!') {
      if (mod || ignoring) return why = "more than one modifier", false;
      mod = c;
    } else if (int b = bit(c); b >= 0) {
      if (ignoring) keep &= ~uint32_t(b);
      else if (listed & uint32_t(b)) return why = fmt::format("flag '{}' given twice", c), false;
      else listed |= uint32_t(b);
    } else {
      return why = fmt::format("'{}' is not a TCP flag (F S R P A U C E, modifiers + * !)", c), false;
    }
  }
  if (listed == 0) return why = "no flag given", false;
  t = UintTest{};
  switch (mod) {
    case '+': t = {kUintMaskEq, {}, listed, listed}; break;
    case '*': t = {kUintMaskNe, {}, listed, 0}; break;
    case '!': t = {kUintMaskNe, {}, listed, listed}; break;
    default: t = {kUintMaskEq, {}, keep, listed};
  }
  return true;
}

bool ip_proto_number(std::string_view name, uint64_t& out) {
  static const std::pair<const char*, uint8_t> kNames[] = {
      {"icmp", 1}, {"igmp", 2}, {"ipip", 4}, {"tcp", 6}, {"udp", 17}, {"ipv6", 41}, {"gre", 47}, {"esp", 50},
      {"ah", 51}, {"ipv6-icmp", 58}, {"icmpv6", 58}, {"ospf", 89}, {"pim", 103}, {"vrrp", 112}, {"l2tp", 115},
      {"sctp", 132}};
  for (auto& [n, v] : kNames)
    if (name == n) return out = v, true;
  return parse_uint(name, 255, out);
}

struct Var {
  std::string value;
  uint32_t line;       // 0 when defined outside the file
  std::string origin;  // "" = the file
};

// Variable expansion state shared by every rule of one file: each variable is
// parsed once per kind (address or port) and reused, and every entry produced
// counts against kMaxExpandedEntries.
struct Expansion {
  const std::map<std::string, Var>& vars;
  struct Cached {
    int state = 0;  // 0: being expanded (a loop when met again), 1: ok, 2: failed
    AddrSpec addr;
    PortSpec port;
    std::vector<Diagnostic> errors;  // of a failed expansion, re-reported at every use
  };
  std::map<std::pair<std::string, bool>, Cached> cache;  // (name, is_port)
  size_t entries = 0;
  std::set<std::string> used;
};

template <typename Spec>
constexpr bool kIsPort = std::is_same_v<Spec, PortSpec>;
template <typename Spec>
Spec& cached_spec(Expansion::Cached& c) {
  if constexpr (kIsPort<Spec>) return c.port;
  else return c.addr;
}

// Parsing state for one logical line (a rule, possibly joined from several).
class LineParser {
 public:
  LineParser(std::string_view text, uint32_t line, Expansion& ex, std::vector<Diagnostic>& problems)
      : text_(text), line_(line), ex_(ex), problems_(problems) {}

  bool failed() const { return failed_; }

  void error(std::string_view at, std::string keyword, std::string message, D::Kind kind = D::kInvalid,
             std::string reason = "") {
    uint32_t col = (at.data() >= text_.data() && at.data() <= text_.data() + text_.size()) ? offset_in(text_, at) + 1 : 1;
    if (reason.empty()) reason = kind == D::kUnsupported ? keyword : "invalid " + (keyword.empty() ? "syntax" : keyword);
    // Bounded: a diagnostic never copies a long token whole (it may be re-reported at every use of a variable).
    auto cap = [](std::string& x, size_t n) {
      if (x.size() > n) x = x.substr(0, n) + "...";
    };
    cap(keyword, 80);
    cap(message, 300);
    cap(reason, 80);
    problems_.push_back({line_, col, std::move(keyword), std::move(message), kind, std::move(reason)});
    failed_ = true;
  }
  void unsupported(std::string_view at, const std::string& keyword, std::string message, std::string reason = "") {
    error(at, keyword, std::move(message), D::kUnsupported, reason.empty() ? keyword : std::move(reason));
  }

  bool parse_rule(Rule& r);

 private:
  template <typename Spec, typename Leaf>
  bool parse_spec(std::string_view s, std::string_view at, Spec& out, int depth, std::string_view what,
                  bool (LineParser::*parse_leaf)(std::string_view, std::string_view, Leaf&));
  template <typename Spec, typename Leaf>
  bool expand_var(std::string_view ref, std::string_view at, Spec& out, int depth, std::string_view what,
                  bool (LineParser::*parse_leaf)(std::string_view, std::string_view, Leaf&));
  bool charge(std::string_view at, size_t entries, size_t list_size, std::string_view what);
  bool parse_addr(std::string_view s, AddrSpec& out) { return parse_spec(s, s, out, 0, "address", &LineParser::parse_cidr); }
  bool parse_ports(std::string_view s, PortSpec& out) { return parse_spec(s, s, out, 0, "port", &LineParser::parse_port_range); }
  bool parse_cidr(std::string_view s, std::string_view at, Cidr& out);
  bool parse_port_range(std::string_view s, std::string_view at, PortRange& out);
  void parse_options(std::string_view body, Rule& r);
  bool option(std::string_view opt, const std::string& k, std::string_view value, bool has_value, Rule& r);
  // One option as written: its text (where diagnostics point), keyword and value.
  struct Option {
    std::string_view text;
    const std::string& k;
    std::string_view value;
    bool has_value;
  };
  bool need_content(const Option& o, const Content* lc);
  bool need_value(const Option& o);
  bool uint_field(const Option& o, classify::UintTest& t, uint32_t max, const char* what);
  bool content_position(const Option& o, Content& c);
  bool isdataat(const Option& o, Content* lc, Rule& r);
  bool flow(const Option& o, Rule& r);
  bool ip_proto(const Option& o, Rule& r);
  bool rule_info(const Option& o, Rule& r);
  void check_contents(std::string_view at, Rule& r);
  bool decode_content(std::string_view quoted, std::string_view at, std::string& out);
  bool unquote(std::string_view v, std::string_view at, std::string_view keyword, std::string& out);

  std::string_view text_;
  uint32_t line_;
  Expansion& ex_;
  std::vector<Diagnostic>& problems_;
  bool failed_ = false;
  bool have_sid_ = false;
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

bool LineParser::parse_cidr(std::string_view s, std::string_view at, Cidr& out) {
  std::string_view addr = s, len;
  if (auto slash = s.find('/'); slash != std::string_view::npos) {
    addr = s.substr(0, slash);
    len = s.substr(slash + 1);
  }
  bool v6 = addr.find(':') != std::string_view::npos;
  out = Cidr{};
  out.family = v6 ? 6 : 4;
  if (addr.size() > 64) {  // longer than any address: do not copy it
    error(at, std::string(s.substr(0, 64)), fmt::format("invalid address '{}...'", s.substr(0, 64)));
    return false;
  }
  std::string a(addr);
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

bool LineParser::charge(std::string_view at, size_t entries, size_t list_size, std::string_view what) {
  ex_.entries += entries;
  if (list_size > kMaxListEntries) {
    error(at, "", fmt::format("{} list has more than {} entries", what, kMaxListEntries), D::kInvalid,
          "list too long");
    return false;
  }
  if (ex_.entries > kMaxExpandedEntries) {
    error(at, "", fmt::format("variables and lists expand to more than {} entries in this file", kMaxExpandedEntries),
          D::kInvalid, "expansion limit");
    return false;
  }
  return true;
}

template <typename Spec, typename Leaf>
bool LineParser::expand_var(std::string_view ref, std::string_view at, Spec& out, int depth, std::string_view what,
                            bool (LineParser::*parse_leaf)(std::string_view, std::string_view, Leaf&)) {
  std::string name(ref.substr(1));
  auto it = ex_.vars.find(name);
  if (it == ex_.vars.end()) {
    error(at, std::string(ref),
          fmt::format("undefined variable '{}' (define it: --var {}=VALUE, [vars] in the config, --suricata-yaml, "
                      "or in the file: var {} VALUE)",
                      ref, name, name),
          D::kInvalid, fmt::format("undefined variable {}", ref.substr(0, 40)));
    return false;
  }
  ex_.used.insert(name);
  auto [c, fresh] = ex_.cache.try_emplace({name, kIsPort<Spec>});
  Expansion::Cached& cached = c->second;
  if (fresh) {
    const size_t before = problems_.size();
    Spec tmp;
    bool ok = parse_spec(it->second.value, at, tmp, depth + 1, what, parse_leaf);
    Expansion::Cached& again = ex_.cache[{name, kIsPort<Spec>}];  // parse_spec may have grown the map
    again.state = ok ? 1 : 2;
    if (ok) cached_spec<Spec>(again) = std::move(tmp);
    else again.errors.assign(problems_.begin() + long(before), problems_.end());
    if (!ok) return false;
    out = cached_spec<Spec>(again);
    return true;
  }
  if (cached.state == 0) {
    error(at, std::string(ref), fmt::format("variable '{}' refers to itself", ref), D::kInvalid, "variable loop");
    return false;
  }
  if (cached.state == 2) {
    for (const Diagnostic& d : std::vector<Diagnostic>(cached.errors)) error(at, d.keyword, d.message, d.kind, d.reason);
    return false;
  }
  out = cached_spec<Spec>(cached);
  return charge(at, out.entries.size(), out.entries.size(), what);
}

// Addresses and ports share one grammar: [!]any | [!]$VAR | [!][a, b, ...] | [!]leaf,
// where list elements may be any of these again (one level of negation inside).
template <typename Spec, typename Leaf>
bool LineParser::parse_spec(std::string_view s, std::string_view at, Spec& out, int depth, std::string_view what,
                            bool (LineParser::*parse_leaf)(std::string_view, std::string_view, Leaf&)) {
  out = Spec{};
  if (depth > kMaxNesting) {
    error(at, "", fmt::format("{} lists and variables nest more than {} levels deep", what, kMaxNesting),
          D::kInvalid, "nesting too deep");
    return false;
  }
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
    if (!expand_var(s, at, out, depth, what, parse_leaf)) return false;
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
      error(at, std::string(s.substr(0, 64)), fmt::format("unterminated {} list '{}'", what, s.substr(0, 64)));
      return false;
    }
    auto parts = split_list(s.substr(1, s.size() - 2));
    for (auto part : parts) {
      Spec e;
      if (!parse_spec(part, at, e, depth + 1, what, parse_leaf)) return false;
      if (e.is_any()) {
        out.entries.push_back(Leaf{});  // a default leaf matches everything
        if (!charge(at, 1, out.entries.size(), what)) return false;
        continue;
      }
      bool has_neg = false;
      for (auto& c : e.entries) has_neg |= c.negated;
      if (has_neg && (e.negated || parts.size() > 1)) {
        error(at, std::string(part.substr(0, 64)),
              fmt::format("unsupported nesting of negations in '{}': flatten the list", part.substr(0, 64)));
        return false;
      }
      for (auto c : e.entries) {
        c.negated = c.negated != e.negated;
        out.entries.push_back(c);
      }
      if (!charge(at, e.entries.size(), out.entries.size(), what)) return false;
    }
    out.negated = neg;
    return true;
  }
  Leaf c;
  if (!(this->*parse_leaf)(s, at, c)) return false;
  out.entries.push_back(c);
  out.negated = neg;
  return charge(at, 1, 1, what);
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
    error(at, std::string(s.substr(0, 64)), fmt::format("invalid port '{}' (N, N:M, N:, :M with 0..65535)", s.substr(0, 64)));
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
  if (out.size() > 65535) {
    error(at, "content", "content: longer than 65535 bytes");
    return false;
  }
  return true;
}

// Keywords a filter of packets cannot enforce, with the reason shown.
std::string_view why_unsupported(std::string_view k) {
  if (k.find('.') != std::string_view::npos || k.rfind("http_", 0) == 0 || k == "uricontent" || k == "file_data" ||
      k == "pkt_data" || k == "dce_stub_data" || k == "base64_data")
    return "an app-layer buffer (the filter inspects packet payloads only)";
  if (k == "flowbits" || k == "flowint" || k == "xbits" || k == "hostbits") return "state across packets or flows";
  if (k == "pcre" || k == "byte_test" || k == "byte_jump" || k == "byte_extract" || k == "byte_math" || k == "lua" ||
      k == "luajit" || k == "bsize" || k == "endswith")
    return "not implemented by the filter";
  if (k == "threshold" || k == "detection_filter" || k == "tag") return "alert rate or logging control";
  return "";
}

bool uint_given(const classify::UintTest& t) { return t.op != classify::kUintAny; }

// One option of a rule; false when it was refused (the caller keeps going to
// report every problem of the rule).
bool LineParser::option(std::string_view opt, const std::string& k, std::string_view value, bool has_value, Rule& r) {
  const Option o{opt, k, value, has_value};
  Content* lc = r.contents.empty() ? nullptr : &r.contents.back();
  if (k == "msg") return unquote(value, opt, "msg", r.msg);
  if (k == "content") {
    Content c;
    std::string_view v = value;
    if (!v.empty() && v[0] == '!') {
      c.negated = true;
      v = trim(v.substr(1));
    }
    if (!decode_content(v, opt, c.bytes)) return false;
    r.contents.push_back(std::move(c));
    return true;
  }
  if (k == "nocase" || k == "rawbytes") {
    if (has_value) return error(opt, k, fmt::format("{} takes no value", k)), false;
    if (!need_content(o, lc)) return false;
    if (k == "nocase") lc->nocase = true;  // rawbytes: Suricata inspects raw bytes anyway
    return true;
  }
  if (k == "fast_pattern") return need_content(o, lc);  // a prefilter hint: every pattern goes through the matcher
  if (k == "offset" || k == "depth" || k == "distance" || k == "within" || k == "startswith")
    return need_content(o, lc) && content_position(o, *lc);
  if (k == "isdataat") return isdataat(o, lc, r);
  if (k == "flow") return flow(o, r);
  if (k == "dsize") return uint_field(o, r.dsize, 65535, "payload size");
  if (k == "ttl") return uint_field(o, r.ttl, 255, "TTL");
  if (k == "itype" || k == "icode") {
    if (!(r.proto_mask & (classify::kProtoIcmp4 | classify::kProtoIcmp6)))
      return error(opt, k, fmt::format("{} needs protocol icmp, icmpv4, icmpv6 or ip, not '{}'", k, r.proto)), false;
    r.icmp_only = true;
    return uint_field(o, k == "itype" ? r.itype : r.icode, 255, k == "itype" ? "ICMP type" : "ICMP code");
  }
  if (k == "flags" || k == "tcp.flags") {
    if (!need_value(o)) return false;
    if (!(r.proto_mask & classify::kProtoTcp))
      return error(opt, k, fmt::format("{} needs protocol tcp or ip, not '{}'", k, r.proto)), false;
    if (uint_given(r.tcp_flags)) return unsupported(opt, k, "flags given twice", "flags twice"), false;
    std::string why;
    if (!parse_tcp_flags(value, r.tcp_flags, why)) return error(opt, k, fmt::format("flags: '{}': {}", value, why)), false;
    return true;
  }
  if (k == "ip_proto") return ip_proto(o, r);
  if (k == "sid" || k == "rev" || k == "gid" || k == "priority" || k == "classtype" || k == "reference" ||
      k == "metadata")
    return rule_info(o, r);
  std::string_view why = why_unsupported(k);
  std::string shown = k.size() > 64 ? k.substr(0, 64) + "..." : k;
  unsupported(opt, shown,
              why.empty() ? fmt::format("unsupported keyword '{}'", shown)
                          : fmt::format("unsupported keyword '{}': {}", shown, why));
  return false;
}

bool LineParser::need_content(const Option& o, const Content* lc) {
  if (lc) return true;
  error(o.text, o.k, fmt::format("{} needs a preceding content option", o.k));
  return false;
}

bool LineParser::need_value(const Option& o) {
  if (o.has_value && !o.value.empty()) return true;
  error(o.text, o.k, fmt::format("{} needs a value", o.k));
  return false;
}

bool LineParser::uint_field(const Option& o, classify::UintTest& t, uint32_t max, const char* what) {
  if (!need_value(o)) return false;
  if (uint_given(t)) {
    unsupported(o.text, o.k, fmt::format("{} given twice", o.k), o.k + " twice");
    return false;
  }
  if (!parse_uint_test(o.value, max, t)) {
    error(o.text, o.k, fmt::format("{}: '{}' is not a {} test (N, !N, <N, <=N, >N, >=N, N<>M, N-M; 0..{})", o.k,
                                   o.value, what, max));
    return false;
  }
  return true;
}

// offset, depth, distance, within, startswith: where the content before them may match.
bool LineParser::content_position(const Option& o, Content& c) {
  const std::string& k = o.k;
  const std::string_view opt = o.text, value = o.value;
  const bool rel = k == "distance" || k == "within";
  if (k != "startswith" && !need_value(o)) return false;
  if (c.negated && rel) {
    unsupported(opt, k, fmt::format("{} on a negated content", k), "relative negated content");
    return false;
  }
  if (rel ? (c.has_offset || c.has_depth) : c.relative()) {
    error(opt, k, fmt::format("{}: a content takes offset/depth or distance/within, not both", k));
    return false;
  }
  if (k == "startswith") {
    if (o.has_value) return error(opt, k, "startswith takes no value"), false;
    if (c.has_offset || c.has_depth) return error(opt, k, "startswith with offset or depth"), false;
    c.has_offset = c.has_depth = true;
    c.offset = 0;
    c.depth = uint32_t(c.bytes.size());
    return true;
  }
  bool& has = k == "offset" ? c.has_offset : k == "depth" ? c.has_depth : k == "distance" ? c.has_distance : c.has_within;
  if (has) return error(opt, k, fmt::format("{} given twice for one content", k)), false;
  int64_t x;
  if (std::isalpha(static_cast<unsigned char>(value[0])))
    return unsupported(opt, k, fmt::format("{}:{} (a byte_extract variable)", k, value.substr(0, 40)),
                       "byte_extract variable"),
           false;
  if (!rel) {
    if (!parse_int(value, 0, 65535, x))
      return error(opt, k, fmt::format("{}: '{}' is not a number in 0..65535", k, value)), false;
  } else if (!parse_int(value, -(1 << 20), 1 << 20, x)) {
    return error(opt, k, fmt::format("{}: '{}' is not a number in -1048576..1048576", k, value)), false;
  }
  if ((k == "depth" || k == "within") && x < int64_t(c.bytes.size()))
    return error(opt, k, fmt::format("{}:{} is shorter than the content ({} bytes): it never matches", k, x,
                                     c.bytes.size())),
           false;
  has = true;
  if (k == "offset") c.offset = uint32_t(x);
  else if (k == "depth") c.depth = uint32_t(x);
  else if (k == "distance") c.distance = int32_t(x);
  else c.within = int32_t(x);
  return true;
}

// isdataat:[!]N[,relative][,rawbytes]; relative to lc, the content before it.
bool LineParser::isdataat(const Option& o, Content* lc, Rule& r) {
  const std::string& k = o.k;
  const std::string_view opt = o.text;
  if (!need_value(o)) return false;
  std::string_view v = o.value;
  const bool neg = v[0] == '!';
  if (neg) v = trim(v.substr(1));
  bool relative = false;
  auto comma = v.find(',');
  std::string_view num = trim(v.substr(0, comma));
  for (size_t at = comma; at != std::string_view::npos;) {
    size_t next = v.find(',', at + 1);
    std::string_view tok = trim(v.substr(at + 1, next == std::string_view::npos ? std::string_view::npos : next - at - 1));
    if (tok == "relative") relative = true;
    else if (tok != "rawbytes") return error(opt, k, fmt::format("isdataat: unknown option '{}'", tok)), false;
    at = next;
  }
  uint64_t n;
  if (!parse_uint(num, 65535, n)) return error(opt, k, fmt::format("isdataat: '{}' is not a number in 0..65535", num)), false;
  if (relative) {
    if (neg) return unsupported(opt, k, "isdataat:!N,relative (a negated relative isdataat)", "negated relative isdataat"), false;
    if (!lc) return unsupported(opt, k, "isdataat relative without a preceding content", "relative isdataat without content"), false;
    if (lc->negated) return unsupported(opt, k, "isdataat relative to a negated content", "relative negated content"), false;
    if (lc->isdataat_rel >= 0) return unsupported(opt, k, "two relative isdataat after one content", "isdataat twice"), false;
    lc->isdataat_rel = int32_t(n);
    return true;
  }
  if (uint_given(r.isdataat)) return unsupported(opt, k, "two absolute isdataat", "isdataat twice"), false;
  // Data at offset N exists when the payload is longer than N.
  r.isdataat = {uint8_t(neg ? classify::kUintLe : classify::kUintGt), {}, uint32_t(n), 0};
  return true;
}

bool LineParser::flow(const Option& o, Rule& r) {
  const std::string& k = o.k;
  const std::string_view opt = o.text;
  if (!need_value(o)) return false;
  if (r.flow_set || r.flow_clear) return unsupported(opt, k, "flow given twice", "flow twice"), false;
  std::set<std::string_view> seen;
  bool ok = true;
  for (auto part : split_list(o.value)) {
    if (!seen.insert(part).second) {
      error(opt, k, fmt::format("flow: '{}' given twice", part));
      ok = false;
    } else if (part == "established") r.flow_set |= classify::kFlowEstablished;
    else if (part == "not_established") r.flow_clear |= classify::kFlowEstablished;
    else if (part == "to_server" || part == "from_client") r.flow_set |= classify::kFlowToServer;
    else if (part == "to_client" || part == "from_server") r.flow_set |= classify::kFlowToClient;
    else if (part == "stateless") {
    } else if (part == "only_stream" || part == "no_stream" || part == "only_frag" || part == "no_frag") {
      unsupported(opt, k, fmt::format("flow:{} (stream reassembly and fragments are not inspected)", part),
                  fmt::format("flow:{}", part));
      ok = false;
    } else {
      error(opt, k, fmt::format("flow: unknown option '{}' (established, not_established, to_server, to_client, "
                                "from_server, from_client, stateless)",
                                part.substr(0, 40)));
      ok = false;
    }
  }
  if ((r.flow_set & classify::kFlowToServer) && (r.flow_set & classify::kFlowToClient))
    return error(opt, k, "flow: both directions given"), false;
  if ((r.flow_set & r.flow_clear) != 0) return error(opt, k, "flow: established and not_established"), false;
  if (seen.count("stateless") && (r.flow_set & classify::kFlowEstablished || r.flow_clear))
    return error(opt, k, "flow: stateless with a connection state"), false;
  return ok;
}

bool LineParser::ip_proto(const Option& o, Rule& r) {
  const std::string& k = o.k;
  const std::string_view opt = o.text;
  if (!need_value(o)) return false;
  if (uint_given(r.ip_proto)) return unsupported(opt, k, "ip_proto given twice", "ip_proto twice"), false;
  std::string_view v = o.value;
  uint8_t op = classify::kUintEq;
  if (v[0] == '!' || v[0] == '<' || v[0] == '>') {
    op = v[0] == '!' ? classify::kUintNe : v[0] == '<' ? classify::kUintLt : classify::kUintGt;
    v = trim(v.substr(1));
  }
  uint64_t n;
  if (!ip_proto_number(v, n))
    return error(opt, k, fmt::format("ip_proto: '{}' is not a protocol number or name (tcp, udp, gre, ...)", v)), false;
  r.ip_proto = {op, {}, uint32_t(n), 0};
  return true;
}

// sid, rev, gid, priority, classtype, reference, metadata: what names and
// documents the rule.
bool LineParser::rule_info(const Option& o, Rule& r) {
  const std::string& k = o.k;
  const std::string_view opt = o.text, value = o.value;
  if (k == "sid") {
    uint64_t sid;
    if (!parse_uint(value, UINT32_MAX, sid) || sid == 0)
      return error(opt, k, fmt::format("sid: '{}' is not a number in 1..4294967295 (0 is the default policy)", value)), false;
    if (have_sid_) return error(opt, k, "sid given twice"), false;
    r.sid = uint32_t(sid);
    have_sid_ = true;
    return true;
  }
  if (k == "rev" || k == "gid") {
    uint64_t n;
    if (!parse_uint(value, UINT32_MAX, n)) return error(opt, k, fmt::format("{}: '{}' is not a number", k, value)), false;
    (k == "rev" ? r.rev : r.gid) = uint32_t(n);
    return true;
  }
  if (k == "priority") {
    uint64_t n;
    if (!parse_uint(value, 255, n) || n == 0) return error(opt, k, fmt::format("priority: '{}' is not in 1..255", value)), false;
    r.priority = uint8_t(n);
    return true;
  }
  if (k == "classtype") {
    if (!need_value(o)) return false;
    r.classtype = std::string(value.substr(0, 256));
    return true;
  }
  if (k == "reference") {
    if (!need_value(o)) return false;
    r.references.emplace_back(value.substr(0, 1024));
    return true;
  }
  // metadata
  if (!r.metadata.empty()) r.metadata += ", ";
  r.metadata += std::string(value.substr(0, 4096));
  return true;
}

// body: the text between '(' and the final ')'.
void LineParser::parse_options(std::string_view body, Rule& r) {
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
    option(opt, std::string(key.substr(0, 256)), value, has_value, r);
  }
  check_contents(text_, r);
  if (!have_sid_ && !failed_) error(text_, "sid", "rule has no sid (add sid:N; with a unique N > 0)");
}

// What only the whole content list shows.
void LineParser::check_contents(std::string_view at, Rule& r) {
  for (size_t i = 1; i < r.contents.size(); ++i)
    if (r.contents[i].relative() && r.contents[i - 1].negated) {
      unsupported(at, "distance", "a content relative to a negated content", "relative negated content");
      return;
    }
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
    else if (a == "reject" || a == "rejectsrc" || a == "rejectdst" || a == "rejectboth" || a == "sdrop" ||
             a == "config" || a == "log" || a == "activate" || a == "dynamic")
      unsupported(a, std::string(a), fmt::format("unsupported action '{}' (pass, drop or alert)", a),
                  fmt::format("action {}", a));
    else
      error(a, std::string(a.substr(0, 64)), fmt::format("unknown action '{}' (pass, drop or alert)", a.substr(0, 64)));
  }
  if (tok.size() != 7) {
    error(tok.size() > 7 ? tok[7] : header, "",
          "expected 'ACTION PROTO SRC SPORT -> DST DPORT (OPTIONS)': the header has " +
              std::to_string(tok.size()) + " fields, not 7");
    return false;
  }
  r.proto = std::string(tok[1].substr(0, 64));
  if (r.proto == "ip") r.proto_mask = classify::kProtoAnyIp;
  else if (r.proto == "tcp") r.proto_mask = classify::kProtoTcp;
  else if (r.proto == "udp") r.proto_mask = classify::kProtoUdp;
  else if (r.proto == "icmp") r.proto_mask = classify::kProtoIcmp4 | classify::kProtoIcmp6;
  else if (r.proto == "icmpv4") r.proto_mask = classify::kProtoIcmp4;
  else if (r.proto == "icmpv6") r.proto_mask = classify::kProtoIcmp6;
  else
    unsupported(tok[1], r.proto,
                fmt::format("unsupported protocol '{}' (ip, tcp, udp, icmp, icmpv4, icmpv6; app-layer protocols "
                            "are not inspected)",
                            r.proto),
                "protocol " + r.proto);
  parse_addr(tok[2], r.src);
  parse_ports(tok[3], r.sport);
  if (tok[4] == "->") r.bidirectional = false;
  else if (tok[4] == "<>") r.bidirectional = true;
  else error(tok[4], std::string(tok[4].substr(0, 64)), fmt::format("invalid direction '{}' (-> or <>)", tok[4].substr(0, 64)));
  parse_addr(tok[5], r.dst);
  parse_ports(tok[6], r.dport);
  bool portless = r.proto_mask & ~(classify::kProtoTcp | classify::kProtoUdp);
  if (r.proto_mask && portless) {
    if (!r.sport.is_any()) error(tok[3], std::string(tok[3].substr(0, 64)), fmt::format("ports need protocol tcp or udp, not '{}'", r.proto));
    if (!r.dport.is_any()) error(tok[6], std::string(tok[6].substr(0, 64)), fmt::format("ports need protocol tcp or udp, not '{}'", r.proto));
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

ParseResult parse_rules(std::string_view text, const ParseOptions& opt) {
  ParseResult res;
  auto lines = logical_lines(text, res.set.comment_lines);
  auto first_word = [](std::string_view t) {
    t = trim(t);
    return t.substr(0, std::min(t.size(), t.find_first_of(" \t")));
  };
  auto file_problem = [&](uint32_t line, uint32_t col, std::string keyword, std::string message) {
    std::string reason = "file: " + keyword;
    res.problems.push_back({line, col, std::move(keyword), std::move(message), D::kFile, std::move(reason)});
  };

  // Pass 1: variables, so a rule may use one defined further down. Outside
  // definitions (opt.vars) win over the file's; defaults fill the rest.
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
      file_problem(l.line, col, std::string(w), fmt::format("expected '{} NAME VALUE' (NAME: letters, digits, _)", w));
    } else if (auto it = vars.find(std::string(name)); it != vars.end()) {
      file_problem(l.line, col, std::string(name.substr(0, 64)),
                   fmt::format("variable '{}' defined twice (first on line {})", name.substr(0, 64), it->second.line));
    } else {
      vars.emplace(std::string(name), Var{std::string(value), l.line, ""});
    }
  }
  std::map<std::string, std::string> overridden;  // name -> origin, where the file also defines it
  std::set<std::string> external;
  for (const VarDef& d : opt.vars) {
    if (!external.insert(d.name).second) continue;  // an earlier definition has precedence
    auto it = vars.find(d.name);
    if (it != vars.end()) overridden[d.name] = fmt::format("{} (overrides line {})", d.origin, it->second.line);
    vars[d.name] = Var{d.value, 0, d.origin};
  }
  if (opt.default_vars)
    for (const VarDef& d : default_vars())
      if (!vars.count(d.name)) vars.emplace(d.name, Var{d.value, 0, d.origin});
  Expansion ex{vars, {}, 0, {}};

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
        file_problem(l.line, wcol, "default", fmt::format("second default policy (first on line {})", res.set.default_line));
      } else if (a != "pass" && a != "drop" && a != "alert") {
        file_problem(l.line, wcol, "default",
                     fmt::format("default policy must be 'default pass', 'default drop' or 'default alert', not '{}'",
                                 a.substr(0, 64)));
      } else {
        res.set.default_explicit = true;
        res.set.default_line = l.line;
        res.set.default_action = a == "pass" ? GPO_ACT_PASS : a == "drop" ? GPO_ACT_DROP : GPO_ACT_ALERT;
      }
      continue;
    }
    ++res.set.rule_lines;
    LineParser p(l.text, l.line, ex, res.problems);
    Rule r;
    bool ok = p.parse_rule(r);
    if (ok && res.set.default_explicit) {
      p.error(trim(l.text), "default",
              fmt::format("rule after the default policy (line {}): the default line must end the file",
                          res.set.default_line),
              D::kInvalid, "rule after the default line");
      ok = false;
    }
    if (ok) {
      auto [it, fresh] = sid_line.emplace(r.sid, l.line);
      if (!fresh) {
        p.error(trim(l.text), "sid", fmt::format("duplicate sid {} (first on line {})", r.sid, it->second),
                D::kInvalid, "duplicate sid");
        ok = false;
      }
    }
    if (ok) res.set.rules.push_back(std::move(r));
  }
  for (const std::string& name : ex.used) {
    const Var& v = vars.at(name);
    if (v.origin.empty()) continue;  // the file's own
    auto o = overridden.find(name);
    res.var_notes.push_back(fmt::format("${} = {} ({})", name, v.value, o != overridden.end() ? o->second : v.origin));
  }
  return res;
}

ParseResult parse_rules_file(const std::string& path, const ParseOptions& opt) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error(fmt::format("cannot open rule file '{}'", path));
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) throw std::runtime_error(fmt::format("cannot read rule file '{}'", path));
  return parse_rules(ss.str(), opt);
}

std::string format_diagnostic(const std::string& file, const Diagnostic& d) {
  return fmt::format("{}:{}:{}: {}", file, d.line, d.col, d.message);
}

Coverage coverage(const ParseResult& r) {
  Coverage c;
  c.rules = r.set.rule_lines;
  c.loaded = uint32_t(r.set.rules.size());
  // Problems come in line order; a rule's problems share its line.
  std::map<std::string, uint32_t> reasons;
  size_t i = 0;
  while (i < r.problems.size()) {
    const Diagnostic& d = r.problems[i];
    if (d.kind == D::kFile) {
      ++c.file_problems;
      ++i;
      continue;
    }
    bool invalid = false;
    std::set<std::string> mine;
    size_t j = i;
    for (; j < r.problems.size() && r.problems[j].line == d.line && r.problems[j].kind != D::kFile; ++j) {
      invalid |= r.problems[j].kind == D::kInvalid;
      mine.insert(r.problems[j].reason);
    }
    (invalid ? c.invalid : c.unsupported)++;
    for (const auto& m : mine) ++reasons[m];
    i = j;
  }
  c.reasons.assign(reasons.begin(), reasons.end());
  std::stable_sort(c.reasons.begin(), c.reasons.end(), [](auto& a, auto& b) { return a.second > b.second; });
  return c;
}

std::string coverage_line(const Coverage& c, size_t top) {
  std::string s = fmt::format("{} of {} rules loaded", c.loaded, c.rules);
  if (c.unsupported || c.invalid) s += fmt::format("; skipped {} unsupported, {} invalid", c.unsupported, c.invalid);
  if (!c.reasons.empty()) {
    s += "; top reasons:";
    for (size_t i = 0; i < c.reasons.size() && i < top; ++i)
      s += fmt::format("{} {} {}", i ? "," : "", c.reasons[i].first, c.reasons[i].second);
  }
  if (c.file_problems) s += fmt::format("; {} file problem{}", c.file_problems, c.file_problems == 1 ? "" : "s");
  return s;
}

}  // namespace gpo::rules
