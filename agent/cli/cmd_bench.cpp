// `gpuoffload-agent bench` is gone: the benchmarks are their own program,
// gpuoffload-bench (bench/), so the daemon carries none of them. The hidden
// subcommand says where they went, with the same arguments, instead of
// CLI11's "unexpected argument".
#include <fmt/format.h>

#include "cli/commands.h"

namespace gpo::cli {

void add_bench(CLI::App& app) {
  auto* cmd = app.add_subcommand("bench", "moved: run gpuoffload-bench");
  cmd->group("");  // not in --help
  cmd->fallthrough(false);  // every argument is the moved command's, none the agent's
  cmd->allow_extras();
  cmd->prefix_command();
  cmd->set_help_flag();  // `bench --help` gets the message too
  cmd->callback([cmd] {
    std::string args;
    for (const auto& a : cmd->remaining()) args += " " + a;
    throw CLI::RuntimeError(
        fmt::format("the benchmarks moved to their own program: run `gpuoffload-bench{}` "
                    "(gpuoffload-bench --help lists the suites)",
                    args),
        kUsage);
  });
}

}  // namespace gpo::cli
