// What the shim costs a process that never calls what it offloads: preloaded
// into every process of a session (docs/shim.md), its front brings nothing
// but itself (no libzstd, zlib, libcrypto, C++ runtime, nor its core) until
// a call needs the core, and it exports only the calls it interposes, so it
// never replaces a symbol of the program's own. libcrypto is opened at the
// first crypto job computed in the process.
#include <dlfcn.h>
#include <gtest/gtest.h>
#include <unistd.h>
#include <zlib.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "common/files.h"
#include "common/preload.h"
#include "common/proc.h"

using namespace gpo::test;
namespace fs = std::filesystem;

// A fresh folder for one test, removed with it (an early ASSERT included).
struct ScratchDir {
  fs::path path;
  explicit ScratchDir(const std::string& name)
      : path(fs::temp_directory_path() / (name + "-" + std::to_string(getpid()))) {
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~ScratchDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

// The text of every report a run left in dir (GPO_STATS_DIR), one per process.
// The files of one kind in dir: ".json" the reports written at exit,
// ".counts" the counts files mapped while a process runs (both only from
// processes that counted a call; a report removes its counts file).
std::vector<std::string> reports_in(const fs::path& dir, const char* ext = ".json") {
  std::vector<std::string> texts;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().extension() == ext) texts.push_back(read_file(e.path().string()));
  return texts;
}

// cat(1) is C and links none of libcrypto, libstdc++, libzstd and zlib: its
// own memory map, printed under the shim, shows what the shim brought.
TEST(ShimFootprint, AProgramThatMakesNoCallMapsOnlyTheFront) {
  auto r = run_with_env(preload_env(SHIM_PATH, Program::foreign), {"/bin/cat", "/proc/self/maps"}, 60);
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_NE(r.out.find("libgpuoffload-shim.so"), std::string::npos) << "the shim was not loaded:\n" << r.out;
  for (const char* lib : {"libgpuoffload-shim-core.so", "libgpuoffload.so", "libcrypto.so", "libzstd.so", "libz.so"})
    EXPECT_EQ(r.out.find(lib), std::string::npos) << lib << " loaded at start:\n" << r.out;
#ifdef GPO_STATIC_CXX
  EXPECT_EQ(r.out.find("libstdc++.so"), std::string::npos) << "libstdc++ loaded at start:\n" << r.out;
#endif
}

// Python's zlib module (an extension that links libz.so.1) calls crc32
// through the shim: a call below the threshold stays with zlib and leaves
// the core closed; the first call at the threshold opens it (no agent: the
// library computes it in the process). Both crcs are zlib's.
const char* kCrcScript =
    "import zlib\n"
    "def core(): return 'libgpuoffload-shim-core.so' in open('/proc/self/maps').read()\n"
    "small = zlib.crc32(b'x' * 100)\n"
    "print('small', small, core())\n"
    "big = zlib.crc32(bytes(range(256)) * 4096)\n"
    "print('big', big, core())\n";

std::string crc_of(const std::string& bytes) {
  return std::to_string(::crc32(0, reinterpret_cast<const Bytef*>(bytes.data()), uInt(bytes.size())));
}

std::string pattern_1m() {
  std::string s;
  for (int i = 0; i < 4096; ++i)
    for (int b = 0; b < 256; ++b) s += char(b);
  return s;
}

TEST(ShimFootprint, TheCoreOpensAtTheFirstCallAtTheThreshold) {
  if (access("/usr/bin/python3", X_OK) != 0) GTEST_SKIP() << "no /usr/bin/python3";
  std::vector<std::string> env = preload_env(SHIM_PATH, Program::foreign);
  env.push_back("GPO_SOCKET=/nonexistent/gpuoffload-footprint.sock");
  auto r = run_with_env(env, {"/usr/bin/python3", "-I", "-c", kCrcScript}, 60);
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_NE(r.out.find("small " + crc_of(std::string(100, 'x')) + " False"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("big " + crc_of(pattern_1m()) + " True"), std::string::npos) << r.out;
}

// Once the core is open, a one-shot call below the threshold still goes
// from the front straight to the program's zlib: it never enters the core
// (which would cost such a call several times zlib's own time), so nothing
// counts it. libgpuoffload's counts, read in the process, show the large call
// alone; the small crcs are zlib's.
TEST(ShimFootprint, AnOpenCoreLeavesSmallOneShotCallsToTheProgramsLibrary) {
  if (access("/usr/bin/python3", X_OK) != 0) GTEST_SKIP() << "no /usr/bin/python3";
  const ScratchDir dir("gpo-open-core");
  const std::string counts = (dir.path / "counts.json").string();
  std::vector<std::string> env = preload_env(SHIM_PATH, Program::foreign);
  env.push_back("GPO_SOCKET=/nonexistent/gpuoffload-footprint.sock");
  const char* script =
      "import ctypes, os, sys, zlib\n"
      "big = zlib.crc32(bytes(range(256)) * 4096)\n"
      "small = [zlib.crc32(b'x' * 100) for _ in range(1000)]\n"
      "lib = ctypes.CDLL('libgpuoffload.so.0', mode=os.RTLD_NOLOAD)\n"
      "print('written', lib.gpo_stats_write(sys.argv[1].encode()))\n"
      "print('big', big, 'small', len(set(small)), small[0])\n";
  auto r = run_with_env(env, {"/usr/bin/python3", "-I", "-c", script, counts}, 60);
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_NE(r.out.find("written 0"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("big " + crc_of(pattern_1m()) + " small 1 " + crc_of(std::string(100, 'x'))),
            std::string::npos)
      << r.out;
  const std::string text = read_file(counts);
  EXPECT_NE(text.find("\"op\": \"crc32\", \"path\": \"cpu-no-agent\", \"calls\": 1, \"bytes\": 1048576"),
            std::string::npos)
      << text;
  EXPECT_EQ(text.find("cpu-small"), std::string::npos) << "small calls entered the core:\n" << text;
}

// A front whose core is missing (a broken install) says so once and leaves
// every call, large ones included, with the program's own libraries.
TEST(ShimFootprint, AMissingCoreLeavesEveryCallWithTheProgramsLibraries) {
  if (access("/usr/bin/python3", X_OK) != 0) GTEST_SKIP() << "no /usr/bin/python3";
  const ScratchDir dir("gpo-lone-front");
  const fs::path front = dir.path / "libgpuoffload-shim.so";
  fs::copy_file(SHIM_PATH, front);
  auto r = run_with_env(preload_env(front.string(), Program::foreign),
                        {"/usr/bin/python3", "-I", "-c", std::string(kCrcScript) + "zlib.crc32(b'y' * 100000)\n"}, 60);
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_NE(r.out.find("big " + crc_of(pattern_1m()) + " False"), std::string::npos) << r.out;
  const std::string warning = "cannot open libgpuoffload-shim-core.so";
  const size_t at = r.out.find(warning);
  EXPECT_NE(at, std::string::npos) << r.out;
  EXPECT_EQ(r.out.find(warning, at + 1), std::string::npos) << "said more than once:\n" << r.out;
}

// A crc32 of a few bytes is folded by the front itself, with zlib's table:
// crc32() and crc32_z() of 0 to 40 bytes, from initial values that include
// bits above 32 (which zlib ignores), give what zlib gives. Under exec those
// calls are still counted.
TEST(ShimFootprint, TinyCrcsAreZlibsAndStillCounted) {
  if (access("/usr/bin/python3", X_OK) != 0) GTEST_SKIP() << "no /usr/bin/python3";
  const ScratchDir dir("gpo-tiny-crc");
  const char* script =
      "import ctypes\n"
      "lib = ctypes.CDLL(None)\n"  // the global scope: the shim's definitions come first
      "for f in (lib.crc32, lib.crc32_z):\n"
      "    f.restype = ctypes.c_ulong\n"
      "    f.argtypes = [ctypes.c_ulong, ctypes.c_char_p, ctypes.c_size_t]\n"
      "data = bytes((i * 37 + 11) % 256 for i in range(40))\n"
      "for init in (0, 1, 0xffffffff, 0x123456789):\n"
      "    for n in range(41):\n"
      "        print('crc', init, n, lib.crc32(init, data, n), lib.crc32_z(init, data, n))\n";
  std::string want;
  std::string data;
  for (int i = 0; i < 40; ++i) data += char((i * 37 + 11) % 256);
  for (unsigned long long init : {0ull, 1ull, 0xffffffffull, 0x123456789ull})
    for (size_t n = 0; n <= 40; ++n) {
      const uLong c = ::crc32(uLong(init), reinterpret_cast<const Bytef*>(data.data()), uInt(n));
      want += "crc " + std::to_string(init) + " " + std::to_string(n) + " " + std::to_string(c) + " " +
              std::to_string(c) + "\n";
    }
  std::vector<std::string> env = preload_env(SHIM_PATH, Program::foreign);
  env.push_back("GPO_SOCKET=/nonexistent/gpuoffload-footprint.sock");
  auto r = run_with_env(env, {"/usr/bin/python3", "-I", "-c", script}, 60);
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_EQ(r.out, want);

  env.push_back("GPO_STATS_DIR=" + dir.path.string());
  r = run_with_env(env, {"/usr/bin/python3", "-I", "-c", "import zlib\nprint(zlib.crc32(b'x'))\n"}, 60);
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_EQ(r.out, crc_of("x") + "\n");
  const std::vector<std::string> reports = reports_in(dir.path);
  ASSERT_EQ(reports.size(), 1u);
  EXPECT_NE(reports[0].find("\"op\": \"crc32\", \"path\": \"cpu-small\", \"calls\": 1, \"bytes\": 1,"),
            std::string::npos)
      << reports[0];
}

// Under `gpuoffload-agent exec` (GPO_STATS_DIR) every call is counted, small
// ones included, so the first call of any size opens the core, and the
// process reports it at exit. A process that made no call reports nothing.
TEST(ShimFootprint, AccountingOpensTheCoreAtAnyCallAndOnlyCallersReport) {
  if (access("/usr/bin/python3", X_OK) != 0) GTEST_SKIP() << "no /usr/bin/python3";
  const ScratchDir dir("gpo-footprint");
  std::vector<std::string> env = preload_env(SHIM_PATH, Program::foreign);
  env.push_back("GPO_SOCKET=/nonexistent/gpuoffload-footprint.sock");
  env.push_back("GPO_STATS_DIR=" + dir.path.string());
  auto r = run_with_env(env, {"/usr/bin/python3", "-I", "-c", kCrcScript}, 60);
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_NE(r.out.find("small " + crc_of(std::string(100, 'x')) + " True"), std::string::npos) << r.out;
  // No call: neither the shim's front nor libgpuoffload itself writes a report.
  ASSERT_EQ(run_with_env(env, {"/bin/cat", "/dev/null"}, 60).exit_code, 0);
  std::vector<std::string> lib_env = preload_env(LIBGPUOFFLOAD_PATH, Program::foreign);
  lib_env.push_back("GPO_STATS_DIR=" + dir.path.string());
  ASSERT_EQ(run_with_env(lib_env, {"/bin/cat", "/dev/null"}, 60).exit_code, 0);
  const std::vector<std::string> reports = reports_in(dir.path);
  ASSERT_EQ(reports.size(), 1u) << "one report expected, from python3 alone";
  EXPECT_EQ(reports_in(dir.path, ".counts").size(), 0u) << "a counts file outlived the report that replaces it";
  EXPECT_NE(reports[0].find("\"op\": \"crc32\", \"path\": \"cpu-small\", \"calls\": 1, \"bytes\": 100"),
            std::string::npos)
      << reports[0];
}

// The OpenSSL provider is loaded into every OpenSSL process under `exec`:
// loading it brings neither libstdc++ nor libgcc_s, nor libzstd through
// libgpuoffload (python3 links none of them; it does link zlib).
TEST(ShimFootprint, TheProviderBringsNoCxxRuntime) {
#ifndef GPO_STATIC_CXX
  GTEST_SKIP() << "sanitizer build: the libraries use the shared C++ runtime";
#endif
  if (access("/usr/bin/python3", X_OK) != 0) GTEST_SKIP() << "no /usr/bin/python3";
  const std::string script =
      "import ctypes, sys\n"
      "ctypes.CDLL(sys.argv[1])\n"
      "maps = open('/proc/self/maps').read()\n"
      "print('module', 'ossl-modules/gpuoffload.so' in maps, 'stdc++', 'libstdc++.so' in maps,\n"
      "      'gcc_s', 'libgcc_s.so' in maps, 'zstd', 'libzstd.so' in maps)\n";
  auto r = run_with_env({}, {"/usr/bin/python3", "-I", "-c", script, PROVIDER_PATH}, 60);
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_NE(r.out.find("module True stdc++ False gcc_s False zstd False"), std::string::npos) << r.out;
}

// An OpenSSL process with the provider configured (Python's hashlib through
// OpenSSL's EVP, the provider preferred): a small digest is the provider's
// but leaves libgpuoffload unloaded; with GPO_STATS_DIR (exec) the call is
// counted, which loads it, and reported at exit.
TEST(ShimFootprint, TheProviderOpensLibgpuoffloadOnlyToOffloadOrToCount) {
  if (access("/usr/bin/python3", X_OK) != 0) GTEST_SKIP() << "no /usr/bin/python3";
  const ScratchDir dir("gpo-provider-footprint");
  fs::create_directories(dir.path / "stats");
  const fs::path conf = dir.path / "openssl.cnf";
  std::ofstream(conf) << "openssl_conf = init\n[init]\nproviders = provs\nalg_section = algs\n"
                      << "[provs]\ndefault = def\ngpuoffload = gpo\n[def]\nactivate = 1\n"
                      << "[gpo]\nmodule = " << PROVIDER_PATH << "\nactivate = 1\n"
                      << "[algs]\ndefault_properties = ?provider=gpuoffload\n";
  const std::string script =
      "import hashlib\n"
      "maps = lambda: open('/proc/self/maps').read()\n"
      "hashlib.sha256(b'x' * 1000).digest()\n"
      "print('module', 'ossl-modules/gpuoffload.so' in maps(), 'library', 'libgpuoffload.so' in maps())\n";
  // Nothing preloaded (the sanitizer's runtime only, in a sanitizer build).
  std::vector<std::string> env = preload_env("", Program::foreign);
  env.push_back("OPENSSL_CONF=" + conf.string());
  env.push_back("GPO_SOCKET=/nonexistent/gpuoffload-footprint.sock");
  auto r = run_with_env(env, {"/usr/bin/python3", "-I", "-c", script}, 60);
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_NE(r.out.find("module True library False"), std::string::npos) << r.out;
  // Nor does the provider look for it, digest after digest (a search of the
  // file system each time made a small digest ten times slower). The
  // loader's log names every library it is asked to find.
  {
    std::vector<std::string> traced = env;
    traced.push_back("LD_DEBUG=libs");
    const std::string many = "import hashlib\nfor i in range(200): hashlib.sha256(b'x' * i).digest()\nprint('ok')\n";
    auto t = run_with_env(traced, {"/usr/bin/python3", "-I", "-c", many}, 60);
    ASSERT_EQ(t.exit_code, 0) << t.out;
    EXPECT_NE(t.out.find("ok"), std::string::npos) << t.out;
    EXPECT_NE(t.out.find("ossl-modules/gpuoffload.so"), std::string::npos) << "the module was not loaded";
    EXPECT_EQ(t.out.find("find library=libgpuoffload"), std::string::npos)
        << "the provider searched for libgpuoffload while counting nothing";
  }
  env.push_back("GPO_STATS_DIR=" + (dir.path / "stats").string());
  r = run_with_env(env, {"/usr/bin/python3", "-I", "-c", script}, 60);
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_NE(r.out.find("module True library True"), std::string::npos) << r.out;
  std::string report;
  for (const std::string& text : reports_in(dir.path / "stats")) report += text;
  EXPECT_NE(report.find("\"op\": \"sha256\", \"path\": \"cpu-small\", \"calls\": 1, \"bytes\": 1000"),
            std::string::npos)
      << report;
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
  for (const char* s : {"ZSTD_compress", "ZSTD_compressStream2", "crc32", "SHA256", "_exit", "gpo_shim_front_on_exit"})
    EXPECT_TRUE(exported_by(shim, s, SHIM_PATH)) << s;
  for (const char* s : {"_ZNSt6vectorIhSaIhEE6resizeEm", "_Znwm", "__cxa_throw", "gpo_sha256_batch",
                        "gpo_shim_core_attach", "ZSTD_isError"})
    EXPECT_FALSE(exported_by(shim, s, SHIM_PATH)) << s << " is exported by the shim";
  dlclose(shim);
  dlclose(lib);
}
