#include "bench/standalone.h"

#include <fmt/format.h>

#include <cstdlib>
#include <cstring>
#include <exception>

namespace gpo::bench {

int standalone_main(const char* tool, SuiteRun run, int argc, char** argv) {
  Options opt;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "quick") == 0) opt.quick = true;
    else if (std::strncmp(argv[i], "min_seconds=", 12) == 0) opt.min_seconds = std::atof(argv[i] + 12);
    else if (std::strncmp(argv[i], "threads=", 8) == 0) opt.threads = unsigned(std::atoi(argv[i] + 8));
    else opt.args.push_back(argv[i]);
  }
  std::vector<Table> tables;
  try {
    if (int rc = run(opt, tables)) return rc;
  } catch (const std::exception& e) {
    fmt::print(stderr, "{}: {}\n", tool, e.what());
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

}  // namespace gpo::bench
