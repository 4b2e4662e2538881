// gpuoffload-agent: the daemon and its command line. Subcommands live in cli/.
#include <CLI/CLI.hpp>

#include "cli/commands.h"
#include "util/log.h"

int main(int argc, char** argv) {
  CLI::App app{
      "gpuoffload-agent: eBPF-driven GPU offload for crypto, compression and packet filtering.\n"
      "Run `gpuoffload-agent COMMAND --help` for each command's options and examples.",
      "gpuoffload-agent"};
  app.require_subcommand(1);
  app.fallthrough();
  std::string level = "info";
  app.add_option("--log-level", level, "error, warn, info or debug")
      ->check(CLI::IsMember({"error", "warn", "info", "debug"}))
      ->capture_default_str();
  app.parse_complete_callback([&] {
    gpo::log::Level l;
    if (gpo::log::parse_level(level, l)) gpo::log::set_level(l);
  });

  gpo::cli::add_run(app);
  gpo::cli::add_status(app);
  gpo::cli::add_stop(app);
  gpo::cli::add_reload(app);
  gpo::cli::add_rules(app);
  gpo::cli::add_top(app);
  gpo::cli::add_calibrate(app);
  gpo::cli::add_plan(app);
  gpo::cli::add_bench(app);
  gpo::cli::add_exec(app);
  gpo::cli::add_version(app);

  try {
    app.parse(argc, argv);
  } catch (const CLI::RuntimeError& e) {
    // Commands fail with CLI::RuntimeError(message, gpo::cli::Exit code).
    if (*e.what()) gpo::log::error("{}", e.what());
    return e.get_exit_code();
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? 0 : gpo::cli::kUsage;
  } catch (const std::exception& e) {
    gpo::log::error("{}", e.what());
    return gpo::cli::kFailure;
  }
  return 0;
}
