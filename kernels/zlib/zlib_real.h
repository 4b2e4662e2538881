// zlib's own definitions, looked up in libz.so.1 itself (dlopen + dlsym on its
// handle) rather than through the global symbol scope. A process running with
// the LD_PRELOAD shim (libgpuoffload-shim.so interposes compress2, crc32 and
// crc32_z) still reaches the real zlib here: the agent's CPU backend and the
// client's in-process fallback never loop back through the shim, whatever the
// environment of the process (docs/shim.md, "The shim and zlib").
#pragma once
#include <zlib.h>

namespace gpo::zlib_real {

struct Fns {
  decltype(&::crc32_z) crc32_z;
  decltype(&::compress2) compress2;
  decltype(&::compressBound) compress_bound;
};

// Resolved once, thread-safe. Falls back to the link-time symbols when libz.so.1
// cannot be opened by name (a static zlib).
const Fns& fns();

}  // namespace gpo::zlib_real
