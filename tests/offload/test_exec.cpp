// `gpuoffload-agent exec` on real programs from Debian packages, against the
// agent component in-process (CPU backend, its socket passed with --socket):
// the program's output is the same as a plain run, its exit status comes
// through, and the summary (--stats-json) says what went where. Programs:
//   python3 + python3-cryptography: AES-256-GCM/CTR, large EVP updates -> the provider's offload
//   python3 hashlib: one SHA-256 stream -> the provider, kept on the CPU (sequential)
//   openssl enc -aes-256-ctr, openssl dgst -sha256: the provider in 4 KiB BIO pieces -> CPU
//   bsdtar --zstd (libarchive): ZSTD_compressStream in 10 KiB pieces -> the shim's collected frame
//   dpkg-deb -Zzstd: ZSTD_compressStream2 -> the shim's stream path
// and the refusals: a static binary, a set-user-ID one, a missing one. Each
// program test skips, naming the package, when it is not installed.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "common/files.h"
#include "common/proc.h"
#include "gpuoffload.h"
#include "offload/offload_env.h"

using namespace gpo::test;

namespace {

bool have(const std::string& p) { return access(p.c_str(), X_OK) == 0; }

class Exec : public ::testing::Test {
 protected:
  void SetUp() override {
    gpo::ipc::ServerOptions o = agent_options("exec");
    o.max_slab_bytes = uint64_t(256) << 20;
    agent_ = std::make_unique<InProcessAgent>(o);
    dir_ = "/tmp/gpo-exec-" + std::to_string(getpid());
    ASSERT_EQ(run_proc({"/bin/mkdir", "-p", dir_}, 10).exit_code, 0);
  }
  void TearDown() override { run_proc({"/bin/rm", "-rf", dir_}, 30); }

