#include "cli/commands.h"

namespace gpo::cli {

void add_status(CLI::App& app) {
  auto* cmd = app.add_subcommand("status", "(being built)");
  cmd->callback([] { throw CLI::RuntimeError("status: not built yet", kUnsupported); });
}

}  // namespace gpo::cli
