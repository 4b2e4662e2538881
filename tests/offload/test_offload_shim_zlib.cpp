// Real programs that call zlib's compress2() / crc32(), run with and without
// LD_PRELOAD=libgpuoffload-shim.so against the agent component (in-process,
// CPU backend): the same bytes out, and the agent served jobs (so the calls
// really went through the shim). The tools, and why they call zlib:
//   python3 -c zlib.crc32(...)       -> crc32() (CPython's zlib module)
//   git archive --format=zip -0      -> crc32() over each file's content
//   llvm-objcopy --compress-debug-sections=zlib -> compress2() per section (libLLVM)
// Each test skips, saying which tool is missing, when it is not installed.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include <chrono>

#include <fstream>
#include <sstream>

#include "common/files.h"
#include "common/preload.h"
#include "common/proc.h"
#include "gpuoffload.h"
#include "offload/offload_env.h"

using namespace gpo::test;

namespace {

// llvm-objcopy leaves the ch_reserved word of each compressed section's
// Elf64_Chdr uninitialized (two plain runs differ there): zero it before
// comparing. Everything else, the zlib streams included, must be identical.
std::string mask_chdr_reserved(std::string b) {
  auto rd = [&](size_t off, size_t n) {
    uint64_t v = 0;
    for (size_t i = 0; i < n && off + i < b.size(); ++i) v |= uint64_t(uint8_t(b[off + i])) << (8 * i);
    return v;
  };
  if (b.size() < 64 || b.compare(0, 4, "\x7f" "ELF") != 0 || b[4] != 2) return b;
  const uint64_t shoff = rd(0x28, 8), shentsize = rd(0x3a, 2), shnum = rd(0x3c, 2);
  for (uint64_t i = 0; i < shnum; ++i) {
    const uint64_t sh = shoff + i * shentsize;
    if (sh + 64 > b.size()) break;
    const uint64_t flags = rd(sh + 8, 8), off = rd(sh + 24, 8);
    if ((flags & 0x800) && off + 8 <= b.size())  // SHF_COMPRESSED
      for (int k = 4; k < 8; ++k) b[off + k] = 0;
  }
  return b;
}

class ShimZlib : public ::testing::Test {
 protected:
  void SetUp() override {
    gpo::ipc::ServerOptions o;
    o.socket_path = unique_socket("shimz");
    o.uprobe_doorbell = false;
    agent_ = std::make_unique<InProcessAgent>(o);
    dir_ = "/tmp/gpo-shimz-" + std::to_string(getpid());
    ASSERT_EQ(run_proc({"/bin/mkdir", "-p", dir_}, 10).exit_code, 0);
  }
  void TearDown() override {
    if (!dir_.empty()) run_proc({"/bin/rm", "-rf", dir_}, 30);
  }
  // Runs argv plain and under the shim; {OUT} in argv is replaced by a path
  // per run, whose contents must match too. Returns the jobs the agent did.
  uint64_t same_with_and_without_shim(const std::vector<std::string>& argv, const std::vector<std::string>& env = {},
                                      std::string (*mask)(std::string) = nullptr) {
    auto subst = [&](const std::string& out) {
      std::vector<std::string> a = argv;
      for (auto& s : a)
        if (auto at = s.find("{OUT}"); at != std::string::npos) s.replace(at, 5, out);
      return a;
    };
    const std::string out_plain = dir_ + "/plain.out", out_shim = dir_ + "/shim.out";
    auto plain = run_with_env(env, subst(out_plain), 120);
    EXPECT_EQ(plain.exit_code, 0) << plain.out;
    const uint64_t before = agent_->server().stats().jobs_done;
    std::vector<std::string> e = env;
    for (auto& p : gpo::test::preload_env(SHIM_PATH, gpo::test::Program::foreign)) e.push_back(p);
    e.push_back("GPO_SOCKET=" + agent_->socket());
    e.push_back("GPO_TIMEOUT_MS=20000");
    e.push_back("GPO_SHIM_MIN_BYTES=16384");
    auto shim = run_with_env(e, subst(out_shim), 120);
    EXPECT_EQ(shim.exit_code, 0) << shim.out;
    EXPECT_EQ(shim.out, plain.out) << "the shim changed the program's output";
    std::string got = read_file(out_shim), want = read_file(out_plain);
    if (mask) got = mask(got), want = mask(want);
    EXPECT_TRUE(got == want) << "the shim changed the file the program wrote (" << got.size() << " vs " << want.size()
                             << " bytes)";
    return agent_->server().stats().jobs_done - before;
  }
  std::unique_ptr<InProcessAgent> agent_;
  std::string dir_;
};

TEST_F(ShimZlib, Python3ZlibCrc32) {
  if (access("/usr/bin/python3", X_OK) != 0) GTEST_SKIP() << "no /usr/bin/python3";
  write_file(dir_ + "/in.bin", random_bytes((size_t{2} << 20) + 5, 11));
  // -I: isolated (no user site, no PYTHON* environment).
  uint64_t jobs = same_with_and_without_shim(
      {"/usr/bin/python3", "-I", "-c",
       "import zlib,sys\n"
       "d=open(sys.argv[1],'rb').read()\n"
       "print(hex(zlib.crc32(d)), hex(zlib.crc32(d[7:], 0x12345678)), hex(zlib.crc32(d[:100])))\n"
       "open(sys.argv[2],'w').write(str(zlib.crc32(d[:1<<20], zlib.crc32(d[1<<20:]))))\n",
       dir_ + "/in.bin", "{OUT}"});
  EXPECT_GE(jobs, 3u) << "python3's zlib.crc32 did not go through the shim";
}

TEST_F(ShimZlib, GitArchiveZipCrc32) {
  if (access("/usr/bin/git", X_OK) != 0) GTEST_SKIP() << "no /usr/bin/git";
  const std::string repo = dir_ + "/repo";
  write_file(dir_ + "/blob", random_bytes(size_t{3} << 20, 12));
  ASSERT_EQ(run_proc({"/bin/mkdir", "-p", repo}, 10).exit_code, 0);
  write_file(repo + "/big.bin", random_bytes((size_t{1} << 20) + 3, 13));
  write_file(repo + "/text.txt", text_bytes(300000, 14));
  write_file(repo + "/small.txt", text_bytes(100, 15));
  const std::vector<std::string> id{"GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.org",
                                    "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.org",
                                    "GIT_AUTHOR_DATE=2026-11-25T12:00:00Z", "GIT_COMMITTER_DATE=2026-11-25T12:00:00Z",
                                    "HOME=" + dir_};
  ASSERT_EQ(run_with_env(id, {"/usr/bin/git", "-C", repo, "init", "-q"}, 120).exit_code, 0);
  ASSERT_EQ(run_with_env(id, {"/usr/bin/git", "-C", repo, "add", "."}, 120).exit_code, 0);
  auto c = run_with_env(id, {"/usr/bin/git", "-C", repo, "commit", "-q", "-m", "x"}, 120);
  ASSERT_EQ(c.exit_code, 0) << c.out;
  uint64_t jobs = same_with_and_without_shim(
      {"/usr/bin/git", "-C", repo, "archive", "--format=zip", "-0", "-o", "{OUT}", "HEAD"}, id);
  EXPECT_GE(jobs, 2u) << "git archive's crc32 calls did not go through the shim";
}

TEST_F(ShimZlib, LlvmObjcopyCompressDebugSectionsCompress2) {
  std::string objcopy;
  for (const char* p : {"/usr/bin/llvm-objcopy", "/usr/bin/llvm-objcopy-15", "/usr/bin/llvm-objcopy-14"})
    if (access(p, X_OK) == 0) {
      objcopy = p;
      break;
    }
  if (objcopy.empty()) GTEST_SKIP() << "no llvm-objcopy";
  // A binary of this build with debug sections (RelWithDebInfo).
  const std::string in = self_dir() + "/gpo_shim_workload";
  uint64_t jobs =
      same_with_and_without_shim({objcopy, "--compress-debug-sections=zlib", in, "{OUT}"}, {}, mask_chdr_reserved);
  if (jobs == 0) {
    auto s = run_proc({objcopy, "--version"}, 10);
    FAIL() << "no compress2 call reached the agent (" << s.out.substr(0, 60)
           << "; debug sections under 16 KiB, or libLLVM without zlib?)";
  }
}

// The agent itself under the shim, pointed at its own socket: its CPU backend
// calls zlib through libz's own handle (kernels/zlib/zlib_real.h), so it
// never sends itself a job. Were it to go through the shim, each job would
// wait for the agent's own (busy) backend until the inner client's timeout
// (3 s here) before computing locally.
TEST(ShimZlibAgent, AgentUnderTheShimNeverSendsItselfJobs) {
  const std::string sock = unique_socket("shimself");
  pid_t pid = fork();
  if (pid == 0) {
    int fd = open("/dev/null", O_WRONLY);
    dup2(fd, 2);
    setenv("LD_PRELOAD", SHIM_PATH, 1);
    setenv("GPO_SOCKET", sock.c_str(), 1);
    setenv("GPO_SHIM_MIN_BYTES", "1024", 1);
    setenv("GPO_TIMEOUT_MS", "3000", 1);
    execl(AGENT_BIN, AGENT_BIN, "run", "--offload-socket", sock.c_str(), "--status-file", "", "--no-spot",
          "--backend", "cpu", "--offload-mode", "all", nullptr);
    _exit(127);
  }
  bool up = false;
  for (int i = 0; i < 500 && !up; ++i) {
    up = access((sock + ".plan").c_str(), F_OK) == 0;  // the plan page appears once the agent serves
    if (!up) usleep(10000);
  }
  ASSERT_TRUE(up) << "agent did not create " << sock;
  gpo_set_socket(sock.c_str());
  setenv("GPO_TIMEOUT_MS", "20000", 1);
  gpo_client_stats s0{}, s1{};
  gpo_get_stats(&s0);
  Bytes in = text_bytes(1 << 20, 21);
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < 4; ++i) {
    uint32_t c = 0;
    ASSERT_EQ(gpo_crc32(uint32_t(i), in.data(), in.size(), &c), GPO_OK);
    EXPECT_EQ(c, uint32_t(crc32_z(uLong(i), in.data(), in.size())));
    Bytes out(gpo_zlib_compress_bound(in.size()));
    size_t n = 0;
    ASSERT_EQ(gpo_zlib_compress(out.data(), out.size(), in.data(), in.size(), 6, &n), GPO_OK);
    Bytes ref(compressBound(uLong(in.size())));
    uLongf rn = uLongf(ref.size());
    ASSERT_EQ(compress2(ref.data(), &rn, in.data(), uLong(in.size()), 6), Z_OK);
    EXPECT_EQ(Bytes(out.begin(), out.begin() + long(n)), Bytes(ref.begin(), ref.begin() + long(rn)));
  }
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  gpo_get_stats(&s1);
  EXPECT_EQ(s1.by_agent - s0.by_agent, 8u) << "the agent did not serve the jobs";
  // 8 jobs of 1 MiB; a loop through the shim would cost 3 s per job.
  EXPECT_LT(s, 3.0) << "the agent's zlib calls went back through the shim (a job waited out the inner timeout)";
  gpo_set_socket(nullptr);
  kill(pid, SIGTERM);
  int st = 0;
  for (int i = 0; i < 300 && waitpid(pid, &st, WNOHANG) == 0; ++i) usleep(10000);
  if (waitpid(pid, &st, WNOHANG) == 0) {
    kill(pid, SIGKILL);
    waitpid(pid, &st, 0);
  }
}

}  // namespace
