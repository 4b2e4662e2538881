// libgpuoffload-shim.so: LD_PRELOAD interposer for one-shot calls whose whole
// meaning is in their arguments. Calls at or over the threshold
// (GPO_SHIM_MIN_BYTES, default 64 KiB) that the agent's plan sends to the
// agent (gpo_would_offload: the GPU wins at that size) go through
// libgpuoffload; everything else, and any call made while the shim is already
// on this thread's stack (the library's own CPU fallback calls libzstd), goes
// to the real function found with dlsym(RTLD_NEXT), with the caller's own
// arguments (its ZSTD_CCtx too): exactly what the program would have done.
// docs/offload.md lists what is intercepted.
// zlib: compress2, compress, crc32, crc32_z. The library's and the agent's
// zlib calls go to libz.so.1's own definitions (kernels/deflate/zlib_real.h),
// so they never come back here, even in a process that preloads the shim.
#include <dlfcn.h>
#include <zlib.h>
#include <zstd.h>

#include <atomic>
#include <cstdlib>

#include "gpuoffload.h"

namespace {

thread_local bool t_inside = false;  // no recursion through the library's own calls

struct Guard {
  Guard() { t_inside = true; }
  ~Guard() { t_inside = false; }
};

size_t threshold() {
  static const size_t t = [] {
    // Not in a process that must not trust its environment (setuid, e.g.
    // with the shim in /etc/ld.so.preload): the default holds there.
    const char* v = secure_getenv("GPO_SHIM_MIN_BYTES");
    char* end = nullptr;
    unsigned long long x = v && *v ? strtoull(v, &end, 10) : 0;
    return v && *v && end && !*end ? size_t(x) : size_t(64) << 10;
  }();
  return t;
}

// Resolves the next definition once; safe from many threads (a racing second
// lookup stores the same pointer).
template <typename F>
F real(std::atomic<F>& slot, const char* name) {
  F f = slot.load(std::memory_order_acquire);
  if (!f) {
    f = reinterpret_cast<F>(dlsym(RTLD_NEXT, name));
    slot.store(f, std::memory_order_release);
  }
  return f;
}

using Sha256Fn = unsigned char* (*)(const unsigned char*, size_t, unsigned char*);
using ZCompressFn = size_t (*)(void*, size_t, const void*, size_t, int);
using ZCompressCCtxFn = size_t (*)(ZSTD_CCtx*, void*, size_t, const void*, size_t, int);
std::atomic<Sha256Fn> g_sha256{nullptr};
std::atomic<ZCompressFn> g_zcompress{nullptr};
std::atomic<ZCompressCCtxFn> g_zcompress_cctx{nullptr};
using Compress2Fn = int (*)(Bytef*, uLongf*, const Bytef*, uLong, int);
using CompressFn = int (*)(Bytef*, uLongf*, const Bytef*, uLong);
using Crc32Fn = uLong (*)(uLong, const Bytef*, uInt);
using Crc32zFn = uLong (*)(uLong, const Bytef*, z_size_t);
std::atomic<Compress2Fn> g_compress2{nullptr};
std::atomic<CompressFn> g_compress{nullptr};
std::atomic<Crc32Fn> g_crc32{nullptr};
std::atomic<Crc32zFn> g_crc32_z{nullptr};

// compress2 through the library: true with *dest_len set, or false (the caller
// then asks the real function, which returns zlib's own error code).
bool offload_compress2(Bytef* dest, uLongf* dest_len, const Bytef* src, uLong n, int level) {
  if (!dest || !dest_len || !src) return false;
  Guard g;
  size_t out = 0;
  if (gpo_zlib_compress(dest, *dest_len, src, n, level, &out) != GPO_OK) return false;
  *dest_len = uLongf(out);
  return true;
}

// zlib's crc arithmetic is on the low 32 bits of crc; so is the library's.
bool offload_crc32(uLong crc, const Bytef* buf, size_t n, uLong* out) {
  Guard g;
  uint32_t c = 0;
  if (gpo_crc32(uint32_t(crc), buf, n, &c) != GPO_OK) return false;
  *out = c;
  return true;
}

}  // namespace

