// The agent component under many clients and hostile ones: processes and
// threads at once with every job completed exactly once; descriptors out of
// the slab, for another process's slab, with unknown ops, and bad
// registrations are refused while the agent keeps serving the others.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/futex.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>

#include <atomic>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <mutex>

#include "backend/ops.h"
#include "gpuoffload.h"
#include "ipc/slab_protocol.h"
#include "offload/offload_env.h"
#include "offload/raw_client.h"

using namespace gpo::test;

namespace {

gpo::ipc::ServerOptions opts(const char* tag) {
  gpo::ipc::ServerOptions o = agent_options(tag);
  o.max_slab_bytes = 64ull << 20;
  return o;
}

TEST(OffloadClients, HostileDescriptorsAreRefusedAndOthersServed) {
  InProcessAgent agent(opts("hostile"));
  RawClient a;
  ASSERT_TRUE(a.connect_and_register(agent.socket()));
  uint32_t sid = a.rep.slab_id;

  // A good job first: the raw client speaks the protocol right.
  std::memset(a.base + RawClient::kDataOff, 'x', 1000);
  a.sha_job(0, 1000);
  a.ring(sid, 0, GPO_OP_SHA256, 1000);
  ASSERT_EQ(a.wait_final(0), uint32_t(GPO_JOB_DONE));
  EXPECT_EQ(a.job(0)->status, GPO_JS_OK);
  EXPECT_EQ(hex(a.base + a.job(0)->out_off, 32), hex(ref_sha256(Bytes(1000, 'x'))));

  // Output past the end of the slab, input offset wrapping around, an unknown op,
  // descriptor and doorbell that disagree: each is completed as REJECTED, untouched.
  auto reject = [&](uint32_t i, auto mutate, uint32_t ring_op, uint64_t ring_len, const char* what) {
    a.sha_job(i, 100);
    __atomic_store_n(&a.job(i)->state, GPO_JOB_FREE, __ATOMIC_RELAXED);
    mutate(*a.job(i));
    __atomic_store_n(&a.job(i)->state, GPO_JOB_SUBMITTED, __ATOMIC_RELEASE);
    a.ring(sid, i, ring_op, ring_len);
    EXPECT_EQ(a.wait_final(i), uint32_t(GPO_JOB_DONE)) << what;
    EXPECT_EQ(a.job(i)->status, GPO_JS_REJECTED) << what;
  };
  auto before = agent.server().stats().jobs_rejected;
  reject(1, [&](gpo_job& j) { j.out_off = a.size - 16; }, GPO_OP_SHA256, 100, "output past the slab");
  reject(2, [&](gpo_job& j) { j.in_off = ~0ull - 10; }, GPO_OP_SHA256, 100, "input offset wraps");
  reject(3, [&](gpo_job& j) { j.in_off = 0; }, GPO_OP_SHA256, 100, "input over the job table");
  reject(4, [&](gpo_job& j) { j.op = 77; }, 77, 100, "unknown op");
  reject(5, [&](gpo_job& j) { (void)j; }, GPO_OP_SHA256, 99, "doorbell length differs");
  reject(6, [&](gpo_job& j) {
    j.op = GPO_OP_AES256_GCM_ENCRYPT;
    j.iv_len = 12;
    j.out_cap = 50;  // AES output must be in_len bytes
  }, GPO_OP_AES256_GCM_ENCRYPT, 100, "AES output size");
  EXPECT_EQ(agent.server().stats().jobs_rejected - before, 6u);

  // A doorbell for a job index past the table, and for a slab id nobody has.
  auto refused = agent.server().stats().doorbells_refused;
  a.ring(sid, 1000000, GPO_OP_SHA256, 100);
  a.ring(sid + 999, 0, GPO_OP_SHA256, 100);

  // Another process rings for this slab: refused, the job is not touched.
  a.sha_job(7, 100);
  pid_t child = fork();
  if (child == 0) {
    RawClient b;
    bool ok = b.connect_and_register(agent.socket());
    b.ring(sid, 7, GPO_OP_SHA256, 100);  // a's slab, b's connection
    usleep(100000);
    _exit(ok ? 0 : 1);
  }
  int status = 0;
  waitpid(child, &status, 0);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  usleep(100000);
  EXPECT_EQ(__atomic_load_n(&a.job(7)->state, __ATOMIC_ACQUIRE), uint32_t(GPO_JOB_SUBMITTED))
      << "the agent ran a job on a doorbell from another process";
  EXPECT_GE(agent.server().stats().doorbells_refused - refused, 3u);

  // ...and the agent still serves: a's own doorbell for job 7, and the library.
  a.ring(sid, 7, GPO_OP_SHA256, 100);
  EXPECT_EQ(a.wait_final(7), uint32_t(GPO_JOB_DONE));
  EXPECT_EQ(a.job(7)->status, GPO_JS_OK);
  gpo_set_socket(agent.socket().c_str());
  const char* msg = "still serving";
  size_t len = strlen(msg);
  uint8_t d[32];
  gpo_client_stats s0{}, s1{};
  gpo_get_stats(&s0);
  ASSERT_EQ(gpo_sha256_batch(reinterpret_cast<const void* const*>(&msg), &len, 1, d), GPO_OK);
  gpo_get_stats(&s1);
  EXPECT_EQ(s1.by_agent - s0.by_agent, 1u);
  EXPECT_EQ(hex(d, 32), hex(ref_sha256(Bytes(msg, msg + len))));
  gpo_set_socket(nullptr);
}

TEST(OffloadClients, BadRegistrationsAreRefused) {
  auto o = opts("reg");
  o.max_slab_bytes = 4 << 20;
  InProcessAgent agent(o);
  RawClient unsealed, big, ok;
  EXPECT_FALSE(unsealed.connect_and_register(agent.socket(), 1 << 20, false));
  EXPECT_EQ(unsealed.rep.type, uint32_t(GPO_MSG_REFUSED));
  EXPECT_NE(std::string(unsealed.rep.reason).find("F_SEAL_SHRINK"), std::string::npos) << unsealed.rep.reason;
  EXPECT_FALSE(big.connect_and_register(agent.socket(), 8 << 20));
  EXPECT_NE(std::string(big.rep.reason).find("quota"), std::string::npos) << big.rep.reason;
  EXPECT_TRUE(ok.connect_and_register(agent.socket()));
  EXPECT_EQ(agent.server().stats().registrations_refused, 2u);
}

TEST(OffloadClients, InflightQuotaRejectsTheExcessOnly) {
  auto o = opts("quota");
  o.max_inflight = 4;
  o.batch_max = 1000;
  o.batch_window_us = 200000;  // hold the batch so the quota fills
  o.flush_when_idle = false;
  InProcessAgent agent(o);
  RawClient a;
  ASSERT_TRUE(a.connect_and_register(agent.socket()));
  for (uint32_t i = 0; i < 10; ++i) {
    a.sha_job(i, 64);
    a.ring(a.rep.slab_id, i, GPO_OP_SHA256, 64);
  }
  int ok = 0, rejected = 0;
  for (uint32_t i = 0; i < 10; ++i) {
    ASSERT_EQ(a.wait_final(i), uint32_t(GPO_JOB_DONE));
    (a.job(i)->status == GPO_JS_OK ? ok : rejected)++;
  }
  EXPECT_EQ(ok, 4);
  EXPECT_EQ(rejected, 6);
  EXPECT_EQ(agent.server().stats().jobs_over_quota, 6u);
}

// The trace of a job across the two processes: the agent times the way from
// the client's doorbell stamp to its claim, counting only stamps that can be
// true (not ahead of the claim, not older than 10 s), and stamps each
// completion for the client.
TEST(OffloadClients, DoorbellStampsAreTimedOnlyWhenPlausibleAndCompletionsStamped) {
  InProcessAgent agent(opts("stamps"));
  RawClient a;
  ASSERT_TRUE(a.connect_and_register(agent.socket()));
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  const uint64_t now = uint64_t(ts.tv_sec) * 1000000000ull + uint64_t(ts.tv_nsec);
  const uint64_t stamps[] = {now, UINT64_MAX, 1, 0};  // true, ahead, ancient, none
  for (uint32_t i = 0; i < 4; ++i) {
    a.sha_job(i, 64);
    a.job(i)->rung_ns = stamps[i];
    a.ring(i);
  }
  for (uint32_t i = 0; i < 4; ++i) {
    ASSERT_EQ(a.wait_final(i), uint32_t(GPO_JOB_DONE)) << i;
    EXPECT_EQ(a.job(i)->status, uint8_t(GPO_JS_OK)) << i;
    EXPECT_GE(a.job(i)->done_ns, now) << i;
  }
  // The backend's completion counts its jobs after it woke the client.
  for (int k = 0; k < 300 && agent.server().per_job_us()["jobs"].get<uint64_t>() < 4; ++k) usleep(10000);
  const auto t = agent.server().per_job_us();
  EXPECT_EQ(t["jobs"].get<uint64_t>(), 4u);
  EXPECT_EQ(t["reaching_jobs"].get<uint64_t>(), 1u);
  EXPECT_GT(t["reaching"].get<double>(), 0.0);
  EXPECT_LT(t["reaching"].get<double>(), 3e6);  // us: bounded by wait_final's patience
}

TEST(OffloadClients, SlabReleasedWhenClientExits) {
  InProcessAgent agent(opts("release"));
  {
    RawClient a;
    ASSERT_TRUE(a.connect_and_register(agent.socket()));
  }
  for (int i = 0; i < 300 && agent.server().stats().slabs_released < 1; ++i) usleep(10000);
  EXPECT_EQ(agent.server().stats().slabs_released, 1u);
}

// Many processes x threads through libgpuoffload at once; each child checks
// every result against OpenSSL/libzstd and reports how many jobs the agent did.
TEST(OffloadClients, ManyProcessesAndThreadsExactlyOnce) {
  auto o = opts("many");
  o.batch_max = 16;
  constexpr int kProcs = 4, kThreads = 4, kJobsPerThread = 150;
  int pipes[kProcs][2], go[2];
  pid_t pids[kProcs];
  ASSERT_EQ(pipe(go), 0);
  // The children are forked before the agent's threads exist (a child of a
  // threaded process may inherit a lock another thread held: an allocator's
  // under the sanitizers), and start once it serves.
  for (int p = 0; p < kProcs; ++p) {
    ASSERT_EQ(pipe(pipes[p]), 0);
    pids[p] = fork();
    if (pids[p] == 0) {
      alarm(120);
      close(go[1]);
      char g;
      if (read(go[0], &g, 1) != 1) _exit(2);
      setenv("GPO_TIMEOUT_MS", "10000", 1);
      gpo_set_socket(o.socket_path.c_str());
      gpo_client_stats s0{};  // counters are inherited across fork: count from here
      gpo_get_stats(&s0);
      std::atomic<int> bad{0};
      std::vector<std::thread> ts;
      for (int t = 0; t < kThreads; ++t)
        ts.emplace_back([&, t] {
          for (int i = 0; i < kJobsPerThread; ++i) {
            uint32_t seed = uint32_t(p * 100000 + t * 1000 + i);
            Bytes in = text_bytes(1 + seed % 9000, seed), key = random_bytes(32, seed), iv = random_bytes(12, seed + 1);
            switch (i % 3) {
              case 0: {
                Bytes out(in.size()), tag(16), ref_tag;
                if (gpo_aes256_gcm_encrypt(key.data(), iv.data(), nullptr, 0, in.data(), in.size(), out.data(),
                                           tag.data()) != GPO_OK ||
                    out != ref_gcm_encrypt(key, iv, {}, in, ref_tag) || tag != ref_tag)
                  bad++;
                break;
              }
              case 1: {
                const void* m = in.data();
                size_t l = in.size();
                Bytes d(32);
                if (gpo_sha256_batch(&m, &l, 1, d.data()) != GPO_OK || d != ref_sha256(in)) bad++;
                break;
              }
              default: {
                Bytes out(gpo_zstd_compress_bound(in.size()));
                size_t n = 0;
                if (gpo_zstd_compress(out.data(), out.size(), in.data(), in.size(), 3, &n) != GPO_OK) bad++;
                out.resize(n);
                if (out != ref_zstd(in, 3)) bad++;
              }
            }
          }
        });
      for (auto& t : ts) t.join();
      gpo_client_stats s{};
      gpo_get_stats(&s);
      uint64_t msg[3] = {uint64_t(bad.load()), s.by_agent - s0.by_agent, s.local - s0.local};
      if (write(pipes[p][1], msg, sizeof(msg)) != sizeof(msg)) _exit(3);
      _exit(0);
    }
    close(pipes[p][1]);
  }
  close(go[0]);
  InProcessAgent agent(o, 2);
  for (int p = 0; p < kProcs; ++p) ASSERT_EQ(write(go[1], "g", 1), 1);
  close(go[1]);
  uint64_t by_agent = 0, local = 0;
  for (int p = 0; p < kProcs; ++p) {
    uint64_t msg[3] = {};
    ASSERT_EQ(read(pipes[p][0], msg, sizeof(msg)), ssize_t(sizeof(msg)));
    close(pipes[p][0]);
    int st = 0;
    waitpid(pids[p], &st, 0);
    EXPECT_EQ(msg[0], 0u) << "wrong results in process " << p;
    by_agent += msg[1];
    local += msg[2];
  }
  const uint64_t total = uint64_t(kProcs) * kThreads * kJobsPerThread;
  EXPECT_EQ(by_agent + local, total);  // every job completed once, by one side
  EXPECT_EQ(local, 0u) << "jobs fell back with the agent up";
  EXPECT_EQ(agent.server().stats().jobs_done, by_agent);
  EXPECT_GE(agent.server().stats().clients, uint64_t(kProcs));
}

// Jobs that arrive while the backend has no room gather into one batch, sent
// when a batch completes: no window to wait out, no batch per job.
TEST(OffloadClients, JobsGatherWhileTheBackendIsBusy) {
  auto o = opts("gather");
  GateBackend gate;
  gpo::loop::EventLoop loop;
  gpo::ipc::ClientServer server(o, gate);
  server.register_with(loop);
  std::thread t([&] { loop.run(false); });
  gpo_set_socket(o.socket_path.c_str());
  setenv("GPO_TIMEOUT_MS", "20000", 1);
  std::vector<Bytes> ins, digests(6, Bytes(32));
  std::vector<gpo_handle*> hs(6, nullptr);
  for (int i = 0; i < 6; ++i) ins.push_back(random_bytes(1000 + size_t(i), uint32_t(i)));
  auto submit = [&](int i) {
    gpo_request r{GPO_SHA256, ins[size_t(i)].data(), ins[size_t(i)].size(), digests[size_t(i)].data(), 32,
                  nullptr, nullptr, 0, nullptr, 0, nullptr, 0, 0};
    ASSERT_EQ(gpo_submit(&r, &hs[size_t(i)]), GPO_OK);
  };
  submit(0);
  ASSERT_TRUE(gate.wait_arrived(1));  // room: at once, alone
  for (int i = 1; i < 6; ++i) submit(i);
  for (int k = 0; k < 1000 && server.stats().doorbells_socket < 6; ++k) usleep(5000);
  ASSERT_EQ(server.stats().doorbells_socket, 6u);
  usleep(20000);
  EXPECT_EQ(gate.sizes().size(), 1u) << "jobs went to a backend with no room";
  gate.release_one();  // its completion sends the five that waited, as one batch
  ASSERT_TRUE(gate.wait_arrived(2));
  gate.release_one();
  for (int i = 0; i < 6; ++i) {
    ASSERT_EQ(gpo_wait(hs[size_t(i)], nullptr), GPO_OK);
    EXPECT_EQ(digests[size_t(i)], ref_sha256(ins[size_t(i)])) << i;
  }
  EXPECT_EQ(gate.sizes(), (std::vector<size_t>{1, 5}));
  EXPECT_EQ(server.stats().jobs_done, 6u);
  gpo_set_socket(nullptr);
  loop.stop();
  t.join();
  server.unregister(loop);
}

// The plan page: jobs the plan keeps in the process never reach the agent
// (no doorbell, no connection); a change of plan applies to the next call;
// a stopped agent's page sends everything back to the process.
TEST(OffloadClients, PlanPageKeepsJobsInTheProcess) {
  auto o = opts("plan");
  o.plan_min_bytes.fill(GPO_PLAN_NEVER);
  o.plan_min_bytes[GPO_OP_SHA256] = 1000;
  auto agent = std::make_unique<InProcessAgent>(o);
  const std::string page = agent->server().plan_page_path();
  ASSERT_EQ(page, o.socket_path + ".plan");
  struct stat st {};
  ASSERT_EQ(stat(page.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0640u);  // readable by those who may connect (docs/security.md)
  gpo_set_socket(o.socket_path.c_str());
  gpo_client_stats s0{}, s1{};
  gpo_get_stats(&s0);
  EXPECT_EQ(gpo_would_offload(GPO_SHA256, 999), 0);
  EXPECT_EQ(gpo_would_offload(GPO_SHA256, 1000), 1);
  EXPECT_EQ(gpo_would_offload(GPO_ZSTD_COMPRESS, 1 << 20), 0);
  auto sha = [](const Bytes& in) {
    const void* m = in.data();
    size_t l = in.size();
    Bytes d(32);
    EXPECT_EQ(gpo_sha256_batch(&m, &l, 1, d.data()), GPO_OK);
    EXPECT_EQ(d, ref_sha256(in));
  };
  sha(random_bytes(999, 1));   // kept
  sha(random_bytes(1000, 2));  // sent
  Bytes in = text_bytes(100000, 3), out(gpo_zstd_compress_bound(in.size()));
  size_t n = 0;
  ASSERT_EQ(gpo_zstd_compress(out.data(), out.size(), in.data(), in.size(), 1, &n), GPO_OK);
  out.resize(n);
  EXPECT_EQ(out, ref_zstd(in, 1));  // kept: the process's own libzstd
  gpo_get_stats(&s1);
  EXPECT_EQ(s1.local_by_plan - s0.local_by_plan, 2u);
  EXPECT_EQ(s1.by_agent - s0.by_agent, 1u);
  EXPECT_EQ(agent->server().stats().doorbells_socket, 1u) << "a kept job reached the agent";
  // A new plan applies at once: no more SHA-256 either.
  agent->server().set_plan(GPO_OP_SHA256, GPO_PLAN_NEVER);
  EXPECT_EQ(gpo_would_offload(GPO_SHA256, 1 << 20), 0);
  sha(random_bytes(5000, 4));
  // The agent stops: its page says so and goes; jobs stay here, nothing tries to connect.
  agent->server().set_plan(GPO_OP_SHA256, 0);
  EXPECT_EQ(gpo_would_offload(GPO_SHA256, 1), 1);
  agent.reset();
  EXPECT_NE(stat(page.c_str(), &st), 0) << "the page outlived its agent";
  EXPECT_EQ(gpo_would_offload(GPO_SHA256, 1 << 20), 0);
  gpo_client_stats s2{};
  gpo_get_stats(&s2);
  sha(random_bytes(5000, 5));
  gpo_client_stats s3{};
  gpo_get_stats(&s3);
  EXPECT_EQ(s3.local_no_agent - s2.local_no_agent, 1u);
  EXPECT_EQ(s3.connects, s2.connects);
  gpo_set_socket(nullptr);
}

}  // namespace
