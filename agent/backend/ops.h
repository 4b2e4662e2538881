// The registry of ops: one entry per row of gpuoffload_ops.h (id, name,
// family, GPU flag), with the op's implementation (CPU code, how it splits, how
// the planner keys it); the backends, planner, CLI, bench and tests enumerate it.
// A new op is a row in gpuoffload_ops.h, its sizes in op_params() (op_table.h),
// a kernels/<op>/ folder and its OpImpl in the ops file of its family.
#pragma once
#include <span>
#include <string_view>

#include "backend/backend.h"

namespace gpo::backend {

enum class Family : uint8_t { aes, sha256, zstd, deflate, crc32, memcpy };  // ops one GPU pipeline runs together

// How an op runs: what its row of the op table does not say.
struct OpImpl {
  bool gpu_sequential = false;  // one job cannot be split across the GPU (planner: CPU for single large jobs)
  Status (*cpu)(Job&) = nullptr;  // runs a valid job on the calling thread (OpenSSL)
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
  // Whether input that another process may still write (a client's slab) is
  // copied before the library reads it (Job::private_input). Compressors and
  // decompressors need the copy: where they read next, and how far, depends
  // on bytes they read before. Ciphers, hashes, CRC and memcpy read each byte
  // at addresses fixed by the sizes alone: a writer changes only its own
  // result, so they read the slab in place.
  bool input_snapshot = true;
};

// One per row of the op table, defined by the ops file of its family
// (ops.cpp, ops_zlib_crc32_memcpy.cpp): a row without one does not link.
#define GPO_OP_IMPL_DECL_(NAME, id, ident, name, family, gpu) extern const OpImpl ident##_impl;
GPO_OPS(GPO_OP_IMPL_DECL_)
#undef GPO_OP_IMPL_DECL_

struct OpInfo : OpImpl {
  OpId id;
  std::string_view name;  // CLI and metrics name, e.g. "aes-256-gcm-encrypt"
  Family family;
  bool gpu;               // a CUDA implementation exists
};

std::span<const OpInfo> ops();
const OpInfo* find_op(OpId id);
const OpInfo* find_op(std::string_view name);

// Sizes and parameters (check_sizes() of op_table.h); ok or invalid.
Status validate_job(const Job& job);

// Validates then runs one job on the CPU; sets and returns job.status.
Status run_on_cpu(Job& job);

}  // namespace gpo::backend
