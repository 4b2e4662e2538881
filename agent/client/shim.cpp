// The shim's core (libgpuoffload-shim-core.so, opened by the front users
// preload, shim_front.c): one-shot calls whose whole meaning is in their
// arguments. Calls at or over the threshold (GPO_SHIM_MIN_BYTES, default
// 64 KiB) go through libgpuoffload; everything else, and any call made while
// the shim is already on this thread's stack (the library's own CPU fallback
// calls libzstd), goes to the real function found through the front
// (gpo_shim_core_attach). docs/shim.md lists what is intercepted.
// zlib: compress2, compress, crc32, crc32_z. The library's and the agent's
// zlib calls go to libz.so.1's own definitions (kernels/zlib/zlib_real.h),
// so they never come back here, even in a process that preloads the shim.
#include <zlib.h>
#include <zstd.h>

#include <atomic>
#include <chrono>

#include "gpuoffload.h"
#include "shim.h"

namespace gpo::shim {

thread_local bool t_inside = false;
Front g_front;

unsigned long long now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

}  // namespace gpo::shim

namespace {

using namespace gpo::shim;

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

// SHA256() runs on EVP, where the OpenSSL provider counts digests too: the
// call this shim counted is not counted again below it.
struct HoldCounts {
  HoldCounts() { gpo_account_hold(1); }
  ~HoldCounts() { gpo_account_hold(0); }
  HoldCounts(const HoldCounts&) = delete;
  HoldCounts& operator=(const HoldCounts&) = delete;
};

// The path a call took, for `gpuoffload-agent exec` (gpo_account).
void note(int op, int path, size_t n, unsigned long long t0 = 0) {
  gpo_account(op, path, 1, n, t0 ? now_ns() - t0 : 0);
}

// Where a one-shot call of n bytes goes: GPO_PATH_OFFLOAD, or why it stays
// with the real function (below the shim's threshold, no agent reachable,
// larger than one job).
int route(int op, size_t n) {
  if (n < threshold()) return GPO_PATH_CPU_SMALL;
  size_t lo = 0, hi = 0;
  gpo_offload_range(op, &lo, &hi);
  if (lo == SIZE_MAX) return gpo_offload_reason(op);
  if (n < lo) return GPO_PATH_CPU_SMALL;
  return n > hi ? GPO_PATH_CPU_TOO_LARGE : GPO_PATH_OFFLOAD;
}

// compress2 through the library: true with *dest_len set, or false (the caller
// then asks the real function, which returns zlib's own error code).
bool offload_compress2(Bytef* dest, uLongf* dest_len, const Bytef* src, uLong n, int level) {
  if (!dest || !dest_len || !src) return false;
  Guard g;
  const auto t0 = now_ns();
  size_t out = 0;
  if (gpo_zlib_compress(dest, *dest_len, src, n, level, &out) != GPO_OK) return false;
  *dest_len = uLongf(out);
  note(GPO_ZLIB_COMPRESS, GPO_PATH_OFFLOAD, n, t0);
  return true;
}

// zlib's crc arithmetic is on the low 32 bits of crc; so is the library's.
bool offload_crc32(uLong crc, const Bytef* buf, size_t n, uLong* out) {
  Guard g;
  const auto t0 = now_ns();
  uint32_t c = 0;
  if (gpo_crc32(uint32_t(crc), buf, n, &c) != GPO_OK) return false;
  *out = c;
  note(GPO_CRC32, GPO_PATH_OFFLOAD, n, t0);
  return true;
}

// A call the library did not serve: the real function, under the guard, with
// the path counted when the plan kept the call here (an offload that failed
// leaves its count to the library).
template <typename Call>
auto fall_back(int op, int path, size_t n, Call&& real_call) {
  if (path != GPO_PATH_OFFLOAD) note(op, path, n);
  Guard g;
  return real_call();
}

// compress2() and compress() once the call is the shim's; real_call runs the
// real one of the two.
template <typename Call>
int shim_compress(Bytef* dest, uLongf* dest_len, const Bytef* src, uLong n, int level, Call&& real_call) {
  const int path = route(GPO_ZLIB_COMPRESS, n);
  if (path == GPO_PATH_OFFLOAD && offload_compress2(dest, dest_len, src, n, level)) return Z_OK;
  return fall_back(GPO_ZLIB_COMPRESS, path, n, real_call);
}

// crc32() and crc32_z(), which differ in the type of the length.
// buf == NULL is zlib's "give me the initial crc" (returns 0): left to zlib.
template <typename Fn, typename Len>
uLong shim_crc32(Fn next, uLong crc, const Bytef* buf, Len n) {
  if (t_inside || !buf) return next(crc, buf, n);
  uLong r = 0;
  const int path = route(GPO_CRC32, n);
  if (path == GPO_PATH_OFFLOAD && offload_crc32(crc, buf, n, &r)) return r;
  return fall_back(GPO_CRC32, path, n, [&] { return next(crc, buf, n); });
}

}  // namespace

