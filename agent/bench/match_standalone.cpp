// bench-match: the "match" suite without the agent (bench/standalone.h).
// Usage: bench-match [quick] [min_seconds=S] [threads=N] [patterns=..] [batches=..] [payloads=..].
#include "bench/standalone.h"

namespace gpo::bench {
int run_match_suite(const Options& opt, std::vector<Table>& out);
void register_suite(Suite) {}  // match.cpp's register_match_bench() is not called here
}  // namespace gpo::bench

int main(int argc, char** argv) { return gpo::bench::standalone_main("bench-match", gpo::bench::run_match_suite, argc, argv); }
