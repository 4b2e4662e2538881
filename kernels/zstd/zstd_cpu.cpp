// The CPU reference for zstd: libzstd one-shot calls, one context per thread.
#include <zstd.h>

#include <memory>

#include "kernels/zstd/zstd.h"

namespace gpo::zstd {
namespace {

struct FreeCCtx {
  void operator()(ZSTD_CCtx* c) const { ZSTD_freeCCtx(c); }
};

// A context per thread: ZSTD_compressCCtx gives the same frame as
// ZSTD_compress without allocating the context per call.
std::unique_ptr<ZSTD_CCtx, FreeCCtx>& thread_cctx() {
  thread_local std::unique_ptr<ZSTD_CCtx, FreeCCtx> ctx{ZSTD_createCCtx()};
  return ctx;
}

}  // namespace

size_t bound(size_t n) { return ZSTD_compressBound(n); }

size_t cpu_compress(std::span<const uint8_t> in, std::span<uint8_t> out, int level, bool* error) {
  auto& ctx = thread_cctx();
  *error = false;
  size_t r = ctx ? ZSTD_compressCCtx(ctx.get(), out.data(), out.size(), in.data(), in.size(), level)
                 : ZSTD_compress(out.data(), out.size(), in.data(), in.size(), level);
  // A context keeps the tables of the largest job it ran (hundreds of MB at
  // the highest levels on large inputs): above kKeepContextBytes the thread's
  // next job starts with a fresh one.
  if (ctx && ZSTD_sizeof_CCtx(ctx.get()) > kKeepContextBytes) ctx.reset(ZSTD_createCCtx());
  if (ZSTD_isError(r)) {
    *error = true;
    return 0;
  }
  return r;
}

size_t cpu_context_bytes() {
  const auto& ctx = thread_cctx();
  return ctx ? ZSTD_sizeof_CCtx(ctx.get()) : 0;
}

size_t cpu_decompress(std::span<const uint8_t> in, std::span<uint8_t> out, bool* error) {
  struct Free {
    void operator()(ZSTD_DCtx* c) const { ZSTD_freeDCtx(c); }
  };
  // One-shot decompression writes straight into out: the context holds no
  // window (a few hundred KB whatever the frame says).
  thread_local std::unique_ptr<ZSTD_DCtx, Free> ctx{ZSTD_createDCtx()};
  *error = false;
  size_t r = ctx ? ZSTD_decompressDCtx(ctx.get(), out.data(), out.size(), in.data(), in.size())
                 : ZSTD_decompress(out.data(), out.size(), in.data(), in.size());
  if (ZSTD_isError(r)) {
    *error = true;
    return 0;
  }
  return r;
}

}  // namespace gpo::zstd
