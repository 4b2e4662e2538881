// The spotted ops (enum gpo_spot_op in bpf/spot.h) by name, the library entry
// points that feed each, and the per-op thresholds the agent sets at load time.
#pragma once
#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "sample.h"
#include "spot.h"

namespace gpo::spot {

constexpr int kOps = GPO_SPOT_OP_MAX;

// "evp_encrypt", "zstd_compress", "kern_aead_encrypt", ...: the names of the CLI and the JSON.
std::string_view op_name(uint32_t op);
std::optional<uint32_t> op_from_name(std::string_view name);

// Which shared library family an entry point lives in.
enum class LibKind { crypto, zstd, zlib };
std::string_view lib_kind_name(LibKind k);

// One uprobe: a symbol of a library family, handled by spot.bpf.c's up_entry
// with the attach cookie `entry`.
struct UprobeSpec {
  LibKind lib;
  const char* symbol;
  uint32_t entry;                  // enum gpo_spot_entry (the attach cookie)
  uint32_t op;                     // enum gpo_spot_op it counts as
  const char* tail_of = nullptr;   // a wrapper that tail-calls this probed symbol: probing the
                                   // callee alone sees both (crc32 -> crc32_z), one trap per call
};
const std::vector<UprobeSpec>& uprobe_specs();  // index = entry
constexpr const char* kUprobeProgram = "up_entry";

// One kprobe: a kernel function and its SEC("kprobe/...") program.
struct KprobeSpec {
  const char* function;
  const char* program;
  uint32_t op;  // enum gpo_spot_op
};
const std::vector<KprobeSpec>& kprobe_specs();

// Sampling ops (enum gpo_sample_op in bpf/sample.h): "cipher", "digest", ...
constexpr int kSampleOps = GPO_SAMPLE_OP_MAX;
std::string_view sample_op_name(uint32_t op);
std::optional<uint32_t> sample_op_from_name(std::string_view name);
// The probe-side op family a sampled op is measured with: the spot ops
// (enum gpo_spot_op) whose entry points or kprobes a window attaches. Empty
// for the "other" buckets (nothing to measure).
std::vector<uint32_t> probe_ops_of(uint32_t sample_op);
bool sample_op_is_kernel(uint32_t sample_op);
// The library a user-space sampled op lives in (nullopt for kernel and none).
std::optional<LibKind> sample_op_lib(uint32_t sample_op);
// The sampled op of a function of a library family, by name, or GPO_SAMPLE_NONE
// (not a function whose time is attributed: its samples go by the stack).
uint32_t classify_function(LibKind lib, std::string_view name);
// The sampled op of a kernel function (kallsyms name), or GPO_SAMPLE_NONE.
uint32_t classify_kernel_function(std::string_view name);
uint32_t other_op_of(LibKind lib);

using Thresholds = std::array<uint64_t, kOps>;
Thresholds default_thresholds();  // GPO_SPOT_DEFAULT_THRESHOLD (64 KiB) for every op

// Applies "OP=BYTES" or "all=BYTES" (BYTES may end in K, M or G: powers of 1024).
// Returns an error message, empty on success.
std::string apply_threshold(Thresholds& t, std::string_view spec);

// 1024 -> "1.0 KiB"
std::string human_bytes(double bytes);

}  // namespace gpo::spot
