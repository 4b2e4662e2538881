// The CPU reference for zlib compress: compress2() of the real zlib.
#include "kernels/zlib/zlib.h"

#include "kernels/zlib/zlib_real.h"

namespace gpo::deflate {

size_t bound(size_t n) { return zlib_real::fns().compress_bound(uLong(n)); }

Result cpu_compress(std::span<const uint8_t> in, std::span<uint8_t> out, int level, size_t* out_len) {
  uLongf len = uLongf(out.size());
  static const Bytef empty = 0;  // zlib wants a pointer even for no bytes
  const int rc = zlib_real::fns().compress2(out.empty() ? const_cast<Bytef*>(&empty) : out.data(), &len,
                                            in.empty() ? &empty : in.data(), uLong(in.size()), level);
  *out_len = rc == Z_OK ? size_t(len) : 0;
  if (rc == Z_OK) return Result::ok;
  return rc == Z_BUF_ERROR ? Result::dst_too_small : Result::invalid;
}

}  // namespace gpo::deflate