  // Runs argv under exec; the summary as JSON in *stats.
  ProcResult exec(const std::vector<std::string>& argv, nlohmann::json* stats = nullptr,
                  const std::vector<std::string>& opts = {}) {
    const std::string js = dir_ + "/stats.json";
    std::vector<std::string> a{"/usr/bin/env", "GPO_SLAB_MB=64", "GPO_TIMEOUT_MS=20000", AGENT_BIN, "exec",
                               "--socket", agent_->socket(), "--status-file", dir_ + "/no-status.json",
                               "--stats-json", js, "--no-estimate", "--min-bytes", "65536"};
    a.insert(a.end(), opts.begin(), opts.end());
    a.push_back("--");
    a.insert(a.end(), argv.begin(), argv.end());
    auto r = run_proc(a, 180);
    if (stats) *stats = nlohmann::json::parse(read_file(js), nullptr, false);
    return r;
  }
  // Runs argv plain, then under exec (the summary in *stats): both succeed and
  // the exec run prints what the plain one did. Callers check HasFatalFailure().
  void plain_then_exec(const std::vector<std::string>& argv, nlohmann::json* stats) {
    auto plain = run_proc(argv, 120);
    ASSERT_EQ(plain.exit_code, 0) << plain.out;
    auto r = exec(argv, stats);
    ASSERT_EQ(r.exit_code, 0) << r.out;
    EXPECT_NE(r.out.find(plain.out), std::string::npos) << "output differs:\n" << r.out << "\nplain:\n" << plain.out;
  }
  // An op's calls or bytes over all its paths (the summary's own total).
  static uint64_t total(const nlohmann::json& s, const char* op, const char* field) {
    if (!s.is_object() || !s["ops"].contains(op)) return 0;
    return s["ops"][op][field].get<uint64_t>();
  }
  static uint64_t calls(const nlohmann::json& s, const char* op, const char* path) {
    if (!s.is_object() || !s["ops"].contains(op) || !s["ops"][op]["paths"].contains(path)) return 0;
    return s["ops"][op]["paths"][path]["calls"].get<uint64_t>();
  }
  std::unique_ptr<InProcessAgent> agent_;
  std::string dir_;
};

TEST_F(Exec, ExitStatusComesThrough) {
  EXPECT_EQ(exec({"/bin/sh", "-c", "exit 7"}).exit_code, 7);
  EXPECT_EQ(exec({"/bin/sh", "-c", "kill -TERM $$"}).exit_code, 128 + 15);
  EXPECT_EQ(exec({"/bin/true"}).exit_code, 0);
  auto r = exec({"no-such-program-gpuoffload"});
  EXPECT_EQ(r.exit_code, 127);
  EXPECT_NE(r.out.find("command not found"), std::string::npos) << r.out;
}

TEST_F(Exec, RefusesStaticBinaries) {
  if (!have("/bin/busybox")) GTEST_SKIP() << "no /bin/busybox (busybox-static)";
  const auto l = run_proc({"/usr/bin/ldd", "/bin/busybox"}, 10);
  if (l.out.find("not a dynamic executable") == std::string::npos && l.out.find("statically linked") == std::string::npos)
    GTEST_SKIP() << "/bin/busybox is dynamically linked here (busybox, not busybox-static)";
  auto r = exec({"/bin/busybox", "true"});
  EXPECT_EQ(r.exit_code, 126);
  EXPECT_NE(r.out.find("statically linked"), std::string::npos) << r.out;
}

TEST_F(Exec, RefusesSetuidBinaries) {
  if (!is_root()) GTEST_SKIP() << "needs root to make a set-user-ID file owned by someone else";
  const std::string f = dir_ + "/suid-true";
  ASSERT_EQ(run_proc({"/bin/cp", "/bin/true", f}, 10).exit_code, 0);
  ASSERT_EQ(chown(f.c_str(), 65534, 65534), 0);
  ASSERT_EQ(chmod(f.c_str(), 04755), 0);
  auto r = exec({f});
  EXPECT_EQ(r.exit_code, 126);
  EXPECT_NE(r.out.find("set-user-ID"), std::string::npos) << r.out;
}

TEST_F(Exec, Python3CryptographyThroughTheProvider) {
  if (!have("/usr/bin/python3") ||
      run_proc({"/usr/bin/python3", "-c", "import cryptography.hazmat.primitives.ciphers.aead"}, 30).exit_code != 0)
    GTEST_SKIP() << "no python3-cryptography";
  write_file(dir_ + "/in.bin", random_bytes((size_t{3} << 20) + 7, 21));
  // AES-256-GCM in one call each way, AES-256-CTR in 1 MiB updates, one SHA-256 stream.
  const std::vector<std::string> prog = {
      "/usr/bin/python3", "-I", "-c",
      "import sys, hashlib\n"
      "from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes\n"
      "from cryptography.hazmat.primitives.ciphers.aead import AESGCM\n"
      "d = open(sys.argv[1], 'rb').read()\n"
      "k = bytes(range(32)); n = bytes(range(12))\n"
      "c = AESGCM(k).encrypt(n, d, b'header')\n"
      "assert AESGCM(k).decrypt(n, c, b'header') == d\n"
      "e = Cipher(algorithms.AES(k), modes.CTR(bytes(range(16)))).encryptor()\n"
      "x = b''.join(e.update(d[i:i + (1 << 20)]) for i in range(0, len(d), 1 << 20)) + e.finalize()\n"
      "print(hashlib.sha256(c).hexdigest(), hashlib.sha256(x).hexdigest(), hashlib.sha256(d).hexdigest())\n",
      dir_ + "/in.bin"};
  auto plain = run_proc(prog, 120);
  ASSERT_EQ(plain.exit_code, 0) << plain.out;
  nlohmann::json s;
  const uint64_t before = agent_->server().stats().jobs_done;
  auto r = exec(prog, &s);
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_NE(r.out.find(plain.out), std::string::npos) << "output differs:\n" << r.out << "\nplain:\n" << plain.out;
  EXPECT_GT(agent_->server().stats().jobs_done - before, 0u);
  EXPECT_GE(calls(s, "aes-256-gcm-encrypt", "offload"), 1u) << s.dump();
  EXPECT_GE(calls(s, "aes-256-gcm-decrypt", "offload"), 1u) << s.dump();
  EXPECT_GE(calls(s, "aes-256-ctr", "offload"), 3u) << s.dump();
  EXPECT_GE(calls(s, "sha256", "cpu-stream"), 3u) << s.dump();
  EXPECT_EQ(s["client"]["local"].get<uint64_t>(), 0u) << s.dump();
}

// An agent whose plan sends no jobs (a CPU backend under --offload-mode
// plan): every large update stays in the program, by plan, with no job
// built at all (once, a plan of "never" read as a size sent CTR updates out
// in 16-byte jobs, each run back in the program).
TEST_F(Exec, APlanOfNoJobsKeepsEveryCallInTheProgram) {
  if (!have("/usr/bin/python3") ||
      run_proc({"/usr/bin/python3", "-c", "import cryptography.hazmat.primitives.ciphers"}, 30).exit_code != 0)
    GTEST_SKIP() << "no python3-cryptography";
  gpo::ipc::ServerOptions o;
  o.socket_path = unique_socket("exec-never");
  o.uprobe_doorbell = false;
  o.plan_min_bytes.fill(GPO_PLAN_NEVER);
  agent_ = std::make_unique<InProcessAgent>(o);
  write_file(dir_ + "/in.bin", random_bytes(size_t{600} << 10, 22));
  const std::vector<std::string> prog = {
      "/usr/bin/python3", "-I", "-c",
      "import sys, hashlib\n"
      "from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes\n"
      "d = open(sys.argv[1], 'rb').read()\n"
      "for i in range(4):\n"
      "    e = Cipher(algorithms.AES(bytes(range(32))), modes.CTR(bytes(range(16)))).encryptor()\n"
      "    x = e.update(d) + e.finalize()\n"
      "print(hashlib.sha256(x).hexdigest())\n",
      dir_ + "/in.bin"};
  nlohmann::json s;
  plain_then_exec(prog, &s);
  if (HasFatalFailure()) return;
  EXPECT_EQ(calls(s, "aes-256-ctr", "cpu-plan"), 4u) << s.dump();
  EXPECT_EQ(calls(s, "aes-256-ctr", "offload"), 0u) << s.dump();
  EXPECT_EQ(s["client"]["jobs"].get<uint64_t>(), 0u) << s.dump();
}

TEST_F(Exec, OpensslEncAndDgstStayOnTheCpu) {
  if (!have("/usr/bin/openssl")) GTEST_SKIP() << "no /usr/bin/openssl";
  write_file(dir_ + "/in.bin", random_bytes(size_t{2} << 20, 22));
  const std::string key(64, '1'), iv(32, '2');
  for (const char* out : {"/plain.enc", "/exec.enc"}) {
    std::vector<std::string> prog = {"/usr/bin/openssl", "enc", "-aes-256-ctr", "-K", key, "-iv", iv,
                                     "-in", dir_ + "/in.bin", "-out", dir_ + out};
    nlohmann::json s;
    auto r = std::string(out) == "/plain.enc" ? run_proc(prog, 60) : exec(prog, &s);
    ASSERT_EQ(r.exit_code, 0) << r.out;
    if (std::string(out) == "/exec.enc") {
      // The cipher BIO hands EVP 4 KiB at a time: reached, never worth a job.
      EXPECT_GE(calls(s, "aes-256-ctr", "cpu-small"), 500u) << s.dump();
      EXPECT_EQ(calls(s, "aes-256-ctr", "offload"), 0u) << s.dump();
    }
  }
  EXPECT_EQ(read_file(dir_ + "/plain.enc"), read_file(dir_ + "/exec.enc"));
  nlohmann::json s;
  auto plain = run_proc({"/usr/bin/openssl", "dgst", "-sha256", dir_ + "/in.bin"}, 60);
  auto r = exec({"/usr/bin/openssl", "dgst", "-sha256", dir_ + "/in.bin"}, &s);
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_NE(r.out.find(plain.out), std::string::npos);
  EXPECT_GT(calls(s, "sha256", "cpu-small") + calls(s, "sha256", "cpu-stream"), 0u) << s.dump();
}

// SHA256() runs on EVP: the shim counts the call and the provider, under it,
// must not count it again. The workload's 9 calls (large ones offloaded,
// small ones run by the real SHA256() under the provider) are each counted
// once, as with the shim alone.
TEST_F(Exec, OneShotSha256IsCountedOnceUnderShimAndProvider) {
  nlohmann::json both, shim_only;
  ASSERT_EQ(exec({self_dir() + "/gpo_exit_workload"}, &both).exit_code, 0);
  ASSERT_EQ(exec({self_dir() + "/gpo_exit_workload"}, &shim_only, {"--no-provider"}).exit_code, 0);
  EXPECT_EQ(total(both, "sha256", "calls"), 9u) << both.dump();
  EXPECT_EQ(total(shim_only, "sha256", "calls"), 9u) << shim_only.dump();
  EXPECT_EQ(calls(both, "sha256", "cpu-stream"), 0u) << both.dump();  // the provider's path
  EXPECT_EQ(calls(both, "sha256", "offload"), 4u) << both.dump();
  EXPECT_EQ(calls(both, "sha256", "cpu-small"), 5u) << both.dump();
}

// Processes that leave by _exit() report too (the shim's front interposes it):
// the parent's 7 calls and a forked child's 2. A vfork child shares the
// parent's memory and leaves by _exit with the parent's counts in sight: it
// must write nothing (else 7 more calls, under its pid).
TEST_F(Exec, ProcessesThatLeaveByExitReportOnce) {
  nlohmann::json s;
  auto r = exec({self_dir() + "/gpo_exit_workload"}, &s);
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_EQ(total(s, "sha256", "calls"), 9u) << s.dump();
  EXPECT_EQ(s["processes_with_calls"].get<int>(), 2) << s.dump();
  EXPECT_EQ(s["processes_without_report"].get<int>(), 0) << s.dump();
}

// A killed process writes no report, but its counts live in a file it maps
// (GPO_STATS_DIR/PID.counts): the forked child's 2 calls are in the summary,
// once, and the parent's file (replaced by its report) is not read again.
TEST_F(Exec, KilledProcessesAreCounted) {
  nlohmann::json s;
  auto r = exec({self_dir() + "/gpo_exit_workload", "kill"}, &s);
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_EQ(total(s, "sha256", "calls"), 9u) << s.dump();
  EXPECT_EQ(total(s, "sha256", "bytes"), 4u * (1u << 20) + 5u * 1000u) << s.dump();
  EXPECT_EQ(s["processes_with_calls"].get<int>(), 2) << s.dump();
  EXPECT_EQ(s["processes_without_report"].get<int>(), 1) << s.dump();
  EXPECT_NE(r.out.find("1 ended without a report"), std::string::npos) << r.out;
}

// Python's multiprocessing ends its forked workers with os._exit: what they
// hash (SHA-256 through the provider) is in the summary.
TEST_F(Exec, Python3MultiprocessingWorkersReport) {
  if (!have("/usr/bin/python3")) GTEST_SKIP() << "no python3";
  const std::vector<std::string> prog = {
      "/usr/bin/python3", "-I", "-c",
      "import multiprocessing as mp, hashlib\n"
      "def work(i):\n"
      "    return hashlib.sha256(bytes([i]) * (1 << 20)).hexdigest()\n"
      "if __name__ == '__main__':\n"
      "    mp.set_start_method('fork')\n"
      "    p = mp.Pool(2)\n"
      "    print(' '.join(p.map(work, range(6))))\n"
      "    p.close()\n"
      "    p.join()\n"};
  nlohmann::json s;
  plain_then_exec(prog, &s);
  if (HasFatalFailure()) return;
  EXPECT_GE(total(s, "sha256", "calls"), 6u) << s.dump();
  EXPECT_GE(total(s, "sha256", "bytes"), 6u << 20) << s.dump();
  EXPECT_GE(s["processes_with_calls"].get<int>(), 1) << s.dump();
}

// A worker that Process.terminate() ends (SIGTERM, as a Pool's `with` block
// ends the workers still alive) writes no report; what it hashed before is
// counted all the same.
TEST_F(Exec, Python3WorkerEndedByTerminateIsCounted) {
  if (!have("/usr/bin/python3")) GTEST_SKIP() << "no python3";
  const std::vector<std::string> prog = {
      "/usr/bin/python3", "-I", "-c",
      "import multiprocessing as mp, hashlib, time\n"
      "def work(done):\n"
      "    for i in range(3):\n"
      "        hashlib.sha256(bytes([i]) * (1 << 20)).digest()\n"
      "    done.set()\n"
      "    time.sleep(60)\n"
      "if __name__ == '__main__':\n"
      "    mp.set_start_method('fork')\n"
      "    done = mp.Event()\n"
      "    w = mp.Process(target=work, args=(done,))\n"
      "    w.start()\n"
      "    done.wait(60)\n"
      "    w.terminate()\n"
      "    w.join()\n"
      "    print(w.exitcode)\n"};
  nlohmann::json s;
  plain_then_exec(prog, &s);
  if (HasFatalFailure()) return;
  EXPECT_EQ(total(s, "sha256", "calls"), 3u) << s.dump();
  EXPECT_EQ(total(s, "sha256", "bytes"), 3u << 20) << s.dump();
  EXPECT_EQ(s["processes_without_report"].get<int>(), 1) << s.dump();
}

TEST_F(Exec, BsdtarZstdStreamThroughTheShim) {
  if (!have("/usr/bin/bsdtar") || !have("/usr/bin/zstd")) GTEST_SKIP() << "no bsdtar (libarchive-tools) or zstd";
  const std::string src = dir_ + "/src";
  ASSERT_EQ(run_proc({"/bin/mkdir", "-p", src}, 10).exit_code, 0);
  for (int i = 0; i < 4; ++i) write_file(src + "/f" + std::to_string(i), text_bytes(size_t{600} << 10, 30 + i));
  // --options zstd:compression-level=1: libarchive's ZSTD_initCStream level; mtimes fixed by the files.
  auto archive = [&](const std::string& out) {
    return std::vector<std::string>{"/usr/bin/bsdtar", "--zstd", "--options", "zstd:compression-level=1",
                                    "-cf", out, "-C", src, "."};
  };
  ASSERT_EQ(run_proc(archive(dir_ + "/plain.tar.zst"), 60).exit_code, 0);
  nlohmann::json s;
  auto r = exec(archive(dir_ + "/exec.tar.zst"), &s);
  ASSERT_EQ(r.exit_code, 0) << r.out;
  // The same tar stream inside, read back by the stock zstd.
  auto a = run_proc({"/bin/sh", "-c", "zstd -dc " + dir_ + "/plain.tar.zst | sha256sum"}, 60);
  auto b = run_proc({"/bin/sh", "-c", "zstd -dc " + dir_ + "/exec.tar.zst | sha256sum"}, 60);
  EXPECT_EQ(a.out, b.out);
  EXPECT_EQ(b.exit_code, 0);
  EXPECT_GE(calls(s, "zstd-compress", "offload"), 1u) << s.dump();
}

// dpkg-deb asks libzstd for worker threads (ZSTD_c_nbWorkers): libzstd's own
// threads beat one offloaded frame, so the shim leaves such a stream to it
// (the collected-frame path is BsdtarZstdThroughTheShim's).
TEST_F(Exec, DpkgDebZstdWithWorkersStaysInLibzstd) {
  if (!have("/usr/bin/dpkg-deb")) GTEST_SKIP() << "no dpkg-deb";
  const std::string pkg = dir_ + "/pkg";
  ASSERT_EQ(run_proc({"/bin/mkdir", "-p", pkg + "/DEBIAN", pkg + "/usr/share/gpo"}, 10).exit_code, 0);
  std::ofstream(pkg + "/DEBIAN/control") << "Package: gpo-test\nVersion: 1.0\nArchitecture: all\n"
                                            "Maintainer: test <test@example.invalid>\nDescription: test\n";
  write_file(pkg + "/usr/share/gpo/data", text_bytes(size_t{2} << 20, 40));
  auto build = [&](const std::string& out) {
    return std::vector<std::string>{"/usr/bin/dpkg-deb", "--root-owner-group", "-Zzstd", "-z1", "--build", pkg, out};
  };
  auto plain = run_proc(build(dir_ + "/plain.deb"), 60);
  if (plain.exit_code != 0) GTEST_SKIP() << "this dpkg-deb has no zstd: " << plain.out;
  nlohmann::json s;
  auto r = exec(build(dir_ + "/exec.deb"), &s);
  ASSERT_EQ(r.exit_code, 0) << r.out;
  auto a = run_proc({"/bin/sh", "-c", "dpkg-deb --fsys-tarfile " + dir_ + "/plain.deb | sha256sum"}, 60);
  auto b = run_proc({"/bin/sh", "-c", "dpkg-deb --fsys-tarfile " + dir_ + "/exec.deb | sha256sum"}, 60);
  EXPECT_EQ(a.out, b.out);
  EXPECT_GE(calls(s, "zstd-compress", "cpu-params"), 1u) << s.dump();
  EXPECT_EQ(calls(s, "zstd-compress", "offload"), 0u) << s.dump();
}

}  // namespace

