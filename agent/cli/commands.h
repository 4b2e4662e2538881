// Each subcommand of gpuoffload-agent lives in its own cli/cmd_*.cpp and adds
// itself to the CLI11 app here. main.cpp only calls these.
#pragma once
#include <CLI/CLI.hpp>

namespace gpo::cli {

// Exit codes shared by all subcommands, so scripts can tell them apart.
enum Exit : int {
  kOk = 0,
  kFailure = 1,      // the command ran and found a problem (bad rules, failed check)
  kUsage = 2,        // bad arguments or config
  kNoPrivilege = 3,  // needs root / CAP_BPF+CAP_NET_ADMIN
  kUnsupported = 4,  // the kernel or machine lacks a required feature
};

void add_version(CLI::App& app);
void add_run(CLI::App& app);
void add_status(CLI::App& app);
void add_stop(CLI::App& app);    // cli/cmd_stop.cpp, with add_reload
void add_reload(CLI::App& app);
void add_rules(CLI::App& app);
void add_top(CLI::App& app);
void add_calibrate(CLI::App& app);  // cli/cmd_calibrate.cpp, with add_plan
void add_plan(CLI::App& app);
void add_bench(CLI::App& app);  // cli/cmd_bench.cpp: only says that gpuoffload-bench has the benchmarks
void add_exec(CLI::App& app);   // cli/cmd_exec.cpp: a program run with the shim and the provider

}  // namespace gpo::cli
