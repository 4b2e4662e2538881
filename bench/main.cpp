// gpuoffload-bench: runs the suites of the registry (bench.h, suites.cpp) and
// prints their tables as aligned text, or one JSON document with --json.
#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <nlohmann/json.hpp>
#include <thread>

#include "backend/backend.h"
#include "bench/bench.h"
#include "cli/commands.h"  // the exit codes the agent's commands use too
#include "util/log.h"

namespace gpo::bench {
namespace {

using cli::kFailure;
using cli::kUsage;

struct BenchArgs {
  bool list = false;
  bool json = false;
  Options opt;
  std::vector<std::string> names;
};

void print_table(const Table& t) {
  std::vector<size_t> w(t.columns.size(), 0);
  for (size_t c = 0; c < t.columns.size(); ++c) w[c] = t.columns[c].size();
  for (const auto& r : t.rows)
    for (size_t c = 0; c < r.size() && c < w.size(); ++c) w[c] = std::max(w[c], r[c].size());
  fmt::print("\n{}\n", t.title);
  auto line = [&](const std::vector<std::string>& cells) {
    std::string s = " ";
    for (size_t c = 0; c < w.size(); ++c) {
      const std::string& v = c < cells.size() ? cells[c] : std::string();
      // First column (row name) left-aligned, figures right-aligned.
      s += c == 0 ? fmt::format(" {:<{}}", v, w[c]) : fmt::format("  {:>{}}", v, w[c]);
    }
    fmt::print("{}\n", s);
  };
  line(t.columns);
  std::vector<std::string> rule;
  for (size_t c = 0; c < w.size(); ++c) rule.push_back(std::string(w[c], '-'));
  line(rule);
  for (const auto& r : t.rows) line(r);
  for (const auto& n : t.notes) fmt::print("  note: {}\n", n);
}

nlohmann::json table_json(const Table& t) {
  return {{"title", t.title}, {"columns", t.columns}, {"rows", t.rows}, {"notes", t.notes}};
}

// One suite as --list and --help show it: its name in a column as wide as the longest.
std::string suite_line(const Suite& s) {
  size_t width = 0;
  for (const auto& x : suites()) width = std::max(width, x.name.size());
  return fmt::format("{:<{}} {}{}\n", s.name, width, s.what, s.needs_gpu ? " (GPU)" : "");
}

void run_bench(BenchArgs& a) {
  auto all = suites();
  if (a.list) {
    for (const auto& s : all) fmt::print("{}", suite_line(s));
    return;
  }
  std::vector<const Suite*> chosen;
  for (const auto& n : a.names) {
    const auto* s = find_suite(n);
    if (!s) {
      std::string names;
      for (const auto& x : all) names += (names.empty() ? "" : ", ") + std::string(x.name);
      throw CLI::RuntimeError(fmt::format("no suite '{}'; suites: {}", n, names), kUsage);
    }
    if (std::find(chosen.begin(), chosen.end(), s) == chosen.end()) chosen.push_back(s);
  }
  if (a.names.empty())
    for (const auto& s : all) chosen.push_back(&s);
  for (const auto& kv : a.opt.args)
    if (kv.find('=') == std::string::npos)
      throw CLI::RuntimeError(fmt::format("--set {}: expected KEY=VALUE", kv), kUsage);

  std::string why;
  const int gpus = backend::cuda_device_count(&why);
  if (gpus > 0 && (a.opt.gpu < 0 || a.opt.gpu >= gpus))
    throw CLI::RuntimeError(fmt::format("--gpu {}: this host has GPUs 0..{}", a.opt.gpu, gpus - 1), kUsage);
  const unsigned cores = std::max(1u, std::thread::hardware_concurrency());
  if (a.opt.threads == 0) a.opt.threads = cores;
  if (a.opt.quick) a.opt.min_seconds = std::min(a.opt.min_seconds, 0.05);

  nlohmann::json out;
  out["host"] = {{"cpu_threads", cores}, {"gpus", std::max(gpus, 0)}, {"gpu_why", gpus > 0 ? "" : why},
                 {"quick", a.opt.quick}, {"threads", a.opt.threads}};
  out["suites"] = nlohmann::json::array();
  if (!a.json)
    fmt::print("gpuoffload bench: {} CPU threads (all-cores rows use {}), {}{}\n", cores, a.opt.threads,
               gpus > 0 ? fmt::format("GPU {} of {}", a.opt.gpu, gpus) : "no GPU: " + why,
               a.opt.quick ? ", quick mode" : "");
  int failed = 0;
  for (const auto* s : chosen) {
    nlohmann::json js{{"name", s->name}};
    if (s->needs_gpu && gpus <= 0) {
      js["skipped"] = "no usable GPU: " + why;
      if (!a.json) fmt::print("\n== {}: skipped (no usable GPU: {})\n", s->name, why);
      out["suites"].push_back(js);
      continue;
    }
    if (!a.json) {
      fmt::print("\n== {}: {}\n", s->name, s->what);
      std::fflush(stdout);
    }
    std::vector<Table> tables;
    const auto t0 = std::chrono::steady_clock::now();
    int rc = s->run(a.opt, tables);
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    js["seconds"] = secs;
    js["rc"] = rc;
    js["tables"] = nlohmann::json::array();
    for (const auto& t : tables) js["tables"].push_back(table_json(t));
    if (!a.json) {
      for (const auto& t : tables) print_table(t);
      fmt::print("  ({} took {:.1f} s{})\n", s->name, secs, rc ? fmt::format(", FAILED rc {}", rc) : "");
      std::fflush(stdout);
    }
    if (rc) ++failed;
    out["suites"].push_back(js);
  }
  if (a.json) fmt::print("{}\n", out.dump(2));
  if (failed) throw CLI::RuntimeError(fmt::format("{} suite(s) failed (see above)", failed), kFailure);
}

std::string suite_lines() {
  std::string s = "Suites (default: all, in this order):\n";
  for (const auto& x : suites())
    s += "  " + suite_line(x);
  return s;
}

}  // namespace
}  // namespace gpo::bench

