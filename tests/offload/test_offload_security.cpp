// The agent's side of the offload socket against a local user who wants to
// hurt it (docs/security.md): files at its paths it must not delete or chmod,
// replies that cannot be delivered, batches one client floods, inputs that
// change under the libraries, compression levels and ranges that cost the
// agent memory or alias, running out of file descriptors, and the quotas of
// one user that must not stop another.
#include <grp.h>
#include <poll.h>
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#define ZSTD_STATIC_LINKING_ONLY  // ZSTD_estimateCCtxSize_usingCParams
#include <zstd.h>

#include <algorithm>
#include <atomic>
#include <deque>
#include <cstring>
#include <fstream>
#include <sstream>
#include <system_error>

#include "common/files.h"
#include "gpuoffload.h"
#include "kernels/zstd/zstd.h"
#include "offload/offload_env.h"
#include "offload/raw_client.h"

using namespace gpo::test;

namespace {

gpo::ipc::ServerOptions opts(const char* tag) {
  gpo::ipc::ServerOptions o = agent_options(tag);
  o.max_slab_bytes = 64ull << 20;
  return o;
}

// The agent component on a GateBackend, its loop on a thread.
struct GatedAgent {
  GateBackend gate;
  gpo::loop::EventLoop loop;
  gpo::ipc::ClientServer server;
  std::thread t;
  std::string path;
  GatedAgent(const gpo::ipc::ServerOptions& o, uint32_t room, uint64_t queue_bytes = 0)
      : gate(room, queue_bytes), server(o, gate), path(o.socket_path) {
    server.register_with(loop);
    t = std::thread([this] { loop.run(false); });
  }
  ~GatedAgent() {
    while (gate.held()) gate.release_one();
    loop.stop();
    t.join();
    server.unregister(loop);
  }
  // Waits (bounded) until the agent has taken n socket doorbells.
  bool wait_doorbells(uint64_t n) {
    for (int i = 0; i < 2000 && server.stats().doorbells_socket < n; ++i) usleep(2000);
    return server.stats().doorbells_socket >= n;
  }
};

// ---- files at the agent's paths ---------------------------------------------------------

TEST(OffloadSecurity, AFileAtTheSocketPathThatIsNotAStaleSocketIsNeverReplaced) {
  auto o = opts("notsock");
  gpo::backend::CpuBackend cpu(1);
  // A regular file: refused, left as it was.
  write_file(o.socket_path, "keep me");
  {
    gpo::loop::EventLoop loop;
    gpo::ipc::ClientServer server(o, cpu);
    try {
      server.register_with(loop);
      ADD_FAILURE() << "the agent took a path that holds a regular file";
    } catch (const std::runtime_error& e) {
      EXPECT_NE(std::string(e.what()).find("not a socket"), std::string::npos) << e.what();
    }
  }
  EXPECT_EQ(read_file(o.socket_path), "keep me");
  unlink(o.socket_path.c_str());
  // A symlink (to a file the agent must not touch): refused, neither followed nor removed.
  const std::string target = o.socket_path + ".target";
  write_file(target, "target");
  ASSERT_EQ(symlink(target.c_str(), o.socket_path.c_str()), 0);
  {
    gpo::loop::EventLoop loop;
    gpo::ipc::ClientServer server(o, cpu);
    EXPECT_THROW(server.register_with(loop), std::runtime_error);
  }
  struct stat st {};
  ASSERT_EQ(lstat(o.socket_path.c_str(), &st), 0) << "the symlink was removed";
  EXPECT_TRUE(S_ISLNK(st.st_mode));
  EXPECT_EQ(read_file(target), "target");
  unlink(o.socket_path.c_str());
  unlink(target.c_str());
}

TEST(OffloadSecurity, AStaleSocketOfThisUserIsReplacedAndALiveOneIsNot) {
  auto o = opts("stale");
  // The leftover of a killed agent: a socket file nobody listens on.
  int s = socket(AF_UNIX, SOCK_SEQPACKET, 0);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::strcpy(a.sun_path, o.socket_path.c_str());
  ASSERT_EQ(bind(s, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
  close(s);
  InProcessAgent agent(o);
  RawClient c;
  EXPECT_TRUE(c.connect_and_register(agent.socket()));
  // A second agent on the same path: the first keeps its socket.
  gpo::backend::CpuBackend cpu(1);
  gpo::loop::EventLoop loop;
  gpo::ipc::ClientServer second(o, cpu);
  EXPECT_THROW(second.register_with(loop), gpo::ipc::SocketBusy);
  RawClient d;
  EXPECT_TRUE(d.connect_and_register(agent.socket()));
}

TEST(OffloadSecurity, SocketIs0660WhateverTheUmask) {
  for (mode_t mask : {mode_t(0), mode_t(077)}) {
    const mode_t old = umask(mask);
    auto o = opts("mode");
    {
      InProcessAgent agent(o);
      umask(old);
      struct stat st {};
      ASSERT_EQ(stat(o.socket_path.c_str(), &st), 0);
      EXPECT_TRUE(S_ISSOCK(st.st_mode));
      EXPECT_EQ(st.st_mode & 07777, 0660u) << "umask " << std::oct << mask;
      // Group: the gpuoffload group where it exists, else the agent's own.
      const group* g = getgrnam("gpuoffload");
      EXPECT_EQ(st.st_gid, g ? g->gr_gid : getegid());
      // The plan page tells the same users that the agent serves.
      ASSERT_EQ(stat((o.socket_path + GPO_PLAN_SUFFIX).c_str(), &st), 0);
      EXPECT_EQ(st.st_mode & 07777, 0640u);
      EXPECT_EQ(st.st_gid, g ? g->gr_gid : getegid());
    }
    umask(old);
  }
  // --offload-allow-all: every local user may connect (quotas per uid still hold).
  auto o = opts("modeall");
  o.allow_all_users = true;
  InProcessAgent agent(o);
  struct stat st {};
  ASSERT_EQ(stat(o.socket_path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0666u);
  ASSERT_EQ(stat((o.socket_path + GPO_PLAN_SUFFIX).c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0644u);
}

TEST(OffloadSecurity, StoppingLeavesFilesThatReplacedTheSocketAndThePlanPage) {
  auto o = opts("replaced");
  const std::string plan = o.socket_path + GPO_PLAN_SUFFIX;
  auto agent = std::make_unique<InProcessAgent>(o);
  // Someone with access to the folder moves the agent's files away and puts others there.
  ASSERT_EQ(rename(o.socket_path.c_str(), (o.socket_path + ".moved").c_str()), 0);
  ASSERT_EQ(rename(plan.c_str(), (plan + ".moved").c_str()), 0);
  write_file(o.socket_path, "not the agent's");
  write_file(plan, "not the agent's either");
  agent.reset();
  EXPECT_EQ(read_file(o.socket_path), "not the agent's");
  EXPECT_EQ(read_file(plan), "not the agent's either");
  for (const auto& p : {o.socket_path, plan, o.socket_path + ".moved", plan + ".moved"}) unlink(p.c_str());
}

TEST(OffloadSecurity, APlanPagePathHoldingSomethingElseIsLeftAlone) {
  auto o = opts("planpath");
  const std::string plan = o.socket_path + GPO_PLAN_SUFFIX;
  const std::string target = plan + ".target";
  write_file(target, "target");
  ASSERT_EQ(symlink(target.c_str(), plan.c_str()), 0);
  {
    InProcessAgent agent(o);  // serves, without a plan page
    EXPECT_EQ(agent.server().plan_page_path(), "");
  }
  struct stat st {};
  ASSERT_EQ(lstat(plan.c_str(), &st), 0) << "the symlink was removed";
  EXPECT_TRUE(S_ISLNK(st.st_mode));
  EXPECT_EQ(read_file(target), "target");
  unlink(plan.c_str());
  unlink(target.c_str());
}

// ---- replies, levels, ranges --------------------------------------------------------------

TEST(OffloadSecurity, ARegistrationWhoseReplyCannotBeDeliveredHoldsNoSlab) {
  InProcessAgent agent(opts("noreply"));
  RawClient c;
  c.shut_read = true;  // the agent's REGISTERED cannot reach it
  ASSERT_TRUE(c.connect_to(agent.socket()));
  ASSERT_TRUE(c.register_slab());
  for (int i = 0; i < 1500 && agent.server().stats().slabs_released < 1; ++i) usleep(2000);
  const auto s = agent.server().stats();
  EXPECT_EQ(s.slabs, 1u);
  EXPECT_EQ(s.slabs_released, 1u) << "the agent keeps (and pins) a slab its client never heard of";
}

TEST(OffloadSecurity, CompressionLevelsAndAliasedRangesAreRejected) {
  InProcessAgent agent(opts("levels"));
  RawClient a;
  ASSERT_TRUE(a.connect_and_register(agent.socket()));
  auto zjob = [&](uint32_t i, uint16_t op, int level, uint64_t in_off, uint64_t out_off) {
    gpo_job* j = a.job(i);
    std::memset(j, 0, sizeof(*j));
    j->op = op;
    j->level = level;
    j->in_off = in_off;
    j->in_len = 4096;
    j->out_off = out_off;
    j->out_cap = 8192;
    j->aad_off = RawClient::kDataOff;
    __atomic_store_n(&j->state, GPO_JOB_SUBMITTED, __ATOMIC_RELEASE);
    a.ring(i);
    EXPECT_EQ(a.wait_final(i), uint32_t(GPO_JOB_DONE));
    const uint8_t st = j->status;
    a.reset(i);
    return st;
  };
  const uint64_t in = RawClient::kDataOff, out = RawClient::kDataOff + 65536;
  std::memset(a.base + in, 'z', 4096);
  EXPECT_EQ(zjob(0, GPO_OP_ZSTD_COMPRESS, 3, in, out), GPO_JS_OK);
  EXPECT_EQ(zjob(0, GPO_OP_ZSTD_COMPRESS, 19, in, out), GPO_JS_OK);
  // Above --offload-max-zstd-level (19): the client compresses it in its own memory.
  EXPECT_EQ(zjob(0, GPO_OP_ZSTD_COMPRESS, 22, in, out), GPO_JS_REJECTED);
  EXPECT_EQ(zjob(0, GPO_OP_ZSTD_COMPRESS, -200000, in, out), GPO_JS_REJECTED);  // under ZSTD_minCLevel()
  EXPECT_EQ(zjob(0, GPO_OP_ZLIB_COMPRESS, 9, in, out), GPO_JS_OK);
  EXPECT_EQ(zjob(0, GPO_OP_ZLIB_COMPRESS, 10, in, out), GPO_JS_REJECTED);
  EXPECT_EQ(zjob(0, GPO_OP_ZLIB_COMPRESS, -2, in, out), GPO_JS_REJECTED);
  // Output over the job's own input: rejected (the client never does this).
  EXPECT_EQ(zjob(0, GPO_OP_ZSTD_COMPRESS, 1, in, in + 100), GPO_JS_REJECTED);
  EXPECT_EQ(zjob(0, GPO_OP_ZSTD_COMPRESS, 1, in + 100, in), GPO_JS_REJECTED);
  // GCM: the AAD under the output.
  gpo_job* j = a.job(1);
  std::memset(j, 0, sizeof(*j));
  j->op = GPO_OP_AES256_GCM_ENCRYPT;
  j->iv_len = 12;
  j->in_off = in;
  j->in_len = 256;
  j->out_off = out;
  j->out_cap = 256;
  j->aad_off = out + 128;
  j->aad_len = 16;
  __atomic_store_n(&j->state, GPO_JOB_SUBMITTED, __ATOMIC_RELEASE);
  a.ring(1);
  ASSERT_EQ(a.wait_final(1), uint32_t(GPO_JOB_DONE));
  EXPECT_EQ(j->status, GPO_JS_REJECTED);
}

// ---- batches: fair, bounded, on a snapshot ------------------------------------------------

// Capacity one batch; batches of at most 4. A floods 15 jobs, then B rings
// one: B's job goes in the first batch formed after its doorbell, behind at
// most two batches (the one running and one full one queued), and no more
// than two batches are ever at the backend.
TEST(OffloadFairness, AFloodingClientDelaysAnotherByAtMostTwoBatches) {
  auto o = opts("fair");
  o.batch_max = 4;
  GatedAgent ga(o, 1);
  RawClient a, b;
  ASSERT_TRUE(a.connect_and_register(ga.path));
  ASSERT_TRUE(b.connect_and_register(ga.path));
  std::memset(a.base + RawClient::kDataOff, 'A', 64);
  std::memset(b.base + RawClient::kDataOff, 'B', 64);
  for (uint32_t i = 0; i < 15; ++i) {
    a.sha_job(i, 64);
    a.ring(i);
  }
  ASSERT_TRUE(ga.wait_doorbells(15));
  const size_t ahead = ga.gate.sizes().size();
  EXPECT_LE(ahead, 2u) << "batches handed to a backend with no room";
  b.sha_job(0, 64);
  b.ring(0);
  ASSERT_TRUE(ga.wait_doorbells(16));
  usleep(20000);
  size_t index = 0;
  bool found = false;
  for (size_t k = 0; k < 20 && !found; ++k) {
    ASSERT_TRUE(ga.gate.wait_arrived(k + 1)) << "batch " << k << " never came";
    auto tags = ga.gate.release_one();
    if (std::find(tags.begin(), tags.end(), uint8_t('B')) != tags.end()) {
      found = true;
      index = k;
    }
  }
  ASSERT_TRUE(found);
  EXPECT_EQ(index, ahead) << "B's job waited behind A's later jobs";
  EXPECT_LE(ga.gate.max_held(), 2u);
  for (size_t s : ga.gate.sizes()) EXPECT_LE(s, 4u);
  // The rest goes as batches complete: every job done once.
  for (int k = 0; k < 5000 && ga.server.stats().jobs_done < 16; ++k) {
    if (ga.gate.held()) ga.gate.release_one();
    else usleep(1000);
  }
  EXPECT_EQ(b.wait_final(0), uint32_t(GPO_JOB_DONE));
  EXPECT_EQ(b.job(0)->status, GPO_JS_OK);
  for (uint32_t i = 0; i < 15; ++i) EXPECT_EQ(a.wait_final(i), uint32_t(GPO_JOB_DONE)) << i;
  EXPECT_LE(ga.gate.max_held(), 2u);
  EXPECT_EQ(ga.server.stats().jobs_done, 16u);
}

// A backend that runs queued batches together (a GPU) says how much it wants
// waiting (Capacity::queue_bytes): full batches go to it until that much
// input waits there, and no further.
TEST(OffloadFairness, AGpuLikeBackendGetsItsRunOfQueuedBatchesAndNoMore) {
  auto o = opts("gpuqueue");
  o.batch_max = 2;
  GatedAgent ga(o, 1, 6000);  // room for one batch, 6000 bytes more waiting
  RawClient a;
  ASSERT_TRUE(a.connect_and_register(ga.path));
  for (uint32_t i = 0; i < 16; ++i) {
    a.sha_job(i, 1000);
    a.ring(i);
  }
  ASSERT_TRUE(ga.wait_doorbells(16));
  usleep(20000);
  // [1 job] at once, then full batches of 2000 bytes while less than 6000 wait: 4 batches, 7000 bytes.
  EXPECT_EQ(ga.gate.sizes().size(), 4u);
  EXPECT_LE(ga.gate.max_held_bytes(), 6000u + 2000u);
  for (int k = 0; k < 5000 && ga.server.stats().jobs_done < 16; ++k) {
    if (ga.gate.held()) ga.gate.release_one();
    else usleep(1000);
  }
  for (uint32_t i = 0; i < 16; ++i) EXPECT_EQ(a.wait_final(i), uint32_t(GPO_JOB_DONE)) << i;
}

// A compression job goes to the backend marked private_input: the CPU backend
// runs it on a copy taken just before libzstd reads it, never on the shared
// slab (where the match finder reads next depends on bytes read before). A
// hash reads the slab in place: a client changing it changes only its digest.
TEST(OffloadSecurity, CompressionJobsReachTheBackendMarkedForAnInputSnapshot) {
  GatedAgent ga(opts("snapshot"), 4);
  RawClient a;
  ASSERT_TRUE(a.connect_and_register(ga.path));
  for (uint32_t i = 0; i < 4; ++i) {
    if (i % 2) a.sha_job(i, 100);
    else a.zstd_job(i, 1000);
    a.ring(i);
  }
  ASSERT_TRUE(ga.gate.wait_arrived(1));
  ASSERT_TRUE(ga.wait_doorbells(4));
  for (int k = 0; k < 5000 && ga.server.stats().jobs_done < 4; ++k) {
    if (ga.gate.held()) ga.gate.release_one();
    else usleep(1000);
  }
  for (uint32_t i = 0; i < 4; ++i) EXPECT_EQ(a.wait_final(i), uint32_t(GPO_JOB_DONE)) << i;
  EXPECT_EQ(ga.gate.private_flags(GPO_OP_ZSTD_COMPRESS), std::vector<bool>({true, true}));
  EXPECT_EQ(ga.gate.private_flags(GPO_OP_SHA256), std::vector<bool>({false, false}));
}

}  // namespace

namespace {

// ---- quotas --------------------------------------------------------------------------------

TEST(OffloadQuotas, ConnectionsSlabBytesAndJobsPerUidAreCappedWithAReason) {
  auto o = opts("uidquota");
  o.uid_max_connections = 3;
  o.uid_max_slab_bytes = 2 << 20;  // two 1 MiB slabs
  o.uid_max_inflight = 6;
  o.max_inflight = 4;
  o.batch_max = 1000;
  o.batch_window_us = 300000;  // hold the batch so the quotas fill
  o.flush_when_idle = false;
  InProcessAgent agent(o);
  RawClient a, b, c, d;
  ASSERT_TRUE(a.connect_and_register(agent.socket()));
  ASSERT_TRUE(b.connect_and_register(agent.socket()));
  // Third connection: within the connection quota, but its slab would pass the uid's bytes.
  EXPECT_FALSE(c.connect_and_register(agent.socket()));
  EXPECT_EQ(c.rep.type, uint32_t(GPO_MSG_REFUSED));
  EXPECT_NE(std::string(c.rep.reason).find("--offload-uid-slab-mb"), std::string::npos) << c.rep.reason;
  // The refused one's connection went: the fourth is within the connection quota again...
  RawClient e;
  ASSERT_TRUE(e.connect_to(agent.socket()));
  // ...and a fifth is not.
  EXPECT_FALSE(d.connect_and_register(agent.socket()));
  EXPECT_NE(std::string(d.rep.reason).find("connections"), std::string::npos) << d.rep.reason;
  // Jobs in flight: 4 per client, 6 for the uid.
  for (uint32_t i = 0; i < 5; ++i) {
    a.sha_job(i, 64);
    a.ring(i);
  }
  for (uint32_t i = 0; i < 5; ++i) {
    b.sha_job(i, 64);
    b.ring(i);
  }
  int ok = 0, rejected = 0;
  for (RawClient* x : {&a, &b})
    for (uint32_t i = 0; i < 5; ++i) {
      ASSERT_EQ(x->wait_final(i), uint32_t(GPO_JOB_DONE));
      (x->job(i)->status == GPO_JS_OK ? ok : rejected)++;
    }
  EXPECT_EQ(ok, 6);  // a: 4 (its own quota), b: 2 (the uid's)
  EXPECT_EQ(rejected, 4);
  const auto j = agent.server().to_json();
  EXPECT_EQ(j["jobs_over_quota"], 4u);
  EXPECT_EQ(j["limits"]["connections_per_uid"], 3u);
  EXPECT_EQ(j["limits"]["slab_bytes_per_uid"], uint64_t(2) << 20);
  ASSERT_EQ(j["uids"].size(), 1u);
  EXPECT_EQ(j["uids"][0]["uid"], geteuid());
  EXPECT_EQ(j["uids"][0]["connections"], 3u);
  EXPECT_EQ(j["uids"][0]["slab_bytes"], uint64_t(2) << 20);
  EXPECT_EQ(j["uids"][0]["refused"], 2u);
}

TEST(OffloadQuotas, AllSlabMemoryTogetherIsCapped) {
  auto o = opts("totalcap");
  o.max_slab_bytes_total = 3 << 20;
  InProcessAgent agent(o);
  RawClient a, b, c;
  ASSERT_TRUE(a.connect_and_register(agent.socket(), 2 << 20));
  EXPECT_FALSE(b.connect_and_register(agent.socket(), 2 << 20));
  EXPECT_NE(std::string(b.rep.reason).find("--offload-max-slab-total-mb"), std::string::npos) << b.rep.reason;
  EXPECT_TRUE(c.connect_and_register(agent.socket(), 1 << 20));
  EXPECT_EQ(agent.server().stats().slab_bytes, uint64_t(3) << 20);
}

// libgpuoffload over quota: refused, it computes every job itself, right.
TEST(OffloadQuotas, AClientOverQuotaFallsBackWithTheSameResults) {
  auto o = opts("libquota");
  o.uid_max_slab_bytes = 1 << 20;  // under the library's default slab (64 MiB)
  InProcessAgent agent(o);
  gpo_set_socket(agent.socket().c_str());
  gpo_client_stats s0{}, s1{};
  gpo_get_stats(&s0);
  for (int i = 0; i < 3; ++i) {
    Bytes in = random_bytes(5000 + size_t(i), uint32_t(i)), d(32);
    const void* p = in.data();
    size_t n = in.size();
    ASSERT_EQ(gpo_sha256_batch(&p, &n, 1, d.data()), GPO_OK);
    EXPECT_EQ(d, ref_sha256(in));
  }
  gpo_get_stats(&s1);
  EXPECT_EQ(s1.by_agent, s0.by_agent);
  EXPECT_EQ(s1.local_no_agent - s0.local_no_agent, 3u);
  EXPECT_GE(agent.server().stats().registrations_refused, 1u);
  gpo_set_socket(nullptr);
}

// ---- out of file descriptors ---------------------------------------------------------------

// The agent's process runs out of fds while a client connects: the waiting
// connection is closed (the client computes locally), the loop does not spin
// on the listening socket, and once fds are back the agent serves again.
TEST(OffloadSecurity, OutOfFileDescriptorsTheLoopDoesNotSpinAndServesAgain) {
  const std::string sock = unique_socket("emfile");
  int ready[2], cmd[2], report[2];
  ASSERT_EQ(pipe(ready), 0);
  ASSERT_EQ(pipe(cmd), 0);
  ASSERT_EQ(pipe(report), 0);
  pid_t child = fork();
  if (child == 0) {
    // The agent, in its own process (its fd table is the one to exhaust).
    alarm(60);
    auto o = opts("emfile");
    o.socket_path = sock;
    gpo::backend::CpuBackend be(1);
    gpo::loop::EventLoop loop;
    gpo::ipc::ClientServer server(o, be);
    server.register_with(loop);
    std::thread t([&] { loop.run(false); });
    std::vector<int> fillers;
    for (int fd; (fd = open("/dev/null", O_RDONLY | O_CLOEXEC)) >= 0;) fillers.push_back(fd);
    char c = 'r';
    if (write(ready[1], &c, 1) != 1) _exit(2);
    // Told that a client is waiting: count the loop's callbacks over 500 ms.
    if (read(cmd[0], &c, 1) != 1) _exit(3);
    usleep(200000);
    const uint64_t d0 = loop.dispatches();
    usleep(500000);
    uint64_t msg[2] = {loop.dispatches() - d0, server.stats().accept_no_fd};
    for (int fd : fillers) close(fd);
    if (write(report[1], msg, sizeof msg) != sizeof msg) _exit(4);
    if (read(cmd[0], &c, 1) != 1) _exit(5);  // the test connected again
    loop.stop();
    t.join();
    server.unregister(loop);
    _exit(0);
  }
  char c;
  ASSERT_EQ(read(ready[0], &c, 1), 1);
  {
    RawClient a;
    ASSERT_TRUE(a.connect_to(sock));  // the kernel queues it; the agent cannot accept it
    EXPECT_FALSE(a.register_slab()) << "registered with an agent that had no fd for it";
    ASSERT_EQ(write(cmd[1], "c", 1), 1);
    uint64_t msg[2] = {};
    ASSERT_EQ(read(report[0], msg, sizeof msg), ssize_t(sizeof msg));
    EXPECT_LT(msg[0], 50u) << "the loop ran " << msg[0] << " callbacks in 500 ms with nothing to do";
    EXPECT_GE(msg[1], 1u);
  }
  RawClient b;
  EXPECT_TRUE(b.connect_and_register(sock)) << "the agent did not serve again once fds were back";
  ASSERT_EQ(write(cmd[1], "d", 1), 1);
  int st = 0;
  waitpid(child, &st, 0);
  EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << st;
}

TEST(OffloadSecurity, ALoopThatCannotReadItsStopSignalsRefusesToRun) {
  pid_t child = fork();
  if (child == 0) {
    alarm(20);
    gpo::loop::EventLoop loop;
    while (open("/dev/null", O_RDONLY | O_CLOEXEC) >= 0) {
    }
    try {
      loop.run(true);  // would block SIGTERM with nothing to read it
    } catch (const std::runtime_error&) {
      _exit(0);
    }
    _exit(1);
  }
  int st = 0;
  waitpid(child, &st, 0);
  EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << "status " << st;
}

// ---- what workers keep --------------------------------------------------------------------

TEST(OffloadSecurity, WorkersDoNotKeepTheMemoryOfTheLargestJob) {
  // A level-15 job of 4 MiB makes a context of about 68 MB; the thread must not keep it.
  Bytes in = random_bytes(4 << 20, 5), out(ZSTD_compressBound(in.size()));
  ASSERT_GT(ZSTD_estimateCCtxSize_usingCParams(ZSTD_getCParams(15, in.size(), 0)), gpo::zstd::kKeepContextBytes);
  bool err = false;
  ASSERT_GT(gpo::zstd::cpu_compress(in, out, 15, &err), 0u);
  ASSERT_FALSE(err);
  EXPECT_LE(gpo::zstd::cpu_context_bytes(), gpo::zstd::kKeepContextBytes);
  // A small job at level 3 keeps its (small) context for the next one.
  ASSERT_GT(gpo::zstd::cpu_compress({in.data(), 4096}, out, 3, &err), 0u);
  EXPECT_GT(gpo::zstd::cpu_context_bytes(), 0u);
}

}  // namespace

namespace {

TEST(OffloadFairness, FairQueueTakesTurnsByUserThenClient) {
  gpo::ipc::FairQueue<int> q;
  // uid 1: client 10 floods (100..107), client 11 has one job (200); uid 2: client 20 has two (300, 301).
  for (int i = 0; i < 8; ++i) q.push(1, 10, 100 + i);
  q.push(1, 11, 200);
  q.push(2, 20, 300);
  q.push(2, 20, 301);
  auto one = [](int) { return uint64_t(1); };
  EXPECT_EQ(q.take(4, 1000, one), (std::vector<int>{100, 300, 200, 301}));
  EXPECT_EQ(q.take(3, 1000, one), (std::vector<int>{101, 102, 103}));
  // The byte cap ends a batch (after at least one job).
  EXPECT_EQ(q.take(10, 2, one), (std::vector<int>{104, 105}));
  EXPECT_EQ(q.take(10, 0, one), (std::vector<int>{106}));
  EXPECT_EQ(q.size(), 1u);
  EXPECT_EQ(q.take(10, 1000, one), (std::vector<int>{107}));
  EXPECT_TRUE(q.empty());
}

// The CPU backend, counting for each batch that holds a victim's job (known
// by its input size) the jobs the backend held, not yet completed, when it
// was handed over: the queue the victim's job joined. Counted on the agent's
// own thread at hand-over, it does not depend on when the victim's thread
// runs on a loaded machine.
class TapBackend final : public gpo::backend::Backend {
 public:
  TapBackend(unsigned threads, size_t victim_bytes) : cpu_(threads), victim_bytes_(victim_bytes) {}
  std::string name() const override { return "tap"; }
  void submit(gpo::backend::Batch& b, gpo::backend::Completion done) override {
    bool victim = false;
    for (const auto& j : b.jobs) victim = victim || j.in.size() == victim_bytes_;
    if (victim) {
      std::lock_guard lk(mu_);
      waits_.push_back(submitted_ - completed_.load());
    }
    submitted_ += b.jobs.size();
    cpu_.submit(b, [this, done = std::move(done)](gpo::backend::Batch& bb) {
      completed_ += bb.jobs.size();
      done(bb);
    });
  }
  gpo::backend::Stats stats() const override { return cpu_.stats(); }
  gpo::backend::Capacity capacity() const override { return cpu_.capacity(); }
  std::vector<uint64_t> waits() {
    std::lock_guard lk(mu_);
    return waits_;
  }

 private:
  gpo::backend::CpuBackend cpu_;
  size_t victim_bytes_;
  uint64_t submitted_ = 0;  // the loop thread's
  std::atomic<uint64_t> completed_{0};
  std::mutex mu_;
  std::vector<uint64_t> waits_;
};

// A flooder process keeps 800 jobs in flight; the victim runs 1 KiB jobs one
// at a time. What it waits behind is counted in jobs: those the backend held
// when the victim's batch came (at most twice its capacity in batches of at
// most --offload-batch jobs), then its own batch; that its job goes in the
// first batch formed after its doorbell, the gated test above shows exactly.
// Without turns and a bound on what the backend holds, it queues behind the
// whole flood. Wall times are printed, not asserted.
TEST(OffloadFairness, AVictimWaitsForAFewBatchesNotForTheFlood) {
  auto o = opts("flood");
  o.batch_max = 16;
  constexpr unsigned kThreads = 2;
  constexpr size_t kVictimBytes = 1024;
  gpo_set_socket(o.socket_path.c_str());
  setenv("GPO_TIMEOUT_MS", "20000", 1);
  int go[2], stop[2], started[2];
  ASSERT_EQ(pipe(go), 0);
  ASSERT_EQ(pipe(stop), 0);
  ASSERT_EQ(pipe(started), 0);
  // The flooder is forked before this process starts any thread (a child of
  // a threaded process may inherit a lock held by another thread: an
  // allocator's under the sanitizers); it starts when the agent serves.
  pid_t flooder = fork();
  if (flooder == 0) {
    alarm(60);
    close(go[1]);
    close(started[0]);
    char g;
    if (read(go[0], &g, 1) != 1) _exit(2);
    std::atomic<bool> done{false};
    std::atomic<int> bad{0};
    std::vector<std::thread> ts;
    for (int t = 0; t < 4; ++t)
      ts.emplace_back([&, t] {
        const Bytes in = random_bytes(16 << 10, uint32_t(t));
        std::vector<Bytes> dig(200, Bytes(32));
        std::deque<std::pair<gpo_handle*, size_t>> q;
        for (int i = 0; i < 200000 && !done; ++i) {
          const size_t k = size_t(i) % dig.size();
          if (q.size() == dig.size()) {
            if (gpo_wait(q.front().first, nullptr) != GPO_OK) bad++;
            q.pop_front();
          }
          gpo_request r{GPO_SHA256, in.data(), in.size(), dig[k].data(), 32, nullptr, nullptr, 0, nullptr, 0, nullptr, 0, 0};
          gpo_handle* h = nullptr;
          if (gpo_submit(&r, &h) != GPO_OK) bad++;
          q.emplace_back(h, k);
          if (i == 1000 && t == 0 && write(started[1], "s", 1) != 1) bad++;
          pollfd p{stop[0], POLLIN, 0};
          if (i % 64 == 0 && poll(&p, 1, 0) > 0) done = true;
        }
        for (auto& [h, k] : q) gpo_wait(h, nullptr);
      });
    for (auto& t : ts) t.join();
    _exit(bad ? 1 : 0);
  }
  close(go[0]);
  close(started[1]);
  TapBackend tap(kThreads, kVictimBytes);
  gpo::loop::EventLoop loop;
  gpo::ipc::ClientServer server(o, tap);
  server.register_with(loop);
  std::thread loop_thread([&] { loop.run(false); });
  ASSERT_EQ(write(go[1], "g", 1), 1);
  char c;
  pollfd pf{started[0], POLLIN, 0};
  const bool flooding = poll(&pf, 1, 30000) > 0 && read(started[0], &c, 1) == 1;
  if (!flooding) {
    kill(flooder, SIGKILL);
    waitpid(flooder, nullptr, 0);
    loop.stop();
    loop_thread.join();
    server.unregister(loop);
    FAIL() << "the flooder never got going";
  }
  std::vector<double> waited_ms;
  uint64_t backlog = 0;
  gpo_client_stats s0{}, s1{};
  gpo_get_stats(&s0);
  for (int i = 0; i < 30; ++i) {
    const Bytes in = random_bytes(kVictimBytes, uint32_t(1000 + i));
    Bytes d(32);
    const void* p = in.data();
    size_t n = in.size();
    const auto j = server.to_json();
    backlog = std::max<uint64_t>(backlog, j["jobs_waiting"].get<uint64_t>() + j["jobs_at_backend"].get<uint64_t>());
    const auto t0 = std::chrono::steady_clock::now();
    ASSERT_EQ(gpo_sha256_batch(&p, &n, 1, d.data()), GPO_OK);
    waited_ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    EXPECT_EQ(d, ref_sha256(in));
  }
  gpo_get_stats(&s1);
  ASSERT_EQ(write(stop[1], "x", 1), 1);
  int st = 0;
  waitpid(flooder, &st, 0);
  EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << "the flooder saw errors";
  gpo_set_socket(nullptr);
  loop.stop();
  loop_thread.join();
  server.unregister(loop);
  EXPECT_EQ(s1.by_agent - s0.by_agent, 30u) << "victim jobs were computed locally: the test shows nothing";
  std::vector<uint64_t> waited_jobs = tap.waits();
  ASSERT_EQ(waited_jobs.size(), 30u);
  std::sort(waited_jobs.begin(), waited_jobs.end());
  std::sort(waited_ms.begin(), waited_ms.end());
  // Capacity: kThreads batches running and as many queued.
  const uint64_t bound = 2 * kThreads * o.batch_max;
  std::printf("victim: jobs at the backend when its batch came: median %llu, max %llu (bound %llu); "
              "wall ms: median %.2f, "
              "max %.2f; flood backlog up to %llu jobs\n",
              (unsigned long long)waited_jobs[waited_jobs.size() / 2], (unsigned long long)waited_jobs.back(),
              (unsigned long long)bound, waited_ms[waited_ms.size() / 2], waited_ms.back(),
              (unsigned long long)backlog);
  EXPECT_GT(backlog, 4 * bound) << "the flood did not build a backlog: the test shows nothing";
  EXPECT_LE(waited_jobs.back(), bound);
}

}  // namespace
