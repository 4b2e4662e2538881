// SHA-256 of many independent messages: the one header the agent, the CPU
// reference, the CUDA kernel and the tests share.
//
// The GPU wins only on batches of independent messages (one thread each): the
// compression function is a chain, so one long message is sequential and the
// planner keeps it on the CPU (docs/crypto-kernels.md).
#pragma once
#include <cstddef>
#include <cstdint>
#include <span>

namespace gpo::sha256 {

inline constexpr size_t kDigestBytes = 32;

// OpenSSL reference (SHA-NI / AVX2 where the CPU has them). Thread-safe.
void cpu_digest(std::span<const uint8_t> msg, uint8_t out[kDigestBytes]);

namespace gpu {

struct DevMsg {
  uint64_t in = 0;   // device address; 16-byte aligned takes the fast path
  uint64_t len = 0;
};

// Digests of msgs[0..n) into digests (n * kDigestBytes, device memory).
// Returns the launch error (cudaError_t as int; 0 = success).
int enqueue_digests(const DevMsg* msgs, uint32_t n, uint8_t* digests, void* stream);

}  // namespace gpu
}  // namespace gpo::sha256
