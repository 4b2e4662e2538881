// The CPU reference for zstd: libzstd one-shot calls, one context per thread.
#include <zstd.h>

#include <memory>

#include "zstd/zstd.h"

namespace gpo::zstd {

size_t bound(size_t n) { return ZSTD_compressBound(n); }

size_t cpu_compress(std::span<const uint8_t> in, std::span<uint8_t> out, int level, bool* error) {
  struct Free {
    void operator()(ZSTD_CCtx* c) const { ZSTD_freeCCtx(c); }
  };
  // A context per thread: ZSTD_compressCCtx gives the same frame as
  // ZSTD_compress without allocating the context per call.
  thread_local std::unique_ptr<ZSTD_CCtx, Free> ctx{ZSTD_createCCtx()};
  *error = false;
  size_t r = ctx ? ZSTD_compressCCtx(ctx.get(), out.data(), out.size(), in.data(), in.size(), level)
                 : ZSTD_compress(out.data(), out.size(), in.data(), in.size(), level);
  if (ZSTD_isError(r)) {
    *error = true;
    return 0;
  }
  return r;
}

size_t cpu_decompress(std::span<const uint8_t> in, std::span<uint8_t> out, bool* error) {
  struct Free {
    void operator()(ZSTD_DCtx* c) const { ZSTD_freeDCtx(c); }
  };
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