int main(int argc, char** argv) {
  using namespace gpo::bench;
  CLI::App app{
      "gpuoffload-bench: the benchmarks of gpuoffload, GPU figures next to the CPU reference (OpenSSL, libzstd, "
      "zlib, Hyperscan, rte_acl, XDP_DROP) measured in the same run.",
      "gpuoffload-bench"};
  auto a = std::make_shared<BenchArgs>();
  app.footer(suite_lines() +
             "\nExamples:\n"
             "  gpuoffload-bench --list\n"
             "  gpuoffload-bench crypto\n"
             "  gpuoffload-bench --quick --json > bench.json\n"
             "  sudo gpuoffload-bench xdp --set seconds=1\n"
             "  gpuoffload-bench planner --set profile=/var/lib/gpuoffload/profile.json\n"
             "Suites that need a GPU are skipped, with the reason, when none is usable; xdp and spot need root.\n"
             "Exit status: 0, 1 when a suite failed, 2 for bad arguments.");
  std::string level = "info";
  app.add_option("--log-level", level, "error, warn, info or debug")
      ->check(CLI::IsMember({"error", "warn", "info", "debug"}))
      ->capture_default_str();
  app.add_option("suite", a->names, "suites to run (default: all; see --list)");
  app.add_flag("--list", a->list, "list the suites and exit");
  app.add_flag("--quick", a->opt.quick, "small sizes and few repetitions (seconds per suite)");
  app.add_flag("--json", a->json, "print one JSON document instead of tables");
  app.add_option("--gpu", a->opt.gpu, "CUDA device ordinal")->capture_default_str()->check(CLI::NonNegativeNumber);
  app.add_option("--threads", a->opt.threads, "CPU threads of the all-cores reference (default: all)");
  app.add_option("--min-seconds", a->opt.min_seconds, "minimum measured time per point")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 60.0));
  app.add_option("--corpus", a->opt.corpus, "zstd: folder of input files (default: the suite's own)");
  app.add_option("--set", a->opt.args, "suite setting KEY=VALUE (repeatable; each suite's line says its keys)");
  try {
    app.parse(argc, argv);
    gpo::log::Level l;
    if (gpo::log::parse_level(level, l)) gpo::log::set_level(l);
    run_bench(*a);
  } catch (const CLI::RuntimeError& e) {
    if (*e.what()) fmt::print(stderr, "gpuoffload-bench: {}\n", e.what());
    return e.get_exit_code();
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? 0 : gpo::cli::kUsage;
  } catch (const std::exception& e) {
    fmt::print(stderr, "gpuoffload-bench: {}\n", e.what());
    return gpo::cli::kFailure;
  }
  return 0;
}
