// bench-tier2: the "tier2" suite without the agent (bench/standalone.h).
// Usage: bench-tier2 [quick] [min_seconds=S] [threads=N].
#include "bench/standalone.h"

namespace gpo::bench {
int run_tier2_suite(const Options& opt, std::vector<Table>& out);
void register_builtin_suites() {}  // bench.cpp's registry is not used here
}  // namespace gpo::bench

int main(int argc, char** argv) { return gpo::bench::standalone_main("bench-tier2", gpo::bench::run_tier2_suite, argc, argv); }
