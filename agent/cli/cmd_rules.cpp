// `gpuoffload-agent rules ...`: check a rule file the way the agent would load it.
#include <fmt/format.h>

#include <cstdio>
#include <stdexcept>

#include "cli/commands.h"
#include "rules/compiler.h"
#include "rules/default_rules.h"
#include "rules/parser.h"

namespace gpo::cli {
namespace {

struct CheckOptions {
  std::string file;
  uint32_t inspect_depth = classify::kDefaultInspectDepth;
  bool stats = false;
};

void run_check(const CheckOptions& o) {
  rules::ParseResult r;
  try {
    r = rules::parse_rules_file(o.file);
  } catch (const std::exception& e) {
    throw CLI::RuntimeError(fmt::format("rules check: {}: check the path and permissions", e.what()), kUsage);
  }
  for (const auto& d : r.problems) std::printf("%s\n", rules::format_diagnostic(o.file, d).c_str());

  const auto& set = r.set;
  unsigned by_action[3] = {0, 0, 0};
  for (const auto& rule : set.rules) by_action[rule.action < 3 ? rule.action : 0]++;
  classify::RuleTables t = rules::compile(set, {o.inspect_depth});
  std::printf("%s: %zu rules loaded (%u pass, %u drop, %u alert), %u distinct content patterns, default %s%s\n",
              o.file.c_str(), set.rules.size(), by_action[GPO_ACT_PASS], by_action[GPO_ACT_DROP],
              by_action[GPO_ACT_ALERT], t.matcher.num_patterns(), rules::action_name(set.default_action),
              set.default_explicit ? fmt::format(" (line {})", set.default_line).c_str()
                                   : " (no 'default' line: pass)");
  if (o.stats) {
    std::printf("  variables: %u, comment lines: %u\n", set.variables, set.comment_lines);
    std::printf("  tables: %zu rule entries, %zu address entries, %zu port entries, %zu content refs\n",
                t.rules.size(), t.addrs.size(), t.ports.size(), t.contents.size());
    std::printf("  matcher: exact %u states x %u classes, nocase %u states x %u classes\n", t.matcher.exact.num_states,
                t.matcher.exact.num_classes, t.matcher.folded.num_states, t.matcher.folded.num_classes);
    std::printf("  inspection depth: %u payload bytes; compiled size: %zu bytes\n", t.inspect_depth, t.table_bytes());
  }
  if (!r.ok()) {
    std::fflush(stdout);  // the problem list before the error line when both go to one terminal
    throw CLI::RuntimeError(
        fmt::format("{}: {} problem{}: rules with problems are not loaded; fix or comment them out (#)", o.file,
                    r.problems.size(), r.problems.size() == 1 ? "" : "s"),
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
      "Parse and compile a rule file; print every problem as FILE:LINE:COL and a summary.\n"
      "Exit 0 when every rule loads, 1 when any rule has a problem (unsupported keyword, bad syntax, ...).\n"
      "Example rule file:\n"
      "  var HOME_NET [10.0.0.0/8,fd00::/8]\n"
      "  drop tcp any any -> $HOME_NET [23,2323] (msg:\"telnet\"; sid:1;)\n"
      "  alert udp !$HOME_NET any -> $HOME_NET 1024:65535 (msg:\"marker\"; content:\"EVIL|0d 0a|\"; nocase; sid:2;)\n"
      "  default pass\n"
      "Example:\n"
      "  gpuoffload-agent rules check /etc/gpuoffload/filter.rules --stats");
  c->add_option("FILE", check.file, "rule file")->required()->check(CLI::ExistingFile);
  c->add_option("--inspect-depth", check.inspect_depth, "bytes of L4 payload that content patterns are searched in")
      ->capture_default_str()
      ->check(CLI::Range(1u, 65535u));
  c->add_flag("--stats", check.stats, "also print table sizes of the compiled rules");
  c->callback([] { run_check(check); });

  auto* d = cmd->add_subcommand("default",
                                "Print the built-in rule file the agent uses without --rules.\n"
                                "Example:\n"
                                "  gpuoffload-agent rules default > my.rules");
  d->callback([] { std::fwrite(rules::default_rules_text().data(), 1, rules::default_rules_text().size(), stdout); });
}

}  // namespace gpo::cli