#include "cli/offload_marks.h"

namespace {

// `top`'s marks, from a made-up /proc: one process per path, one with none.
TEST(OffloadMarks, FromProcessMaps) {
  const std::string proc = "/tmp/gpo-marks-" + std::to_string(getpid());
  auto make = [&](int pid, const char* comm, const std::string& maps) {
    const std::string d = proc + "/" + std::to_string(pid);
    ASSERT_EQ(run_proc({"/bin/mkdir", "-p", d}, 10).exit_code, 0);
    std::ofstream(d + "/comm") << comm << "\n";
    std::ofstream(d + "/maps") << maps;
  };
  const std::string lib = "7f00-7f01 r-xp 0 08:01 1 /usr/local/lib/libgpuoffload.so.0.1.0\n";
  make(10, "tar", "7e00-7e01 r-xp 0 08:01 2 /usr/local/lib/libgpuoffload-shim.so\n" + lib +
                      "7d00-7d01 rw-s 0 00:01 3 /memfd:gpuoffload-slab (deleted)\n");
  make(11, "python3", "7e00-7e01 r-xp 0 08:01 4 /usr/lib/x86_64-linux-gnu/ossl-modules/gpuoffload.so\n" + lib);
  make(12, "server", lib);
  make(13, "bash", "7e00-7e01 r-xp 0 08:01 5 /usr/lib/x86_64-linux-gnu/libc.so.6\n");
  std::ofstream(proc + "/self-not-a-pid") << "";
  auto m = gpo::cli::scan_offloaded(proc);
  ASSERT_EQ(m.size(), 3u);
  EXPECT_EQ(m[10].via(), "shim*");
  EXPECT_EQ(m[10].comm, "tar");
  EXPECT_EQ(m[11].via(), "provider");
  EXPECT_EQ(m[12].via(), "lib");
  EXPECT_EQ(m.count(13), 0u);
  run_proc({"/bin/rm", "-rf", proc}, 10);
}

}  // namespace
