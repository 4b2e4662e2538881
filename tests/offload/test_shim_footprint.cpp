// What the shim costs a process that never calls what it offloads: preloaded
// into every process of a session (docs/shim.md), it must not load libcrypto
// or C++'s runtime into a C program, and it must export only the calls it
// interposes, so it never replaces a symbol of the program's own. libcrypto
// is opened at the first crypto job computed in the process.
#include <dlfcn.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <string>
#include <vector>

#include "common/preload.h"
#include "common/proc.h"

using namespace gpo::test;

// cat(1) is C and links neither libcrypto nor libstdc++: its own memory map,
// printed under the shim, shows what the shim brought.
TEST(ShimFootprint, ACProgramGetsNeitherLibcryptoNorTheCxxRuntime) {
  auto r = run_with_env(preload_env(SHIM_PATH, Program::foreign), {"/bin/cat", "/proc/self/maps"}, 60);
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_NE(r.out.find("libgpuoffload-shim.so"), std::string::npos) << "the shim was not loaded:\n" << r.out;
  EXPECT_NE(r.out.find("libgpuoffload.so"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("libcrypto.so"), std::string::npos) << "libcrypto loaded at start:\n" << r.out;
#ifdef GPO_STATIC_CXX
  EXPECT_EQ(r.out.find("libstdc++.so"), std::string::npos) << "libstdc++ loaded at start:\n" << r.out;
#endif
}

// Without an agent, a SHA-256 job is computed in the process with OpenSSL:
// libcrypto appears in the process's map at that call, not before, and the
// digest is OpenSSL's (Python's hashlib, checked after).
TEST(ShimFootprint, LibcryptoIsOpenedAtTheFirstCryptoJob) {
  if (access("/usr/bin/python3", X_OK) != 0) GTEST_SKIP() << "no /usr/bin/python3";
  const std::string script =
      "import ctypes, sys\n"
      "lib = ctypes.CDLL(sys.argv[1])\n"
      "def mapped(): return 'libcrypto.so' in open('/proc/self/maps').read()\n"
      "before = mapped()\n"
      "data = bytes(range(256)) * 4096\n"
      "msgs = (ctypes.c_char_p * 1)(data)\n"
      "lens = (ctypes.c_size_t * 1)(len(data))\n"
      "out = ctypes.create_string_buffer(32)\n"
      "rc = lib.gpo_sha256_batch(msgs, lens, ctypes.c_size_t(1), out)\n"
      "after = mapped()\n"
      "import hashlib\n"
      "print('before', before, 'after', after, 'rc', rc, 'same', out.raw == hashlib.sha256(data).digest())\n";
  std::vector<std::string> env = preload_env(LIBGPUOFFLOAD_PATH, Program::foreign);
  env.push_back("GPO_SOCKET=/nonexistent/gpuoffload-footprint.sock");  // no agent: computed here
  auto r = run_with_env(env, {"/usr/bin/python3", "-I", "-c", script, LIBGPUOFFLOAD_PATH}, 60);
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_NE(r.out.find("before False after True rc 0 same True"), std::string::npos) << r.out;
}

// Only the API (libgpuoffload) and the interposed calls (the shim) are
// exported: no OpenSSL stand-in and no C++ template or runtime symbol. dlsym
// on a handle also searches its dependencies, so a symbol counts as exported
// by a library only where dladdr places it in that library's file.
bool exported_by(void* handle, const char* sym, const char* path) {
  void* p = dlsym(handle, sym);
  Dl_info info{};
  if (!p || !dladdr(p, &info) || !info.dli_fname) return false;
  std::error_code ec;
  return std::filesystem::equivalent(info.dli_fname, path, ec);
}

TEST(ShimFootprint, ExportsOnlyTheApiAndTheInterposedCalls) {
  void* lib = dlopen(LIBGPUOFFLOAD_PATH, RTLD_NOW | RTLD_LOCAL);
  ASSERT_NE(lib, nullptr) << dlerror();
  EXPECT_TRUE(exported_by(lib, "gpo_sha256_batch", LIBGPUOFFLOAD_PATH));
  for (const char* s : {"EVP_MD_fetch", "EVP_CipherUpdate", "OPENSSL_cleanse", "_Znwm", "__cxa_throw"})
    EXPECT_FALSE(exported_by(lib, s, LIBGPUOFFLOAD_PATH)) << s << " is exported by libgpuoffload";
  void* shim = dlopen(SHIM_PATH, RTLD_NOW | RTLD_LOCAL);
  ASSERT_NE(shim, nullptr) << dlerror();
  for (const char* s : {"ZSTD_compress", "crc32", "SHA256"}) EXPECT_TRUE(exported_by(shim, s, SHIM_PATH)) << s;
  for (const char* s : {"_ZNSt6vectorIhSaIhEE6resizeEm", "_Znwm", "__cxa_throw", "gpo_sha256_batch"})
    EXPECT_FALSE(exported_by(shim, s, SHIM_PATH)) << s << " is exported by the shim";
  dlclose(shim);
  dlclose(lib);
}
