// `gpuoffload-agent rules ...`: check a rule file the way the agent would load it.
#include <fmt/format.h>

#include <cstdio>
#include <stdexcept>

#include "cli/commands.h"
#include "cli/rules_options.h"
#include "rules/compiler.h"
#include "rules/default_rules.h"
#include "rules/parser.h"

namespace gpo::cli {
namespace {

struct CheckOptions {
  std::string file;
  uint32_t inspect_depth = classify::kDefaultInspectDepth;
  bool stats = false;
  std::string config_file;
  RulesOptions rules;
};

const char* kind_name(rules::Diagnostic::Kind k) {
  switch (k) {
    case rules::Diagnostic::kUnsupported: return "skipped";
    case rules::Diagnostic::kInvalid: return "error";
    default: return "warning";
  }
}

void run_check(const CheckOptions& o) {
  const rules::ParseOptions po = make_parse_options(o.rules, read_config_vars(o.config_file));
  rules::ParseResult r;
  try {
    r = rules::parse_rules_file(o.file, po);
  } catch (const std::exception& e) {
    throw CLI::RuntimeError(fmt::format("rules check: {}: check the path and permissions", e.what()), kUsage);
  }
  for (const auto& d : r.problems)
    std::printf("%s:%u:%u: %s: %s\n", o.file.c_str(), d.line, d.col, kind_name(d.kind), d.message.c_str());
  for (const auto& n : r.var_notes) std::printf("%s: variable %s\n", o.file.c_str(), n.c_str());

  const auto& set = r.set;
  unsigned by_action[3] = {0, 0, 0};
  for (const auto& rule : set.rules) by_action[rule.action < 3 ? rule.action : 0]++;
  classify::RuleTables t = rules::compile(set, {o.inspect_depth});
  const rules::Coverage cov = rules::coverage(r);
  std::printf("%s: %u of %u rules loaded (%u pass, %u drop, %u alert), %u distinct content patterns, default %s%s\n",
              o.file.c_str(), cov.loaded, cov.rules, by_action[GPO_ACT_PASS], by_action[GPO_ACT_DROP],
              by_action[GPO_ACT_ALERT], t.matcher.num_patterns(), gpo_action_name(set.default_action),
              set.default_explicit ? fmt::format(" (line {})", set.default_line).c_str()
                                   : " (no 'default' line: pass)");
  if (!r.ok()) std::printf("%s: coverage: %s\n", o.file.c_str(), rules::coverage_line(cov, 10).c_str());
  if (o.stats) {
    unsigned flow = 0, positional = 0, packet = 0;
    for (const auto& e : t.rules) {
      flow += (e.flow_set | e.flow_clear) != 0;
      positional += e.positional;
      packet += e.dsize.op || e.tcp_flags.op || e.itype.op || e.icode.op || e.ttl.op || e.ip_proto.op || e.isdataat.op;
    }
    std::printf("  variables: %u, comment lines: %u\n", set.variables, set.comment_lines);
    std::printf("  rules with flow: %u, with content windows: %u, with other packet tests: %u\n", flow, positional,
                packet);
    std::printf("  tables: %zu rule entries, %zu address entries, %zu port entries, %zu content refs\n",
                t.rules.size(), t.addrs.size(), t.ports.size(), t.contents.size());
    std::printf("  matcher: exact %u states x %u classes, nocase %u states x %u classes\n", t.matcher.exact.num_states,
                t.matcher.exact.num_classes, t.matcher.folded.num_states, t.matcher.folded.num_classes);
    std::printf("  inspection depth: %u payload bytes; compiled size: %zu bytes\n", t.inspect_depth, t.table_bytes());
  }
  // Skipped rules are expected (app-layer rules in a public set); invalid
  // ones and file problems are mistakes. --strict: any problem fails.
  const bool fail = o.rules.strict ? !r.ok() : (cov.invalid > 0 || cov.file_problems > 0);
  if (fail) {
    std::fflush(stdout);  // the problem list before the error line when both go to one terminal
    throw CLI::RuntimeError(
        o.rules.strict
            ? fmt::format("{}: {} problem{} (--strict: the file is refused)", o.file, r.problems.size(),
                          r.problems.size() == 1 ? "" : "s")
            : fmt::format("{}: {} invalid rule{}, {} file problem{}: fix them or comment them out (#)", o.file,
                          cov.invalid, cov.invalid == 1 ? "" : "s", cov.file_problems, cov.file_problems == 1 ? "" : "s"),
        kFailure);
  }
}

}  // namespace

void add_rules(CLI::App& app) {
  auto* cmd = app.add_subcommand("rules", "Check the packet filter's rule files (format: docs/rules.md)");
  cmd->require_subcommand(1);

  static CheckOptions check;
  auto* c = cmd->add_subcommand(
      "check",
      "Parse and compile a rule file the way `run` loads it; print every skipped rule and every problem as\n"
      "FILE:LINE:COL, the variables taken from outside the file, and the coverage: N of M rules loaded and\n"
      "the top reasons for the rest.\n"
      "Rules the filter cannot enforce (app-layer protocols and buffers such as http.uri, flowbits, pcre,\n"
      "byte_jump, ...) are skipped, never loaded in a weaker form. Exit 0 when every rule loads or is\n"
      "skipped as unsupported; 1 when a rule is invalid or the file has a problem (with --strict: when any\n"
      "rule does not load).\n"
      "Example rule file:\n"
      "  drop tcp $EXTERNAL_NET any -> $HOME_NET [23,2323] (msg:\"telnet\"; flow:to_server; sid:1;)\n"
      "  alert tcp $EXTERNAL_NET any -> $HOME_NET 445 (msg:\"SMB probe\"; flow:established,to_server; \\\n"
      "      content:\"|ff|SMB\"; offset:4; depth:4; sid:2;)\n"
      "  alert udp !$HOME_NET any -> $HOME_NET 1024:65535 (msg:\"marker\"; content:\"EVIL|0d 0a|\"; nocase; sid:3;)\n"
      "  default pass\n"
      "Examples:\n"
      "  gpuoffload-agent rules check emerging-all.rules --var HOME_NET=[10.0.0.0/8]\n"
      "  gpuoffload-agent rules check my.rules --suricata-yaml /etc/suricata/suricata.yaml --stats");
  c->add_option("FILE", check.file, "rule file")->required()->check(CLI::ExistingFile);
  c->add_option("--inspect-depth", check.inspect_depth, "bytes of L4 payload that content patterns are searched in")
      ->capture_default_str()
      ->check(CLI::Range(1u, 65535u));
  c->add_flag("--stats", check.stats, "also print table sizes of the compiled rules");
  c->add_option("--config", check.config_file, "Take rule variables from the [vars] table of this agent config file")
      ->check(CLI::ExistingFile);
  add_rules_options(c, check.rules);
  c->callback([] { run_check(check); });

  auto* d = cmd->add_subcommand("default",
                                "Print the built-in rule file the agent uses without --rules.\n"
                                "Example:\n"
                                "  gpuoffload-agent rules default > my.rules");
  d->callback([] { std::fwrite(rules::default_rules_text().data(), 1, rules::default_rules_text().size(), stdout); });
}

}  // namespace gpo::cli