extern "C" {

// Called by the front once, right after it opened the core, before any call.
__attribute__((visibility("default"))) void gpo_shim_core_attach(void* (*next)(const char*), size_t (*min_bytes)(),
                                                                 void (*pass)(void*), void (*end_pass)()) {
  g_front.next.store(next, std::memory_order_relaxed);
  g_front.min_bytes.store(min_bytes, std::memory_order_relaxed);
  g_front.pass.store(pass, std::memory_order_relaxed);
  g_front.end_pass.store(end_pass, std::memory_order_relaxed);
}

__attribute__((visibility("default"))) unsigned char* SHA256(const unsigned char* d, size_t n, unsigned char* md) {
  auto next = real(g_sha256, "SHA256");
  // md == NULL means OpenSSL's static buffer: leave that to OpenSSL.
  if (t_inside) return next(d, n, md);
  const int path = md ? route(GPO_SHA256, n) : GPO_PATH_CPU_PARAMS;
  if (path != GPO_PATH_OFFLOAD) {
    note(GPO_SHA256, path, n);
    Guard g;
    HoldCounts h;
    return next(d, n, md);
  }
  Guard g;
  const auto t0 = now_ns();
  const void* msg = d;
  {
    HoldCounts h;
    if (gpo_sha256_batch(&msg, &n, 1, md) != GPO_OK) return next(d, n, md);
  }
  note(GPO_SHA256, GPO_PATH_OFFLOAD, n, t0);
  return md;
}

__attribute__((visibility("default"))) size_t ZSTD_compress(void* dst, size_t cap, const void* src, size_t n,
                                                            int level) {
  auto next = real(g_zcompress, "ZSTD_compress");
  if (t_inside) return next(dst, cap, src, n, level);
  if (const int path = route(GPO_ZSTD_COMPRESS, n); path != GPO_PATH_OFFLOAD) {
    note(GPO_ZSTD_COMPRESS, path, n);
    Guard g;
    return next(dst, cap, src, n, level);
  }
  Guard g;
  const auto t0 = now_ns();
  size_t out = 0;
  // Any failure (dst too small included) goes to the real call, which
  // returns libzstd's own error code.
  if (gpo_zstd_compress(dst, cap, src, n, level, &out) != GPO_OK) return next(dst, cap, src, n, level);
  note(GPO_ZSTD_COMPRESS, GPO_PATH_OFFLOAD, n, t0);
  return out;
}

__attribute__((visibility("default"))) size_t ZSTD_compressCCtx(ZSTD_CCtx* cctx, void* dst, size_t cap,
                                                                const void* src, size_t n, int level) {
  auto next = real(g_zcompress_cctx, "ZSTD_compressCCtx");
  if (t_inside || !cctx) return next(cctx, dst, cap, src, n, level);
  if (const int path = route(GPO_ZSTD_COMPRESS, n); path != GPO_PATH_OFFLOAD) {
    note(GPO_ZSTD_COMPRESS, path, n);
    Guard g;
    return next(cctx, dst, cap, src, n, level);
  }
  Guard g;
  const auto t0 = now_ns();
  size_t out = 0;
  if (gpo_zstd_compress(dst, cap, src, n, level, &out) != GPO_OK) return next(cctx, dst, cap, src, n, level);
  note(GPO_ZSTD_COMPRESS, GPO_PATH_OFFLOAD, n, t0);
  // ZSTD_compressCCtx resets any advanced parameter of cctx (zstd.h): do the
  // same so the caller's next use of cctx behaves as without the shim.
  ZSTD_CCtx_reset(cctx, ZSTD_reset_session_and_parameters);
  return out;
}

__attribute__((visibility("default"))) int compress2(Bytef* dest, uLongf* dest_len, const Bytef* src, uLong n,
                                                     int level) {
  auto next = real(g_compress2, "compress2");
  if (t_inside) return next(dest, dest_len, src, n, level);
  return shim_compress(dest, dest_len, src, n, level, [&] { return next(dest, dest_len, src, n, level); });
}

// zlib's compress() is compress2() at Z_DEFAULT_COMPRESSION (some builds call
// it through the PLT, and then compress2 above sees it; others inline it).
__attribute__((visibility("default"))) int compress(Bytef* dest, uLongf* dest_len, const Bytef* src, uLong n) {
  auto next = real(g_compress, "compress");
  if (t_inside) return next(dest, dest_len, src, n);
  return shim_compress(dest, dest_len, src, n, Z_DEFAULT_COMPRESSION, [&] { return next(dest, dest_len, src, n); });
}

__attribute__((visibility("default"))) uLong crc32(uLong crc, const Bytef* buf, uInt n) {
  return shim_crc32(real(g_crc32, "crc32"), crc, buf, n);
}

__attribute__((visibility("default"))) uLong crc32_z(uLong crc, const Bytef* buf, z_size_t n) {
  return shim_crc32(real(g_crc32_z, "crc32_z"), crc, buf, n);
}

}  // extern "C"
