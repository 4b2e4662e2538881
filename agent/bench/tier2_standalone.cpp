// bench-tier2: the "tier2" suite as a small standalone binary, for the GPU
// machine (the agent binary is too large to carry there for one suite).
// Usage: bench-tier2 [quick] [min_seconds=S] [threads=N].
#include <fmt/format.h>

#include <cstdlib>
#include <cstring>
#include <exception>

#include "bench/bench.h"

namespace gpo::bench {
int run_tier2_suite(const Options& opt, std::vector<Table>& out);
void register_builtin_suites() {}  // bench.cpp's registry is not used here
}  // namespace gpo::bench

int main(int argc, char** argv) {
  gpo::bench::Options opt;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "quick") == 0) opt.quick = true;
    else if (std::strncmp(argv[i], "min_seconds=", 12) == 0) opt.min_seconds = std::atof(argv[i] + 12);
    else if (std::strncmp(argv[i], "threads=", 8) == 0) opt.threads = unsigned(std::atoi(argv[i] + 8));
    else opt.args.push_back(argv[i]);
  }
  std::vector<gpo::bench::Table> tables;
  try {
    if (int rc = gpo::bench::run_tier2_suite(opt, tables)) return rc;
  } catch (const std::exception& e) {
    fmt::print(stderr, "bench-tier2: {}\n", e.what());
    return 1;
  }
  for (const auto& t : tables) {
    fmt::print("\n## {}\n\n|", t.title);
    for (const auto& c : t.columns) fmt::print(" {} |", c);
    fmt::print("\n|");
    for (size_t i = 0; i < t.columns.size(); ++i) fmt::print(" --- |");
    fmt::print("\n");
    for (const auto& r : t.rows) {
      fmt::print("|");
      for (const auto& c : r) fmt::print(" {} |", c);
      fmt::print("\n");
    }
    for (const auto& n : t.notes) fmt::print("- {}\n", n);
  }
  return 0;
}