extern "C" {

__attribute__((visibility("default"))) unsigned char* SHA256(const unsigned char* d, size_t n, unsigned char* md) {
  auto next = real(g_sha256, "SHA256");
  // md == NULL means OpenSSL's static buffer: leave that to OpenSSL.
  if (t_inside || !md || n < threshold() || !gpo_would_offload(GPO_SHA256, n)) return next(d, n, md);
  Guard g;
  const void* msg = d;
  if (gpo_sha256_batch(&msg, &n, 1, md) != GPO_OK) return next(d, n, md);
  return md;
}

__attribute__((visibility("default"))) size_t ZSTD_compress(void* dst, size_t cap, const void* src, size_t n,
                                                            int level) {
  auto next = real(g_zcompress, "ZSTD_compress");
  if (t_inside || n < threshold() || !gpo_would_offload(GPO_ZSTD_COMPRESS, n)) return next(dst, cap, src, n, level);
  Guard g;
  size_t out = 0;
  // Any failure (dst too small included) goes to the real call, which
  // returns libzstd's own error code.
  if (gpo_zstd_compress(dst, cap, src, n, level, &out) != GPO_OK) return next(dst, cap, src, n, level);
  return out;
}

__attribute__((visibility("default"))) size_t ZSTD_compressCCtx(ZSTD_CCtx* cctx, void* dst, size_t cap,
                                                                const void* src, size_t n, int level) {
  auto next = real(g_zcompress_cctx, "ZSTD_compressCCtx");
  if (t_inside || n < threshold() || !cctx || !gpo_would_offload(GPO_ZSTD_COMPRESS, n))
    return next(cctx, dst, cap, src, n, level);
  Guard g;
  size_t out = 0;
  if (gpo_zstd_compress(dst, cap, src, n, level, &out) != GPO_OK) return next(cctx, dst, cap, src, n, level);
  // ZSTD_compressCCtx resets any advanced parameter of cctx (zstd.h): do the
  // same so the caller's next use of cctx behaves as without the shim.
  ZSTD_CCtx_reset(cctx, ZSTD_reset_session_and_parameters);
  return out;
}

__attribute__((visibility("default"))) int compress2(Bytef* dest, uLongf* dest_len, const Bytef* src, uLong n,
                                                     int level) {
  auto next = real(g_compress2, "compress2");
  if (t_inside || n < threshold() || !gpo_would_offload(GPO_ZLIB_COMPRESS, n) ||
      !offload_compress2(dest, dest_len, src, n, level))
    return next(dest, dest_len, src, n, level);
  return Z_OK;
}

// zlib's compress() is compress2() at Z_DEFAULT_COMPRESSION (some builds call
// it through the PLT, and then compress2 above sees it; others inline it).
__attribute__((visibility("default"))) int compress(Bytef* dest, uLongf* dest_len, const Bytef* src, uLong n) {
  auto next = real(g_compress, "compress");
  if (t_inside || n < threshold() || !gpo_would_offload(GPO_ZLIB_COMPRESS, n) ||
      !offload_compress2(dest, dest_len, src, n, Z_DEFAULT_COMPRESSION))
    return next(dest, dest_len, src, n);
  return Z_OK;
}

// buf == NULL is zlib's "give me the initial crc" (returns 0): left to zlib.
__attribute__((visibility("default"))) uLong crc32(uLong crc, const Bytef* buf, uInt n) {
  auto next = real(g_crc32, "crc32");
  uLong r = 0;
  if (t_inside || !buf || n < threshold() || !gpo_would_offload(GPO_CRC32, n) || !offload_crc32(crc, buf, n, &r))
    return next(crc, buf, n);
  return r;
}

__attribute__((visibility("default"))) uLong crc32_z(uLong crc, const Bytef* buf, z_size_t n) {
  auto next = real(g_crc32_z, "crc32_z");
  uLong r = 0;
  if (t_inside || !buf || n < threshold() || !gpo_would_offload(GPO_CRC32, n) || !offload_crc32(crc, buf, n, &r))
    return next(crc, buf, n);
  return r;
}

}  // extern "C"
