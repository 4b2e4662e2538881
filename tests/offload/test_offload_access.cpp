// Who may talk to whom (root: other uids, BPF): the client library trusts only
// an agent run by root (or itself, or GPO_AGENT_UID), ignores its environment
// in processes that must not trust it (setuid), and the agent attaches its
// uprobe only to library files root owns, gives users their own quotas, and
// says what it attached and lost.
#include <dlfcn.h>
#include <fcntl.h>
#include <grp.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <filesystem>
#include <new>
#include <thread>
#include <fstream>

#include "common/proc.h"
#include "gpuoffload.h"
#include "ipc/slab_protocol.h"
#include "offload/offload_env.h"
#include "offload/raw_client.h"
#include "util/fd_passing.h"

using namespace gpo::test;

namespace {

constexpr uid_t kNobody = 65534;

// A serving plan page written by root at path: every job of every op to the agent.
void write_root_plan_page(const std::string& path) {
  int fd = open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(ftruncate(fd, 4096), 0);
  gpo_plan_page pg{};
  pg.magic = GPO_PLAN_MAGIC;
  pg.version = GPO_PLAN_VERSION;
  pg.state = GPO_PLAN_SERVING;
  pg.agent_pid = uint32_t(getpid());
  pg.generation = 1;
  ASSERT_EQ(pwrite(fd, &pg, sizeof(pg), 0), ssize_t(sizeof(pg)));
  close(fd);
}

// Runs argv with env added; secure: with real uid nobody and effective uid
// root, which the kernel runs with AT_SECURE as it would a setuid program.
ProcResult run_env(const std::vector<std::string>& argv, const std::vector<std::string>& env, bool secure) {
  return run_proc(argv, 30.0, [&] {
    for (const auto& e : env) putenv(const_cast<char*>(e.c_str()));
    if (secure && setresuid(kNobody, 0, 0) != 0) _exit(126);
  });
}

std::string lib_path() {
  Dl_info info{};
  dladdr(reinterpret_cast<void*>(&gpo_doorbell), &info);
  return std::filesystem::canonical(info.dli_fname).string();
}

// ---- the client trusts only root's agent ------------------------------------------------

// A socket served by another user, next to a plan page root wrote (a stale
// one, say): the library must not hand that user its slab (its memfd, every
// later input) nor take results from it.
TEST(OffloadAccess, TheClientRefusesAnAgentRunByAnotherUser) {
  if (!is_root()) GTEST_SKIP() << "needs root to run a fake agent as another user";
  const std::string sock = unique_socket("fake");
  unlink(sock.c_str());
  write_root_plan_page(sock + GPO_PLAN_SUFFIX);
  int report[2], go[2];
  ASSERT_EQ(pipe(report), 0);
  ASSERT_EQ(pipe(go), 0);
  pid_t child = fork();
  if (child == 0) {
    // The fake agent: as nobody, listens and reports per connection whether a slab (an fd) arrived.
    if (setgid(kNobody) != 0 || setuid(kNobody) != 0) _exit(2);
    int l = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::strcpy(a.sun_path, sock.c_str());
    if (bind(l, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0 || listen(l, 8) != 0) _exit(3);
    char ready = 'r';
    if (write(report[1], &ready, 1) != 1) _exit(4);
    for (int k = 0; k < 2; ++k) {
      pollfd p{l, POLLIN, 0};
      char got = 'N';  // no connection
      if (poll(&p, 1, 3000) > 0) {
        int c = accept(l, nullptr, nullptr);
        gpo_msg_register m{};
        pollfd q{c, POLLIN, 0};
        got = 'C';  // connected, nothing sent
        if (poll(&q, 1, 2000) > 0) {
          const gpo::util::Received r = gpo::util::recv_with_fd(c, &m, sizeof(m));
          if (r.len > 0 && r.fd.valid()) got = 'R';  // a slab
        }
        close(c);
      }
      if (write(report[1], &got, 1) != 1) _exit(5);
      char g;
      if (read(go[0], &g, 1) != 1) _exit(6);
    }
    _exit(0);
  }
  char c = 0;
  ASSERT_EQ(read(report[0], &c, 1), 1);
  setenv("GPO_TIMEOUT_MS", "300", 1);
  gpo_set_socket(sock.c_str());
  gpo_client_stats s0{}, s1{};
  gpo_get_stats(&s0);
  const Bytes msg = random_bytes(100000, 1);
  auto sha = [&] {
    const void* p = msg.data();
    size_t n = msg.size();
    Bytes d(32);
    EXPECT_EQ(gpo_sha256_batch(&p, &n, 1, d.data()), GPO_OK);
    EXPECT_EQ(d, ref_sha256(msg));
  };
  sha();
  gpo_get_stats(&s1);
  ASSERT_EQ(read(report[0], &c, 1), 1);
  EXPECT_NE(c, 'R') << "the library sent its slab to an agent run by uid " << kNobody;
  EXPECT_EQ(s1.connects, s0.connects);
  EXPECT_EQ(s1.local_no_agent - s0.local_no_agent, 1u);
  // Control: told to trust that uid (GPO_AGENT_UID), the same library does register there.
  ASSERT_EQ(write(go[1], "g", 1), 1);
  setenv("GPO_AGENT_UID", std::to_string(kNobody).c_str(), 1);
  gpo_set_socket(sock.c_str());
  sha();  // the fake agent never answers: computed here after GPO_TIMEOUT_MS
  unsetenv("GPO_AGENT_UID");
  ASSERT_EQ(read(report[0], &c, 1), 1);
  EXPECT_EQ(c, 'R') << "the test's fake agent did not see the trusted registration";
  ASSERT_EQ(write(go[1], "g", 1), 1);
  int st = 0;
  waitpid(child, &st, 0);
  gpo_set_socket(nullptr);
  unsetenv("GPO_TIMEOUT_MS");
  unlink(sock.c_str());
  unlink((sock + GPO_PLAN_SUFFIX).c_str());
}

// With real uid != effective uid (what a setuid program runs as) the library
// and the shim read none of their GPO_* variables: no socket of the caller's
// choosing, no threshold of its choosing.
TEST(OffloadAccess, ASetuidProcessIgnoresTheGpoEnvironment) {
  if (!is_root()) GTEST_SKIP() << "needs root to run a process with AT_SECURE";
  auto o = agent_options("secure");
  o.allow_all_users = true;
  InProcessAgent agent(o);
  auto jobs = [&] { return agent.server().stats().doorbells_socket; };
  const std::string sock_env = "GPO_SOCKET=" + agent.socket();
  // The library: GPO_SOCKET.
  auto j0 = jobs();
  auto plain = run_env({ENV_PROBE, "library"}, {sock_env}, false);
  ASSERT_EQ(plain.exit_code, 0) << plain.out;
  EXPECT_NE(plain.out.find("secure=0 by_agent=1"), std::string::npos) << plain.out;
  EXPECT_EQ(jobs() - j0, 1u);
  j0 = jobs();
  auto secure = run_env({ENV_PROBE, "library"}, {sock_env}, true);
  ASSERT_EQ(secure.exit_code, 0) << secure.out;
  EXPECT_NE(secure.out.find("secure=1"), std::string::npos) << secure.out;
  EXPECT_EQ(jobs() - j0, 0u) << "a setuid process sent its data to the socket its caller chose: " << secure.out;
  // The shim: GPO_SHIM_MIN_BYTES=1 and GPO_OFFLOAD_MIN_BYTES=1 (the library's
  // own floor) would send a 1000-byte SHA256() to the agent.
  const std::vector<std::string> low = {"GPO_SHIM_MIN_BYTES=1", "GPO_OFFLOAD_MIN_BYTES=1"};
  j0 = jobs();
  plain = run_env({ENV_PROBE, "shim", agent.socket(), SHIM_PATH}, low, false);
  ASSERT_EQ(plain.exit_code, 0) << plain.out;
  EXPECT_EQ(jobs() - j0, 1u) << plain.out;
  j0 = jobs();
  secure = run_env({ENV_PROBE, "shim", agent.socket(), SHIM_PATH}, low, true);
  ASSERT_EQ(secure.exit_code, 0) << secure.out;
  EXPECT_EQ(jobs() - j0, 0u) << "a setuid process took its shim threshold from its caller: " << secure.out;
  // The library's statistics: GPO_STATS_DIR names where PID.json goes at exit.
  char dir[] = "/tmp/gpo-stats-XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  chmod(dir, 0777);
  // (Its report, PID.json, and the counts file it maps while it runs when it counted a call.)
  auto files = [&](const char* ext) {
    size_t n = 0;
    for (const auto& e : std::filesystem::directory_iterator(dir)) n += !ext || e.path().extension() == ext;
    return n;
  };
  const std::vector<std::string> stats = {sock_env, std::string("GPO_STATS_DIR=") + dir};
  plain = run_env({ENV_PROBE, "library"}, stats, false);
  ASSERT_EQ(plain.exit_code, 0) << plain.out;
  EXPECT_EQ(files(".json"), 1u) << "the probe wrote no statistics where GPO_STATS_DIR said";
  const size_t before = files(nullptr);
  secure = run_env({ENV_PROBE, "library"}, stats, true);
  ASSERT_EQ(secure.exit_code, 0) << secure.out;
  EXPECT_EQ(files(nullptr), before) << "a setuid process wrote its statistics into a folder its caller chose";
  std::filesystem::remove_all(dir);
}

// ---- the uprobe goes only on files root owns ---------------------------------------------

TEST(OffloadAccess, TheUprobeGoesOnlyOnLibraryFilesRootOwnsAndNobodyElseCanWrite) {
  if (!is_root()) GTEST_SKIP() << "needs root for the BPF uprobe doorbell";
  InProcessAgent agent(agent_options("libowner", true));
  ASSERT_TRUE(agent.server().uprobe_doorbell()) << "root, yet the doorbell program did not load: "
                                                << agent.server().describe();
  // Copies of the library, mapped by this process: one owned by nobody, one root's but group-writable.
  const std::string dir = "/tmp/gpo-libcopy-" + std::to_string(getpid());
  std::filesystem::create_directories(dir);
  const std::string theirs = dir + "/libgpuoffload-theirs.so", writable = dir + "/libgpuoffload-writable.so";
  std::filesystem::copy_file(lib_path(), theirs, std::filesystem::copy_options::overwrite_existing);
  std::filesystem::copy_file(lib_path(), writable, std::filesystem::copy_options::overwrite_existing);
  ASSERT_EQ(chown(theirs.c_str(), kNobody, kNobody), 0);
  ASSERT_EQ(chmod(writable.c_str(), 0775), 0);
  void* h1 = dlopen(theirs.c_str(), RTLD_NOW | RTLD_LOCAL);
  void* h2 = dlopen(writable.c_str(), RTLD_NOW | RTLD_LOCAL);
  ASSERT_TRUE(h1 && h2) << dlerror();
  for (const auto& p : {theirs, writable}) {
    RawClient c;
    c.lib_path = p;
    ASSERT_TRUE(c.connect_and_register(agent.socket()));
    EXPECT_EQ(c.rep.doorbell, uint32_t(GPO_DOORBELL_SOCKET)) << "uprobe attached to " << p;
  }
  // The library itself: a uprobe where root owns it and only root can write it.
  struct stat st {};
  ASSERT_EQ(stat(lib_path().c_str(), &st), 0);
  const bool trusted = st.st_uid == 0 && !(st.st_mode & 022);
  RawClient own;
  own.lib_path = lib_path();
  ASSERT_TRUE(own.connect_and_register(agent.socket()));
  EXPECT_EQ(own.rep.doorbell, uint32_t(trusted ? GPO_DOORBELL_UPROBE : GPO_DOORBELL_SOCKET)) << lib_path();
  dlclose(h1);
  dlclose(h2);
  std::filesystem::remove_all(dir);
}

}  // namespace

namespace {

// Runs f as uid/gid nobody with no supplementary groups in a child; its exit code.
template <typename F>
int as_nobody(F f) {
  pid_t pid = fork();
  if (pid == 0) {
    alarm(30);
    if (setgroups(0, nullptr) != 0 || setgid(kNobody) != 0 || setuid(kNobody) != 0) _exit(100);
    _exit(f());
  }
  int st = 0;
  waitpid(pid, &st, 0);
  return WIFEXITED(st) ? WEXITSTATUS(st) : 200;
}

// The socket's mode keeps others out; should an administrator open it up
// (chmod 0666), the agent still checks the peer's credentials.
TEST(OffloadAccess, OnlyRootTheAgentsUserAndItsGroupGetIn) {
  if (!is_root()) GTEST_SKIP() << "needs root to connect as another user";
  auto o = agent_options("creds");
  o.socket_group = "gpo-test-no-such-group";  // the group: the socket's own (root's)
  InProcessAgent agent(o);
  ASSERT_EQ(chmod(agent.socket().c_str(), 0666), 0);
  std::string reason(128, '\0');
  int pipefd[2];
  ASSERT_EQ(pipe(pipefd), 0);
  int rc = as_nobody([&] {
    RawClient c;
    bool ok = c.connect_and_register(agent.socket());
    if (write(pipefd[1], c.rep.reason, sizeof(c.rep.reason)) < 0) return 3;
    return ok ? 1 : 0;
  });
  EXPECT_EQ(rc, 0) << "uid " << kNobody << " registered a slab";
  ASSERT_EQ(read(pipefd[0], reason.data(), reason.size()), ssize_t(reason.size()));
  EXPECT_NE(reason.find("may not use this agent"), std::string::npos) << reason;
  EXPECT_GE(agent.server().stats().connections_refused, 1u);
  RawClient own;
  EXPECT_TRUE(own.connect_and_register(agent.socket())) << "root refused";
  // --offload-allow-all: any user.
  auto o2 = agent_options("credsall");
  o2.allow_all_users = true;
  InProcessAgent open_agent(o2);
  EXPECT_EQ(as_nobody([&] {
              RawClient c;
              return c.connect_and_register(open_agent.socket()) ? 0 : 1;
            }),
            0);
}

// One user at its connection quota does not stop another.
TEST(OffloadAccess, OneUsersQuotaDoesNotStopAnother) {
  if (!is_root()) GTEST_SKIP() << "needs root to connect as another user";
  auto o = agent_options("uids");
  o.allow_all_users = true;
  o.uid_max_connections = 1;
  InProcessAgent agent(o);
  int go[2], done[2];
  ASSERT_EQ(pipe(go), 0);
  ASSERT_EQ(pipe(done), 0);
  pid_t pid = fork();
  if (pid == 0) {
    alarm(30);
    if (setgroups(0, nullptr) != 0 || setgid(kNobody) != 0 || setuid(kNobody) != 0) _exit(100);
    RawClient first, second;
    const bool a = first.connect_and_register(agent.socket());
    const bool b = second.connect_and_register(agent.socket());
    char c = a && !b ? 'y' : 'n';
    if (write(done[1], &c, 1) != 1) _exit(2);
    if (read(go[0], &c, 1) != 1) _exit(3);  // holds its connection while root registers
    _exit(0);
  }
  char c = 0;
  ASSERT_EQ(read(done[0], &c, 1), 1);
  EXPECT_EQ(c, 'y') << "nobody's first connection should register and its second be refused";
  RawClient root_client;
  EXPECT_TRUE(root_client.connect_and_register(agent.socket())) << root_client.rep.reason;
  ASSERT_EQ(write(go[1], "g", 1), 1);
  int st = 0;
  waitpid(pid, &st, 0);
  const auto j = agent.server().to_json();
  bool saw_nobody = false;
  for (const auto& u : j["uids"])
    if (u["uid"] == kNobody) saw_nobody = u["refused"].get<uint64_t>() >= 1;
  EXPECT_TRUE(saw_nobody) << j["uids"].dump();
}

// The uprobe stays while a client uses its file, goes with the last one,
// and one uid gets at most uid_max_uprobe_files files.
TEST(OffloadAccess, UprobeAttachmentsAreCountedCappedPerUidAndRemoved) {
  if (!is_root()) GTEST_SKIP() << "needs root for the BPF uprobe doorbell";
  struct stat st {};
  ASSERT_EQ(stat(lib_path().c_str(), &st), 0);
  if (st.st_uid != 0 || (st.st_mode & 022))
    GTEST_SKIP() << lib_path() << " is not root's alone (build as root): the agent rightly probes only such files";
  auto o = agent_options("uprobes", true);
  o.uid_max_uprobe_files = 2;
  InProcessAgent agent(o);
  ASSERT_TRUE(agent.server().uprobe_doorbell()) << "root, yet the doorbell program did not load: "
                                                << agent.server().describe();
  const std::string dir = "/tmp/gpo-libcopies-" + std::to_string(getpid());
  std::filesystem::create_directories(dir);
  std::vector<std::string> libs{lib_path()};
  std::vector<void*> handles;
  for (int i = 0; i < 2; ++i) {
    libs.push_back(dir + "/libgpuoffload-" + std::to_string(i) + ".so");
    std::filesystem::copy_file(lib_path(), libs.back(), std::filesystem::copy_options::overwrite_existing);
    chmod(libs.back().c_str(), 0755);
    handles.push_back(dlopen(libs.back().c_str(), RTLD_NOW | RTLD_LOCAL));
    ASSERT_TRUE(handles.back()) << dlerror();
  }
  auto wait_files = [&](size_t n) {
    for (int i = 0; i < 1000 && agent.server().uprobe_files() != n; ++i) usleep(2000);
    return agent.server().uprobe_files();
  };
  {
    RawClient a, b, c;
    a.lib_path = b.lib_path = libs[0];
    c.lib_path = libs[1];
    ASSERT_TRUE(a.connect_and_register(agent.socket()));
    ASSERT_TRUE(b.connect_and_register(agent.socket()));
    ASSERT_TRUE(c.connect_and_register(agent.socket()));
    EXPECT_EQ(a.rep.doorbell, uint32_t(GPO_DOORBELL_UPROBE));
    EXPECT_EQ(b.rep.doorbell, uint32_t(GPO_DOORBELL_UPROBE));
    EXPECT_EQ(c.rep.doorbell, uint32_t(GPO_DOORBELL_UPROBE));
    EXPECT_EQ(agent.server().uprobe_files(), 2u);
    // A third file for this uid: over its quota of 2, the socket doorbell serves.
    RawClient d;
    d.lib_path = libs[2];
    ASSERT_TRUE(d.connect_and_register(agent.socket()));
    EXPECT_EQ(d.rep.doorbell, uint32_t(GPO_DOORBELL_SOCKET));
    EXPECT_EQ(agent.server().uprobe_files(), 2u);
    c.~RawClient();
    new (&c) RawClient();
    EXPECT_EQ(wait_files(1), 1u) << "the uprobe outlived the last client of its file";
  }
  EXPECT_EQ(wait_files(0), 0u);
  for (void* h : handles) dlclose(h);
  std::filesystem::remove_all(dir);
}

// Doorbells the ring buffer could not take are counted in the status.
TEST(OffloadAccess, LostDoorbellsAreReported) {
  if (!is_root()) GTEST_SKIP() << "needs root for the BPF uprobe doorbell";
  struct stat st {};
  ASSERT_EQ(stat(lib_path().c_str(), &st), 0);
  if (st.st_uid != 0 || (st.st_mode & 022))
    GTEST_SKIP() << lib_path() << " is not root's alone (build as root): the agent rightly probes only such files";
  auto o = agent_options("lost", true);
  o.cpu_doorbells = false;  // the shared ring only: the loop is its one reader
  gpo::backend::CpuBackend be(1);
  gpo::loop::EventLoop loop;
  gpo::ipc::ClientServer server(o, be);
  server.register_with(loop);
  ASSERT_TRUE(server.uprobe_doorbell()) << "root, yet the doorbell program did not load: " << server.describe();
  std::thread t([&] { loop.run(false); });
  RawClient c;
  c.lib_path = lib_path();
  ASSERT_TRUE(c.connect_and_register(o.socket_path));
  ASSERT_EQ(c.rep.doorbell, uint32_t(GPO_DOORBELL_UPROBE));
  loop.stop();  // nobody drains the ring buffer now
  t.join();
  EXPECT_EQ(server.stats().doorbells_lost, 0u);
  // 1 MiB of 40-byte records: about 26,000 fit.
  for (int i = 0; i < 60000; ++i) gpo_doorbell(c.rep.slab_id, 0, GPO_OP_SHA256, 0);
  EXPECT_GT(server.stats().doorbells_lost, 0u);
  EXPECT_GT(server.to_json()["doorbells_lost"].get<uint64_t>(), 0u);
  server.unregister(loop);
}

}  // namespace
