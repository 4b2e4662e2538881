// libzstd and zlib, loaded at the first call that needs them rather than at
// start (lazy_lib.h).
//
// libgpuoffload compresses in the process (no agent, a refused job, a size
// the plan keeps here) and sizes outputs with these libraries. Linked
// against them, every process that loads libgpuoffload would load both at
// start: the OpenSSL provider brings it into every OpenSSL process under
// `exec`, which compresses nothing, and each library costs about 0.05 ms
// there. These definitions stand in for the few functions it calls.
#include <zlib.h>
#include <zstd.h>
#include <zstd_errors.h>

#include <cstdio>
#include <cstdlib>

#include "lazy_lib.h"

namespace {

constexpr char kLibzstd[] = "libzstd.so.1";
constexpr char kLibz[] = "libz.so.1";
void* libzstd() { return gpo::lazy::library<kLibzstd>(); }
void* libz() { return gpo::lazy::library<kLibz>(); }

constexpr size_t kZstdGeneric = size_t(0) - size_t(ZSTD_error_GENERIC);

// zlib answers a checksum, which has no error value: without zlib there is
// no right answer to give.
[[noreturn]] void no_zlib(const char* name) {
  std::fprintf(stderr, "libgpuoffload: %s: cannot open %s\n", name, kLibz);
  std::abort();
}

}  // namespace

// Without libzstd every call fails as libzstd's do, with an error code that
// ZSTD_isError recognises.
GPO_LAZY(libzstd, size_t, ZSTD_compress, (void* dst, size_t cap, const void* src, size_t n, int level),
         (dst, cap, src, n, level), kZstdGeneric)
GPO_LAZY(libzstd, size_t, ZSTD_compressCCtx,
         (ZSTD_CCtx * c, void* dst, size_t cap, const void* src, size_t n, int level), (c, dst, cap, src, n, level),
         kZstdGeneric)
GPO_LAZY(libzstd, size_t, ZSTD_decompress, (void* dst, size_t cap, const void* src, size_t n), (dst, cap, src, n),
         kZstdGeneric)
GPO_LAZY(libzstd, size_t, ZSTD_decompressDCtx, (ZSTD_DCtx * c, void* dst, size_t cap, const void* src, size_t n),
         (c, dst, cap, src, n), kZstdGeneric)
GPO_LAZY(libzstd, size_t, ZSTD_compressBound, (size_t n), (n), 0)
GPO_LAZY(libzstd, ZSTD_CCtx*, ZSTD_createCCtx, (void), (), nullptr)
GPO_LAZY(libzstd, ZSTD_DCtx*, ZSTD_createDCtx, (void), (), nullptr)
GPO_LAZY(libzstd, size_t, ZSTD_freeCCtx, (ZSTD_CCtx * c), (c), 0)
GPO_LAZY(libzstd, size_t, ZSTD_freeDCtx, (ZSTD_DCtx * c), (c), 0)
GPO_LAZY(libzstd, unsigned, ZSTD_isError, (size_t code), (code), code > size_t(0) - size_t(ZSTD_error_maxCode))
GPO_LAZY(libzstd, ZSTD_ErrorCode, ZSTD_getErrorCode, (size_t code), (code), ZSTD_error_GENERIC)

// zlib's, as kernels/zlib/zlib_real.h reaches them when it cannot open
// libz.so.1 itself.
GPO_LAZY(libz, int, compress2, (Bytef * dst, uLongf* dst_len, const Bytef* src, uLong n, int level),
         (dst, dst_len, src, n, level), Z_STREAM_ERROR)
GPO_LAZY(libz, uLong, compressBound, (uLong n), (n), 0)
extern "C" uLong crc32_z(uLong crc, const Bytef* buf, z_size_t n) {
  static auto* const f = gpo::lazy::resolve<decltype(crc32_z)>(libz(), "crc32_z");
  if (!f) no_zlib("crc32_z");
  return f(crc, buf, n);
}
