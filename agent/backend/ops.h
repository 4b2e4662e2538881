// The registry of ops: each op is declared once (name, descriptor id, CPU
// implementation, whether a GPU implementation exists, how the planner keys
// it), and the backends, planner, CLI, bench and tests enumerate it.
// A new op is a new kernels/<op>/ folder and one register_*_ops() call in ops.cpp.
#pragma once
#include <span>
#include <string_view>

#include "backend/backend.h"

namespace gpo::backend {

enum class Family : uint8_t { aes, sha256, zstd, deflate, crc32, memcpy };  // ops one GPU pipeline runs together

struct OpInfo {
  OpId id;
  std::string_view name;       // CLI and metrics name, e.g. "aes-256-gcm-encrypt"
  Family family;
  bool gpu;                    // a CUDA implementation exists
  bool gpu_sequential;         // one job cannot be split across the GPU (planner: CPU for single large jobs)
  Status (*validate)(const Job&);  // sizes and parameters; ok or invalid
  Status (*cpu)(Job&);         // runs the job on the calling thread (OpenSSL)
  // Splitting one long job across CPU workers; null cpu_range: whole jobs
  // only. cpu_range runs the job's input bytes [lo, lo + bytes.size()) of a
  // valid job, given as bytes (the job's own, or a private copy), with lo a
  // multiple of split_align, and leaves in *part what join needs; join (null:
  // nothing to join) completes the job from the parts of all ranges, in
  // order, with ends[k] the end offset of range k. Only ops whose result over
  // a range depends on what came before through a cheap carry (a counter, a CRC).
  size_t split_align = 0;
  Status (*cpu_range)(Job&, uint64_t lo, std::span<const uint8_t> bytes, uint64_t* part) = nullptr;
  void (*join)(Job&, std::span<const uint64_t> parts, std::span<const uint64_t> ends) = nullptr;
};

std::span<const OpInfo> ops();
const OpInfo* find_op(OpId id);
const OpInfo* find_op(std::string_view name);

// Validates then runs one job on the CPU; sets and returns job.status.
Status run_on_cpu(Job& job);

// Registration hooks, one per kernels/<op> family (called once by ops()).
void register_op(OpInfo info);
void register_crypto_ops();
void register_zstd_ops();
void register_tier2_ops();  // zlib compress2, crc32, memcpy (ops_tier2.cpp)

}  // namespace gpo::backend
