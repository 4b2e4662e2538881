// The CPU reference of `bench crypto`, checked against what the machine does:
// the CPU backend (1 thread and all threads, batches kept in flight the way the
// offload service keeps them) next to the loop `openssl speed -evp` runs (one
// buffer in cache, one thread per core; replicated in-process, and the openssl
// CLI itself when it is installed), and out of cache next to a stream copy of
// the same size: the memory-bound ceiling.
#pragma once
#include <vector>

#include "bench/bench.h"

namespace gpo::bench {

// Appends the table; returns non-zero when a job failed.
int cpu_reference(const Options& opt, std::vector<Table>& out);

}  // namespace gpo::bench
