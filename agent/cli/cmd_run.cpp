#include "cli/commands.h"

namespace gpo::cli {

void add_run(CLI::App& app) {
  auto* cmd = app.add_subcommand("run", "(being built)");
  cmd->callback([] { throw CLI::RuntimeError("run: not built yet", kUnsupported); });
}

}  // namespace gpo::cli
