// The agent's side of the offload socket against a local user who wants to
// hurt it (docs/security.md): files at its paths it must not delete or chmod,
// replies that cannot be delivered, batches one client floods, inputs that
// change under the libraries, compression levels and ranges that cost the
// agent memory or alias, running out of file descriptors, and the quotas of
// one user that must not stop another.
#include <grp.h>
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <atomic>
#include <cstring>
#include <fstream>
#include <sstream>

#include "gpuoffload.h"
#include "offload/offload_env.h"
#include "offload/raw_client.h"

using namespace gpo::test;

namespace {

gpo::ipc::ServerOptions opts(const char* tag) {
  gpo::ipc::ServerOptions o;
  o.socket_path = unique_socket(tag);
  o.uprobe_doorbell = false;
  o.max_slab_bytes = 64ull << 20;
  return o;
}

std::string read_file(const std::string& p) {
  std::ifstream f(p);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

void write_file(const std::string& p, const std::string& text) { std::ofstream(p) << text; }

// The agent component on a GateBackend, its loop on a thread.
struct GatedAgent {
  GateBackend gate;
  gpo::loop::EventLoop loop;
  gpo::ipc::ClientServer server;
  std::thread t;
  std::string path;
  GatedAgent(const gpo::ipc::ServerOptions& o, uint32_t room) : gate(room), server(o, gate), path(o.socket_path) {
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

// Every job goes to the backend marked private_input: the CPU backend runs it
// on a copy taken just before the library reads it, never on the shared slab.
TEST(OffloadSecurity, EveryJobReachesTheBackendMarkedForAnInputSnapshot) {
  GatedAgent ga(opts("snapshot"), 4);
  RawClient a;
  ASSERT_TRUE(a.connect_and_register(ga.path));
  for (uint32_t i = 0; i < 3; ++i) {
    a.sha_job(i, 100);
    a.ring(i);
  }
  ASSERT_TRUE(ga.gate.wait_arrived(1));
  ASSERT_TRUE(ga.wait_doorbells(3));
  EXPECT_TRUE(ga.gate.all_private());
}

}  // namespace
