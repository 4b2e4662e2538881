// libgpuoffload, loaded at the first call that needs it rather than with the
// provider (lazy_lib.h).
//
// OpenSSL loads the provider into every process its configuration names (all
// of them under `exec`, or with a system-wide configuration), and most make
// no update large enough to leave the process: they never call into
// libgpuoffload, and loading it with the provider cost each about 0.07 ms.
// These definitions stand in for the calls the provider makes; an update
// under the offload size never reaches them (route() answers first), and
// accounting() says whether the process counts its calls at all.
#include <stdint.h>

#include <cstdlib>
#include <string>

#include "gpuoffload.h"
#include "lazy_lib.h"
#include "provider/provider.h"

namespace {

constexpr char kLibgpuoffload[] = "libgpuoffload.so.0";

// By its soname first: the provider's run path, the loader's cache. A
// sanitizer's dlopen interceptor makes itself the caller, whose run path is
// not the provider's: then from the provider's parent folder (the build
// tree: lib/ossl-modules/ next to lib/) or the install's library folder.
void* libgpuoffload() {
  static void* const h = [] {
    if (void* l = dlopen(kLibgpuoffload, RTLD_NOW | RTLD_LOCAL)) return l;
    Dl_info self{};
    if (dladdr(reinterpret_cast<void*>(&libgpuoffload), &self) && self.dli_fname) {
      const std::string path = self.dli_fname;
      const size_t slash = path.rfind('/');
      if (slash != std::string::npos)
        if (void* l = dlopen((path.substr(0, slash) + "/../" + kLibgpuoffload).c_str(), RTLD_NOW | RTLD_LOCAL))
          return l;
    }
    return dlopen(GPO_INSTALL_LIBDIR "/libgpuoffload.so.0", RTLD_NOW | RTLD_LOCAL);
  }();
  return h;
}

}  // namespace

// Without the library nothing leaves the process: no range, and every path
// is the CPU's for want of an agent.
extern "C" void gpo_offload_range(int op, size_t* min_bytes, size_t* max_bytes) {
  static auto* const f = gpo::lazy::resolve<decltype(gpo_offload_range)>(libgpuoffload(), "gpo_offload_range");
  if (f) return f(op, min_bytes, max_bytes);
  *min_bytes = SIZE_MAX;
  *max_bytes = 0;
}
GPO_LAZY(libgpuoffload, int, gpo_offload_reason, (int op), (op), GPO_PATH_CPU_NO_AGENT)
GPO_LAZY(libgpuoffload, int, gpo_run, (const gpo_request* r, size_t* out_len), (r, out_len), GPO_ERR_NOMEM)
GPO_LAZY(libgpuoffload, int, gpo_submit, (const gpo_request* r, gpo_handle** h), (r, h), GPO_ERR_NOMEM)
GPO_LAZY(libgpuoffload, int, gpo_wait, (gpo_handle * h, size_t* out_len), (h, out_len), GPO_ERR_NOMEM)
GPO_LAZY(libgpuoffload, void, gpo_account, (int op, int path, uint64_t calls, uint64_t bytes, uint64_t ns),
         (op, path, calls, bytes, ns), )

bool gpo::provider::accounting() {
  // Someone reads the counts: `exec` (GPO_STATS_DIR; secure_getenv, as the
  // library writes them). Asked once, at the provider's start (g_counting):
  // never per call, and never of the loader (a dlopen with RTLD_NOLOAD of a
  // library not loaded searches the file system, which once made a small
  // digest ten times slower).
  const char* d = secure_getenv("GPO_STATS_DIR");
  return d && *d;
}
