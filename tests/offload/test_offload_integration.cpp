// The offload path end to end (root): the uprobe doorbell with the tgid the
// kernel stamps, the LD_PRELOAD shim on an unmodified program, and the real
// `gpuoffload-agent run` killed with SIGKILL under load and restarted.
#include <dlfcn.h>
#include <fcntl.h>
#include <sched.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <vector>

#include "common/files.h"
#include "common/preload.h"
#include "common/proc.h"
#include "gpuoffload.h"
#include "ipc/doorbell_probe.h"
#include "ipc/slab_protocol.h"
#include "offload/offload_env.h"
#include "util/cpus.h"
#include "util/sched_attr.h"

using namespace gpo::test;
using gpo::ipc::LaneSched;

namespace {

// Why the uprobe doorbell cannot serve this test run, or "".
std::string uprobe_unavailable() {
  if (!is_root()) return "needs root for the BPF uprobe doorbell";
  // The agent attaches only to a library file root owns and only root can
  // write (docs/security.md): a build made by another user gets the socket doorbell.
  struct stat lib {};
  Dl_info info{};
  if (!dladdr(reinterpret_cast<void*>(&gpo_doorbell), &info) || stat(info.dli_fname, &lib) != 0) return "";
  if (lib.st_uid != 0 || (lib.st_mode & 022))
    return std::string(info.dli_fname) + " is not root's alone: the uprobe doorbell rightly stays off (build as root)";
  return "";
}

// The kernel turns a uprobe on a 5-byte nop into a call to its uprobe
// trampoline (x86-64, 6.18 and later).
bool kernel_optimizes_uprobes() {
  std::ifstream in("/proc/kallsyms");
  std::string line;
  while (std::getline(in, line))
    if (line.size() > 21 && line.compare(line.size() - 21, 21, " arch_uprobe_optimize") == 0) return true;
  return false;
}

// n SHA-256 jobs through the library, each checked against OpenSSL: how many
// the agent did, or -1 after a failed or wrong one.
int64_t sha256_jobs(int n, uint32_t seed, size_t len) {
  gpo_client_stats s0{}, s1{};
  gpo_get_stats(&s0);
  for (int i = 0; i < n; ++i) {
    Bytes m = random_bytes(len + size_t(i), seed + uint32_t(i)), d(32);
    const void* p = m.data();
    size_t l = m.size();
    if (gpo_sha256_batch(&p, &l, 1, d.data()) != GPO_OK || d != ref_sha256(m)) return -1;
  }
  gpo_get_stats(&s1);
  return int64_t(s1.by_agent - s0.by_agent);
}

TEST(OffloadIntegration, UprobeDoorbellCarriesKernelStampedTgid) {
  if (auto why = uprobe_unavailable(); !why.empty()) GTEST_SKIP() << why;
  const size_t cpus = gpo::util::allowed_cpus().size();
  ASSERT_GT(cpus, 0u);
  auto o = agent_options("uprobe", true);
  o.cpu_doorbells = false;  // the shared ring and the event loop (doorbell threads: below)
  InProcessAgent agent(o, unsigned(cpus));  // a worker pinned to each CPU
  // Root is the prerequisite; a doorbell program that then does not load is a failure.
  ASSERT_TRUE(agent.server().uprobe_doorbell()) << "root, yet the BPF doorbell did not load: "
                                                << agent.server().describe();
  EXPECT_EQ(agent.server().cpu_doorbells(), 0u);
  gpo_set_socket(agent.socket().c_str());
  setenv("GPO_TIMEOUT_MS", "5000", 1);
  gpo_client_stats s0{}, s1{};
  gpo_get_stats(&s0);
  constexpr int kJobs = 200;
  for (int i = 0; i < kJobs; ++i) {
    // Every worker asleep before the next job (the one that ran the last may
    // still be on its way back): the job then runs on the CPU it was rung from.
    auto& be = agent.backend();
    for (int k = 0; k < 2000 && be.asleep() < be.threads(); ++k) usleep(500);
    Bytes m = random_bytes(size_t(i * 13), uint32_t(i)), d(32);
    const void* p = m.data();
    size_t l = m.size();
    ASSERT_EQ(gpo_sha256_batch(&p, &l, 1, d.data()), GPO_OK);
    ASSERT_EQ(d, ref_sha256(m)) << i;
  }
  gpo_get_stats(&s1);
  EXPECT_EQ(s1.doorbell, 1) << "the agent did not attach its uprobe to " << "libgpuoffload";
  EXPECT_EQ(s1.by_agent - s0.by_agent, uint64_t(kJobs));
  auto st = agent.server().stats();
  EXPECT_GE(st.doorbells_uprobe, uint64_t(kJobs));
  EXPECT_EQ(st.doorbells_socket, 0u);
  EXPECT_EQ(st.doorbells_on_client_cpu, 0u) << "a CPU's doorbell thread ran though they are off";
  // The kernel also stamps the CPU the client rang on, where it then waits:
  // with every worker asleep, the job runs on that CPU's worker.
  for (int i = 0; i < 300 && agent.server().per_job_us()["jobs"].get<uint64_t>() < uint64_t(kJobs); ++i) usleep(10000);
  EXPECT_EQ(agent.server().per_job_us()["on_client_cpu"].get<uint64_t>(), uint64_t(kJobs));

#if defined(__x86_64__)
  // gpo_doorbell's first instruction is a 5-byte nop (docs/offload.md): where
  // the kernel can, the uprobe on it became a call into the kernel's uprobe
  // trampoline at the first ring, instead of a breakpoint (0xcc) trapped and
  // stepped on every ring.
  const auto* code = static_cast<const uint8_t*>(dlsym(RTLD_DEFAULT, "gpo_doorbell"));
  ASSERT_NE(code, nullptr);
  if (kernel_optimizes_uprobes())
    EXPECT_EQ(code[0], 0xe8) << "the doorbell's uprobe was not optimized (first byte " << int(code[0]) << ")";
  else
    EXPECT_EQ(code[0], 0xcc) << "this kernel cannot optimize uprobes; the doorbell should hold a breakpoint";
#endif

  // Another process rings the uprobe doorbell for this process's slab: the
  // kernel stamps the child's tgid, the agent refuses it.
  uint32_t sid = s1.slab_id;
  auto refused = st.doorbells_refused;
  pid_t child = fork();
  if (child == 0) {
    for (uint32_t j = 0; j < 8; ++j) gpo_doorbell_forked(sid, j, GPO_OP_SHA256, 0);
    _exit(0);
  }
  int status = 0;
  waitpid(child, &status, 0);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "the forging child died: status " << status;
  for (int i = 0; i < 200 && agent.server().stats().doorbells_refused < refused + 8; ++i) usleep(5000);
  // At least the child's 8: the uprobe is on the library file, so processes
  // of other tests running now, ringing for their own agents, reach this
  // agent's program too and are refused as well.
  EXPECT_GE(agent.server().stats().doorbells_refused - refused, 8u);
  EXPECT_EQ(agent.server().stats().jobs_done, uint64_t(kJobs)) << "a forged doorbell ran a job";
  gpo_set_socket(nullptr);
}

// A process forked after its parent rang (and, where the kernel can, the
// doorbell's uprobe became a call into a trampoline the child does not
// inherit) sends its own jobs through the uprobe doorbell and lives.
TEST(OffloadIntegration, ForkedChildRingsTheUprobeDoorbellAndLives) {
  if (auto why = uprobe_unavailable(); !why.empty()) GTEST_SKIP() << why;
  InProcessAgent agent(agent_options("uprobe-fork", true));
  ASSERT_TRUE(agent.server().uprobe_doorbell()) << agent.server().describe();
  gpo_set_socket(agent.socket().c_str());
  setenv("GPO_TIMEOUT_MS", "5000", 1);
  ASSERT_EQ(sha256_jobs(20, 1, 4096), 20);
  int pipefd[2];
  ASSERT_EQ(pipe(pipefd), 0);
  pid_t child = fork();
  if (child == 0) {
    close(pipefd[0]);
    const int64_t by_agent = sha256_jobs(20, 100, 4096);
    const ssize_t w = write(pipefd[1], &by_agent, sizeof(by_agent));
    _exit(by_agent >= 0 && w == ssize_t(sizeof(by_agent)) ? 0 : 1);
  }
  close(pipefd[1]);
  int64_t child_by_agent = 0;
  const ssize_t r = read(pipefd[0], &child_by_agent, sizeof(child_by_agent));
  close(pipefd[0]);
  int status = 0;
  waitpid(child, &status, 0);
  ASSERT_TRUE(WIFEXITED(status)) << "the child died by signal " << (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
  EXPECT_EQ(WEXITSTATUS(status), 0) << "a child's job went wrong";
  ASSERT_EQ(r, ssize_t(sizeof(child_by_agent)));
  EXPECT_EQ(child_by_agent, 20) << "the child's jobs did not reach the agent";
  EXPECT_EQ(agent.server().stats().doorbells_socket, 0u) << "the child rang the socket, not the uprobe";
  gpo_set_socket(nullptr);
}

// The agent gets a doorbell thread only on the CPUs of its affinity mask; a
// client ringing from another CPU reaches the event loop through the shared
// ring, and its jobs are done all the same.
TEST(OffloadIntegration, ACpuOutsideTheAgentsMaskRingsTheEventLoop) {
  if (auto why = uprobe_unavailable(); !why.empty()) GTEST_SKIP() << why;
  cpu_set_t all;
  CPU_ZERO(&all);
  ASSERT_EQ(sched_getaffinity(0, sizeof(all), &all), 0);
  const std::vector<int32_t> cpus = gpo::util::allowed_cpus();
  if (cpus.size() < 2) GTEST_SKIP() << "needs two CPUs";
  auto pin = [](int cpu) {
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(cpu, &one);
    return sched_setaffinity(0, sizeof(one), &one) == 0;
  };
  // The agent's threads inherit the mask of the thread that starts them.
  ASSERT_TRUE(pin(cpus[0]));
  auto o = agent_options("uprobe-mask", true);
  o.cpu_doorbells = true;
  auto agent = std::make_unique<InProcessAgent>(o);
  ASSERT_TRUE(agent->server().uprobe_doorbell()) << agent->server().describe();
  EXPECT_EQ(agent->server().cpu_doorbells(), 1u);
  ASSERT_TRUE(pin(cpus[1]));  // the client rings from a CPU without a doorbell thread
  gpo_set_socket(agent->socket().c_str());
  setenv("GPO_TIMEOUT_MS", "5000", 1);
  constexpr int kJobs = 30;
  const int64_t by_agent = sha256_jobs(kJobs, 0, 4096);
  sched_setaffinity(0, sizeof(all), &all);
  EXPECT_EQ(by_agent, kJobs) << "jobs rung outside the agent's mask were not served (-1: a job failed)";
  const auto st = agent->server().stats();
  EXPECT_EQ(st.doorbells_socket, 0u);
  EXPECT_GE(st.doorbells_uprobe - st.doorbells_on_client_cpu, uint64_t(kJobs))
      << "the doorbells of a CPU without a doorbell thread did not reach the loop";
  gpo_set_socket(nullptr);
  agent.reset();
}

// The doorbell threads (gpo-bell/CPU) of this process, as the kernel
// schedules them.
struct LaneThread {
  int policy = -1, nice = 0;
  uint64_t slice_ns = 0;
};
std::vector<LaneThread> lane_threads() {
  gpo::util::SchedAttr a;
  std::vector<LaneThread> out;
  for (const auto& e : std::filesystem::directory_iterator("/proc/self/task")) {
    std::ifstream comm(e.path() / "comm");
    std::string name;
    std::getline(comm, name);
    if (name.rfind("gpo-bell/", 0) != 0) continue;
    const auto tid = pid_t(std::stol(e.path().filename().string()));
    if (syscall(SYS_sched_getattr, tid, &a, unsigned(sizeof(a)), 0) != 0) continue;
    out.push_back({int(a.policy), a.nice, a.runtime});
  }
  return out;
}

// Doorbell threads (the default): each CPU has its own ring and doorbell
// thread, which handles every ring of that CPU. As root each thread is scheduled to
// preempt what runs on its CPU (SCHED_FIFO, or where that is refused nice -20
// with a short slice): a ring must not wait for a worker's slice there.
TEST(OffloadIntegration, CpuDoorbellThreadsHandleEachRingOnItsCpu) {
  if (auto why = uprobe_unavailable(); !why.empty()) GTEST_SKIP() << why;
  auto o = agent_options("uprobe-cpu", true);  // doorbell threads by default
  InProcessAgent agent(o);
  ASSERT_TRUE(agent.server().uprobe_doorbell()) << agent.server().describe();
  EXPECT_EQ(agent.server().cpu_doorbells(), gpo::util::allowed_cpus().size()) << agent.server().describe();
  EXPECT_EQ(agent.server().cpu_doorbells_scheduled(LaneSched::normal), 0u) << agent.server().describe();
  const auto lanes = lane_threads();
  EXPECT_EQ(lanes.size(), agent.server().cpu_doorbells());
  size_t fifo = 0, short_slice = 0;
  for (const auto& l : lanes) {
    fifo += l.policy == SCHED_FIFO;
    short_slice += l.policy == SCHED_OTHER && l.nice == -20;
  }
  EXPECT_EQ(fifo, agent.server().cpu_doorbells_scheduled(LaneSched::fifo));
  EXPECT_EQ(short_slice, agent.server().cpu_doorbells_scheduled(LaneSched::short_slice));
  gpo_set_socket(agent.socket().c_str());
  setenv("GPO_TIMEOUT_MS", "5000", 1);
  constexpr int kJobs = 50;
  EXPECT_EQ(sha256_jobs(kJobs, 0, 4096), kJobs);
  const auto st = agent.server().stats();
  EXPECT_GE(st.doorbells_uprobe, uint64_t(kJobs));
  // Every ring (this process's, and those of other tests' processes that the
  // uprobe on the shared library file also brings) was handled by a thread
  // on the CPU it was rung from, not by the event loop.
  EXPECT_GE(st.doorbells_on_client_cpu, uint64_t(kJobs));
  gpo_set_socket(nullptr);
}

// --offload-cpu-doorbell-sched short-slice (what a host that refuses
// SCHED_FIFO gets): nice -20 and a 0.1 ms slice, and the rings still arrive.
TEST(OffloadIntegration, CpuDoorbellThreadsWithAShortSlice) {
  if (auto why = uprobe_unavailable(); !why.empty()) GTEST_SKIP() << why;
  auto o = agent_options("uprobe-slice", true);
  o.cpu_doorbells = true;
  o.cpu_doorbell_sched = LaneSched::short_slice;
  InProcessAgent agent(o);
  ASSERT_TRUE(agent.server().uprobe_doorbell()) << agent.server().describe();
  EXPECT_EQ(agent.server().cpu_doorbells_scheduled(LaneSched::short_slice), agent.server().cpu_doorbells())
      << agent.server().describe();
  const auto lanes = lane_threads();
  EXPECT_EQ(lanes.size(), agent.server().cpu_doorbells());
  // Custom slices came with Linux 6.12; an older kernel takes the call, keeps
  // the nice value and reads the slice back as 0.
  utsname u{};
  int major = 0, minor = 0;
  const bool slices = uname(&u) == 0 && std::sscanf(u.release, "%d.%d", &major, &minor) == 2 &&
                      (major > 6 || (major == 6 && minor >= 12));
  for (const auto& l : lanes) {
    EXPECT_EQ(l.policy, SCHED_OTHER);
    EXPECT_EQ(l.nice, -20);
    if (slices) {
      EXPECT_EQ(l.slice_ns, 100'000u) << "the kernel did not keep the slice";
    }
  }
  gpo_set_socket(agent.socket().c_str());
  setenv("GPO_TIMEOUT_MS", "5000", 1);
  constexpr int kJobs = 30;
  EXPECT_EQ(sha256_jobs(kJobs, 0, 4096), kJobs);
  EXPECT_GE(agent.server().stats().doorbells_on_client_cpu, uint64_t(kJobs));
  gpo_set_socket(nullptr);
}

TEST(OffloadIntegration, ShimGivesTheSameOutputAsTheRealFunctions) {
  InProcessAgent agent(agent_options("shim"));
  std::string workload = self_dir() + "/gpo_shim_workload";
  auto plain = run_proc({workload}, 60);
  ASSERT_EQ(plain.exit_code, 0) << plain.out;
  ASSERT_NE(plain.out.find("n=300001"), std::string::npos);
  std::vector<std::string> env = preload_env(SHIM_PATH, Program::ours);
  env.insert(env.end(), {"GPO_SOCKET=" + agent.socket(), "GPO_TIMEOUT_MS=10000"});
  auto shimmed = run_with_env(env, {workload}, 60);
  ASSERT_EQ(shimmed.exit_code, 0) << shimmed.out;
  EXPECT_EQ(shimmed.out, plain.out) << "the shim changed a result";
  // 5 processes' worth (4 threads + a forked child) x 2 large sizes x
  // (SHA256 + ZSTD_compress + ZSTD_compressCCtx + 2 SHA256 of large frames, the
  // too-small ZSTD_compress and its fallback): at least 3 per large call.
  EXPECT_GE(agent.server().stats().jobs_done, 5u * 2 * 3) << "the shim did not offload";
}

// The real agent binary, in the background; SIGKILL on request.
struct AgentProc {
  pid_t pid = -1;
  void start(const std::string& sock) {
    pid = fork();
    if (pid == 0) {
      int fd = open("/dev/null", O_WRONLY);
      dup2(fd, 2);
      // --offload-mode all: without a GPU the plan keeps every job in the
      // client; this test is about the service path, so it takes them all.
      execl(AGENT_BIN, AGENT_BIN, "run", "--offload-socket", sock.c_str(), "--status-file", "", "--no-spot",
            "--offload-mode", "all", nullptr);
      _exit(127);
    }
  }
  void kill9() {
    if (pid > 0) {
      kill(pid, SIGKILL);
      waitpid(pid, nullptr, 0);
      pid = -1;
    }
  }
  ~AgentProc() { kill9(); }
};

// The plan page appears last, once the agent serves: what clients wait for.
bool wait_for_agent(const std::string& p, int ms) {
  for (int i = 0; i < ms / 10; ++i) {
    if (access(p.c_str(), F_OK) == 0) return true;
    usleep(10000);
  }
  return false;
}

TEST(OffloadIntegration, RealAgentKilledUnderLoadThenRestarted) {
  auto help = run_proc({AGENT_BIN, "run", "--help"}, 10);
  ASSERT_NE(help.out.find("--offload-socket"), std::string::npos) << "run has no offload service: " << help.out;
  std::string sock = unique_socket("kill");
  AgentProc agent;
  agent.start(sock);
  ASSERT_TRUE(wait_for_agent(sock + ".plan", 5000)) << "agent did not create " << sock << ".plan";
  gpo_set_socket(sock.c_str());
  setenv("GPO_TIMEOUT_MS", "1000", 1);
  setenv("GPO_RECONNECT_MS", "50", 1);
  gpo_client_stats s0{};
  gpo_get_stats(&s0);

  std::atomic<bool> stop{false};
  std::atomic<int> bad{0}, done{0};
  std::vector<std::thread> ts;
  for (int t = 0; t < 3; ++t)
    ts.emplace_back([&, t] {
      Bytes key = random_bytes(32, uint32_t(t)), iv = random_bytes(12, uint32_t(t) + 7);
      // Bounded in count and time.
      for (int i = 0; i < 200000 && !stop; ++i) {
        Bytes in = text_bytes(1 + size_t(i * 31 % 20000), uint32_t(t * 1000003 + i));
        if (i % 2) {
          Bytes out(in.size()), tag(16), ref_tag;
          if (gpo_aes256_gcm_encrypt(key.data(), iv.data(), nullptr, 0, in.data(), in.size(), out.data(),
                                     tag.data()) != GPO_OK ||
              out != ref_gcm_encrypt(key, iv, {}, in, ref_tag) || tag != ref_tag)
            bad++;
        } else {
          Bytes out(gpo_zstd_compress_bound(in.size()));
          size_t n = 0;
          if (gpo_zstd_compress(out.data(), out.size(), in.data(), in.size(), 3, &n) != GPO_OK) bad++;
          out.resize(n);
          if (!zstd_round_trips(out, in)) bad++;  // GPU frames differ from ZSTD_compress's bytes
        }
        done++;
      }
    });
  auto phase = [&](int ms) {
    int start = done;
    usleep(useconds_t(ms) * 1000);
    return done - start;
  };
  int before_kill = phase(700);
  gpo_client_stats s1{};
  gpo_get_stats(&s1);
  agent.kill9();
  int while_dead = phase(700);
  agent.start(sock);
  ASSERT_TRUE(wait_for_agent(sock + ".plan", 5000));
  gpo_client_stats s2{};
  gpo_get_stats(&s2);
  // The restarted agent can take seconds to serve under emulation (vmtest, TCG),
  // and the socket file of the killed one may still be there: keep the load on
  // until the client has reconnected and been served again, bounded in time.
  const int done_at_restart = done;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  gpo_client_stats cur{};
  do {
    usleep(50000);
    gpo_get_stats(&cur);
  } while ((cur.connects - s0.connects < 2 || cur.by_agent == s2.by_agent) &&
           std::chrono::steady_clock::now() < deadline);
  int after_restart = done - done_at_restart + phase(200);
  stop = true;
  for (auto& t : ts) t.join();
  gpo_client_stats s3{};
  gpo_get_stats(&s3);

  EXPECT_EQ(bad.load(), 0) << "wrong results";
  EXPECT_GT(before_kill, 0);
  EXPECT_GT(while_dead, 0) << "calls stalled while the agent was dead";
  EXPECT_GT(after_restart, 0);
  EXPECT_GT(s1.by_agent - s0.by_agent, 0u) << "the agent served nothing before the kill";
  EXPECT_EQ(s3.jobs - s0.jobs, s3.by_agent - s0.by_agent + s3.local - s0.local) << "a job completed twice or never";
  EXPECT_GT(s3.local_no_agent + s3.local_agent_gone + s3.local_timeout -
                (s0.local_no_agent + s0.local_agent_gone + s0.local_timeout),
            0u);
  EXPECT_GE(s3.connects - s0.connects, 2u) << "the client did not reconnect to the restarted agent";
  EXPECT_GT(s3.by_agent - s2.by_agent, 0u) << "the restarted agent served nothing";
  gpo_set_socket(nullptr);
}

}  // namespace
