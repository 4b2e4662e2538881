// Stand-ins for a library's functions, defined inside libgpuoffload and kept
// local by its version script: the first call opens the library by its
// soname (the program's own copy when it has one) and forwards. So the
// library is not loaded with libgpuoffload into every process that loads it
// (lazy_crypto.cpp: libcrypto; lazy_compress.cpp: libzstd and zlib).
#pragma once
#include <dlfcn.h>

namespace gpo::lazy {

// The handle of soname, opened once; null when it cannot be.
template <const char* Soname>
void* library() {
  static void* const h = dlopen(Soname, RTLD_NOW | RTLD_LOCAL);
  return h;
}

template <typename F>
F* resolve(void* lib, const char* name) {
  return lib ? reinterpret_cast<F*>(dlsym(lib, name)) : nullptr;
}

}  // namespace gpo::lazy

// Defines name, forwarding to the function of that name in lib() resolved
// once; `fail` is what it returns when the library or the function is
// missing (nothing, for functions without a result).
#define GPO_LAZY(lib, ret, name, params, args, fail)                      \
  extern "C" ret name params {                                            \
    static auto* const f = gpo::lazy::resolve<decltype(name)>(lib(), #name); \
    if (!f) return fail;                                                  \
    return f args;                                                        \
  }
