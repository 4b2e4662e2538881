// zlib compress2() semantics: the CPU reference shared by the backend, the
// client library's in-process fallback and the tests. The output is the zlib
// format (RFC 1950) stream of a one-shot compress2() at that level, so it is
// byte-identical to the caller's own compress2() with the same zlib. No GPU
// kernel: deflate is a sequential match search; the planner keeps it on the CPU.
#pragma once
#include <cstddef>
#include <cstdint>
#include <span>

namespace gpo::deflate {

inline constexpr int kDefaultLevel = -1;  // Z_DEFAULT_COMPRESSION (6)

// Worst-case output of compress2() for n input bytes (compressBound).
size_t bound(size_t n);

enum class Result { ok, dst_too_small, invalid };

// compress2(out, &len, in, level). Returns the stream size in *out_len.
Result cpu_compress(std::span<const uint8_t> in, std::span<uint8_t> out, int level, size_t* out_len);

}  // namespace gpo::deflate
