// The CPU reference of `bench crypto`, checked against what the machine does:
// the CPU backend (1 thread and all threads, batches kept in flight the way the
// offload service keeps them) next to the loop `openssl speed -evp` runs (one
// buffer in cache, one thread per core; replicated in-process, and the openssl
// CLI itself when it is installed), and out of cache next to a stream copy of
// the same size: the memory-bound ceiling.
#pragma once
#include <vector>

#include "backend/cpu_backend.h"
#include "bench/bench.h"

namespace gpo::bench {

// Appends the table; returns non-zero when a job failed.
int cpu_reference(const Options& opt, std::vector<Table>& out);

// The CPU backend on `sets` batches of jobs_per_set jobs of `size` bytes kept
// in flight (each completion submits its set again) for min_seconds, in place
// over memory of its own per set: bytes of input per second. snapshot: every
// job private_input. cpu_ns_per_byte: the workers' CPU time per input byte.
double backend_in_flight(backend::CpuBackend& be, backend::OpId op, size_t size, size_t jobs_per_set, int sets,
                         double min_seconds, int* failed, bool snapshot = false, double* cpu_ns_per_byte = nullptr);

// Which of OpenSSL's loops: `openssl speed -evp`'s (speed: the cipher over
// one stream, no IV or tag per call; SHA-256 and zstd a message per call
// anyway), `-aead`'s (aead, GCM: a new IV, 13 bytes of AAD, update and final
// per call), or a message as a job must make one (message: GCM -aead's and
// the tag read back, CTR a new IV per call, the others as speed).
enum class Loop { speed, aead, message };

// The loop on `threads` threads at once, one buffer of `size` bytes per
// thread (in its caches). Bytes of input per second.
double openssl_loop(backend::OpId op, size_t size, unsigned threads, double min_seconds, Loop loop);

}  // namespace gpo::bench
