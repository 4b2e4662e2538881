// bench-classify: the "classify" suite without the agent (bench/standalone.h).
// Usage: bench-classify [quick] [min_seconds=S] [threads=N] [rules=..] [patterns=..] [sizes=..] [batches=..].
#include "bench/standalone.h"

namespace gpo::bench {
int run_classify_suite(const Options& opt, std::vector<Table>& out);
void register_builtin_suites() {}  // bench.cpp's registry: only this suite's run function is called
}  // namespace gpo::bench

int main(int argc, char** argv) { return gpo::bench::standalone_main("bench-classify", gpo::bench::run_classify_suite, argc, argv); }
