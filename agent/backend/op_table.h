// The ops on the C++ side: OpId from the rows of gpuoffload_ops.h, and each
// op's sizes and parameters with the one check of them (check_sizes) that the
// backends apply to every job, the agent to every client descriptor
// (ipc/slab_validate.h) and libgpuoffload to every request. Header-only and on
// plain sizes: the client library includes it and links none of the agent.
#pragma once
#include <cstdint>
#include <cstdlib>
#include <iterator>
#include <optional>
#include <string_view>

#include "client/include/gpuoffload_ops.h"
#include "kernels/aes/aes.h"
#include "kernels/crc32/crc32.h"
#include "kernels/sha256/sha256.h"

namespace gpo::backend {

// Stable numbers, the same in gpo_request.op, slab descriptors and doorbells.
enum class OpId : uint16_t {
#define GPO_OP_ENUMERATOR_(NAME, id, ident, name, family, gpu) ident = id,
  GPO_OPS(GPO_OP_ENUMERATOR_)
#undef GPO_OP_ENUMERATOR_
};

inline constexpr OpId kOpIds[] = {
#define GPO_OP_ID_(NAME, id, ident, name, family, gpu) OpId::ident,
    GPO_OPS(GPO_OP_ID_)
#undef GPO_OP_ID_
};
inline constexpr size_t kOpCount = std::size(kOpIds);

// Rows in increasing id order: no id twice, none 0 (a zeroed descriptor
// names no op), the largest last.
constexpr bool ids_positive_and_increasing() {
  uint32_t prev = 0;
  for (OpId op : kOpIds) {
    if (uint32_t(op) <= prev) return false;
    prev = uint32_t(op);
  }
  return true;
}
static_assert(ids_positive_and_increasing(), "gpuoffload_ops.h: ids above 0, increasing row by row");
inline constexpr uint32_t kMaxOpId = uint32_t(kOpIds[kOpCount - 1]);

// Is op (a number from a request or the wire) the id of a row?
constexpr bool is_op(uint32_t op) {
  for (OpId o : kOpIds)
    if (uint32_t(o) == op) return true;
  return false;
}

// The op's name in the CLI, the profile, metrics and stats files.
constexpr std::string_view op_name(OpId op) {
  switch (op) {
#define GPO_OP_NAME_(NAME, id, ident, name, family, gpu) \
  case OpId::ident: return name;
    GPO_OPS(GPO_OP_NAME_)
#undef GPO_OP_NAME_
  }
  return "unknown";
}

// What a job of an op takes besides its input, and what it writes.
struct OpParams {
  enum class Out : uint8_t {
    input_size,  // as many bytes as the input (ciphers, memcpy)
    fixed,       // fixed_bytes (a digest, a crc)
    bounded,     // up to the output buffer; the job says how much it wrote (compressors)
  };
  uint32_t key_bytes = 0;  // 0: takes no key
  uint32_t iv_bytes = 0;   // 0: takes no IV
  bool aad = false;        // takes additional authenticated data (less than 4 GiB)
  bool tag = false;        // a tag of aes::kTagBytes: written on encrypt, checked on decrypt
  Out out = Out::bounded;
  uint32_t fixed_bytes = 0;           // Out::fixed: the output's size
  bool no_partial_overlap = false;    // output and input: the same buffer, or no byte shared
};

// Aborts at run time, and stops the build where a constant is wanted (below):
// an op without parameters.
[[noreturn]] inline void op_without_params() { std::abort(); }

// The sizes and parameters of every op, the one place that says them.
constexpr OpParams op_params(OpId op) {
  using Out = OpParams::Out;
  switch (op) {
    case OpId::aes256_gcm_encrypt:
    case OpId::aes256_gcm_decrypt:
      return {.key_bytes = aes::kKeyBytes, .iv_bytes = aes::kGcmIvBytes, .aad = true, .tag = true,
              .out = Out::input_size};
    case OpId::aes256_ctr: return {.key_bytes = aes::kKeyBytes, .iv_bytes = aes::kCtrIvBytes, .out = Out::input_size};
    case OpId::sha256: return {.out = Out::fixed, .fixed_bytes = sha256::kDigestBytes};
    case OpId::zstd_compress:
    case OpId::zstd_decompress:
    case OpId::zlib_compress: return {.out = Out::bounded};
    case OpId::crc32: return {.out = Out::fixed, .fixed_bytes = crc32::kCrcBytes};
    case OpId::memcpy: return {.out = Out::input_size, .no_partial_overlap = true};
  }
  op_without_params();
}
// A row of gpuoffload_ops.h without a case above does not build.
#define GPO_OP_HAS_PARAMS_(NAME, id, ident, name, family, gpu) \
  static_assert((void(op_params(OpId::ident)), true), "no op_params() for " name);
GPO_OPS(GPO_OP_HAS_PARAMS_)
#undef GPO_OP_HAS_PARAMS_

// Bytes of output a job of op writes for in_len bytes of input, where that is
// fixed; none for Out::bounded (up to the output buffer).
constexpr std::optional<uint64_t> fixed_out_bytes(OpId op, uint64_t in_len) {
  const OpParams p = op_params(op);
  if (p.out == OpParams::Out::bounded) return std::nullopt;
  return p.out == OpParams::Out::input_size ? in_len : p.fixed_bytes;
}

// Do [a, a + an) and [b, b + bn) share a byte without starting at the same
// one? (what memcpy refuses; empty ranges share none)
inline bool partially_overlap(const void* a, uint64_t an, const void* b, uint64_t bn) {
  const auto x = reinterpret_cast<uintptr_t>(a), y = reinterpret_cast<uintptr_t>(b);
  return an && bn && x != y && x < y + bn && y < x + an;
}

// One job's sizes and parameters, however it is held: a backend Job, a slab
// descriptor, an API request.
struct JobSizes {
  uint32_t op = 0;           // an id of gpuoffload_ops.h, or anything (refused)
  uint64_t in = 0;
  uint64_t out = 0;          // bytes of the output buffer
  uint64_t key = 0, iv = 0, aad = 0;
  bool partial_overlap = false;  // see partially_overlap()
};

// Null when a job of these sizes may run, else why not (a static string).
constexpr const char* check_sizes(const JobSizes& s) {
  if (!is_op(s.op)) return "unknown op";
  const OpParams p = op_params(OpId(s.op));
  if (s.key != p.key_bytes) return "key length";
  if (s.iv != p.iv_bytes) return "IV length";
  if (p.aad ? s.aad > 0xffffffffu : s.aad != 0) return "AAD length";
  if (const auto out = fixed_out_bytes(OpId(s.op), s.in); out && s.out != *out) return "output size";
  if (p.no_partial_overlap && s.partial_overlap) return "output overlaps the input";
  return nullptr;
}

}  // namespace gpo::backend
