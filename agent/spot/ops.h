// The spotted ops (enum gpo_spot_op in bpf/spot.h) by name, the library entry
// points that feed each, and the per-op thresholds the agent sets at load time.
#pragma once
#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "spot.h"

namespace gpo::spot {

constexpr int kOps = GPO_SPOT_OP_MAX;

// "evp_encrypt", "zstd_compress", "kern_aead_encrypt", ...: the names of the CLI and the JSON.
std::string_view op_name(uint32_t op);
std::optional<uint32_t> op_from_name(std::string_view name);

// Which shared library family an entry point lives in.
enum class LibKind { crypto, zstd, zlib };
std::string_view lib_kind_name(LibKind k);

// One uprobe: a symbol of a library family and the BPF program that handles it.
struct UprobeSpec {
  LibKind lib;
  const char* symbol;
  const char* program;  // name of the SEC("uprobe") program in spot.bpf.c
};
const std::vector<UprobeSpec>& uprobe_specs();

// One kprobe: a kernel function and its SEC("kprobe/...") program.
struct KprobeSpec {
  const char* function;
  const char* program;
};
const std::vector<KprobeSpec>& kprobe_specs();

using Thresholds = std::array<uint64_t, kOps>;
Thresholds default_thresholds();  // GPO_SPOT_DEFAULT_THRESHOLD (64 KiB) for every op

// Applies "OP=BYTES" or "all=BYTES" (BYTES may end in K, M or G: powers of 1024).
// Returns an error message, empty on success.
std::string apply_threshold(Thresholds& t, std::string_view spec);

// 1024 -> "1.0 KiB"
std::string human_bytes(double bytes);

}  // namespace gpo::spot
