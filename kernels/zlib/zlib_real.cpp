#include "kernels/zlib/zlib_real.h"

#include <dlfcn.h>

namespace gpo::zlib_real {

const Fns& fns() {
  static const Fns f = [] {
    Fns r{&::crc32_z, &::compress2, &::compressBound};
    void* h = dlopen("libz.so.1", RTLD_NOW | RTLD_NOLOAD);
    if (!h) h = dlopen("libz.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!h) return r;
    // dlsym on libz's handle searches libz and its dependencies only: an
    // interposer loaded before it (LD_PRELOAD) is not among them.
    if (auto* p = dlsym(h, "crc32_z")) r.crc32_z = reinterpret_cast<decltype(r.crc32_z)>(p);
    if (auto* p = dlsym(h, "compress2")) r.compress2 = reinterpret_cast<decltype(r.compress2)>(p);
    if (auto* p = dlsym(h, "compressBound")) r.compress_bound = reinterpret_cast<decltype(r.compress_bound)>(p);
    return r;  // the handle stays open for the life of the process
  }();
  return f;
}

}  // namespace gpo::zlib_real
