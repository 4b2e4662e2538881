#include "cli/commands.h"

namespace gpo::cli {

void add_rules(CLI::App& app) {
  auto* cmd = app.add_subcommand("rules", "(being built)");
  cmd->callback([] { throw CLI::RuntimeError("rules: not built yet", kUnsupported); });
}

}  // namespace gpo::cli
