// zstd compress and decompress: the CPU reference (libzstd) shared by the
// backend, the client library's in-process fallback and the tests. Frames are
// plain one-shot ZSTD_compress() frames, so any `zstd -d` reads them and the
// output is byte-identical to the caller's own ZSTD_compress() at that level.
// The GPU path for compression (zstd_find.h, docs/zstd-gpu.md) gives frames
// that are just as standard but not byte-identical (its own match finder).
#pragma once
#include <cstddef>
#include <cstdint>
#include <span>

namespace gpo::zstd {

inline constexpr int kDefaultLevel = 3;

// Worst-case compressed size of n input bytes (ZSTD_compressBound).
size_t bound(size_t n);

// Compresses in into out at level. Returns the frame size, or 0 with
// *error set (out too small, bad level) when it fails. Each thread keeps one
// context between calls, up to kKeepContextBytes.
size_t cpu_compress(std::span<const uint8_t> in, std::span<uint8_t> out, int level, bool* error);
inline constexpr size_t kKeepContextBytes = size_t(64) << 20;
// What the calling thread's context holds now (tests).
size_t cpu_context_bytes();

// Decompresses the frame(s) in into out. Returns the decompressed size, or 0
// with *error set (corrupt input, out too small).
size_t cpu_decompress(std::span<const uint8_t> in, std::span<uint8_t> out, bool* error);

}  // namespace gpo::zstd
