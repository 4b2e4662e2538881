// The CPU backend's structure: batches run at once (a short batch is not held
// behind a long one), long splittable jobs cut across threads give the bytes
// of one call, every job runs exactly once and every batch completes once,
// private inputs, the per-thread key reuse of the AES reference, the
// workers' names, and their pinning: a job runs where its submitter waits.
#include <gtest/gtest.h>
#include <sched.h>
#include <zlib.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <random>
#include <thread>

#include "kernels/aes/aes.h"
#include "backend/cpu_backend.h"
#include "backend/ops.h"
#include "common/crypto_refs.h"

using namespace gpo;
using backend::Job;
using backend::OpId;
using backend::Status;
using gpo::test::Bytes;
using gpo::test::random_bytes;
using gpo::test::ref_ctr;
using gpo::test::ref_gcm_encrypt;

namespace {

Job ctr_job(const Bytes& key, const Bytes& iv, const Bytes& in, Bytes& out) {
  Job j;
  j.op = OpId::aes256_ctr;
  j.key = key;
  j.iv = iv;
  j.in = in;
  j.out = out;
  return j;
}

}  // namespace

TEST(CpuBackend, AShortBatchIsNotHeldBehindALongOne) {
  backend::CpuBackend cpu(2);
  // A: one SHA-256 of 96 MiB (sequential: one thread for a long while).
  // B: one small job submitted after it. B must complete first.
  Bytes big(96 << 20, 7), small(4096, 1), d1(32), d2(32);
  backend::Batch a, b;
  a.jobs.resize(1);
  a.jobs[0].op = OpId::sha256;
  a.jobs[0].in = big;
  a.jobs[0].out = d1;
  b.jobs.resize(1);
  b.jobs[0].op = OpId::sha256;
  b.jobs[0].in = small;
  b.jobs[0].out = d2;
  std::mutex mu;
  std::condition_variable cv;
  std::vector<char> order;
  auto done = [&](char which) {
    return [&, which](backend::Batch&) {
      std::lock_guard lk(mu);
      order.push_back(which);
      cv.notify_all();
    };
  };
  cpu.submit(a, done('A'));
  cpu.submit(b, done('B'));
  std::unique_lock lk(mu);
  ASSERT_TRUE(cv.wait_for(lk, std::chrono::minutes(2), [&] { return order.size() == 2; }));
  EXPECT_EQ(order, (std::vector<char>{'B', 'A'})) << "the second batch waited for the first";
  EXPECT_EQ(a.jobs[0].status, Status::ok);
  EXPECT_EQ(b.jobs[0].status, Status::ok);
  EXPECT_EQ(a.ran_on, "cpu");
}

TEST(CpuBackend, LongCtrJobSplitAcrossThreadsMatchesOneCall) {
  backend::CpuBackend cpu(4);
  const Bytes key = random_bytes(32, 1);
  // The low 64 bits of the counter wrap inside the job: the split must carry into the high half.
  Bytes iv = random_bytes(16, 2);
  for (int i = 8; i < 16; ++i) iv[i] = 0xff;
  iv[15] = 0xf0;
  for (size_t n : {size_t(3 << 20) + 5, size_t(1 << 20) + 16, size_t(8 << 20)}) {
    const Bytes in = random_bytes(n, uint32_t(n));
    Bytes out(n), inplace = in;
    backend::Batch b;
    b.jobs.push_back(ctr_job(key, iv, in, out));
    b.jobs.push_back(ctr_job(key, iv, inplace, inplace));  // in place
    b.jobs[1].in = inplace;
    const auto before = cpu.stats().split_jobs;
    cpu.run(b);
    EXPECT_EQ(cpu.stats().split_jobs - before, 2u) << "not split: n = " << n;
    ASSERT_EQ(b.jobs[0].status, Status::ok);
    ASSERT_EQ(b.jobs[1].status, Status::ok);
    const Bytes ref = ref_ctr(key, iv, in);
    EXPECT_TRUE(out == ref) << "n = " << n;
    EXPECT_TRUE(inplace == ref) << "in place, n = " << n;
  }
}

TEST(CpuBackend, LongCrc32AndMemcpyJobsSplitAcrossThreads) {
  backend::CpuBackend cpu(3);
  const size_t n = (5 << 20) + 77;
  const Bytes in = random_bytes(n, 9);
  Bytes crc_out(4), copy(n);
  backend::Batch b;
  b.jobs.resize(2);
  b.jobs[0].op = OpId::crc32;
  b.jobs[0].crc = 0x12345678;
  b.jobs[0].in = in;
  b.jobs[0].out = crc_out;
  b.jobs[1].op = OpId::memcpy;
  b.jobs[1].in = in;
  b.jobs[1].out = copy;
  cpu.run(b);
  EXPECT_EQ(cpu.stats().split_jobs, 2u);
  ASSERT_EQ(b.jobs[0].status, Status::ok);
  ASSERT_EQ(b.jobs[1].status, Status::ok);
  const uint32_t want = uint32_t(crc32_z(0x12345678, in.data(), n));
  const uint32_t got = uint32_t(crc_out[0]) | uint32_t(crc_out[1]) << 8 | uint32_t(crc_out[2]) << 16 |
                       uint32_t(crc_out[3]) << 24;
  EXPECT_EQ(got, want);
  EXPECT_EQ(b.jobs[0].out_len, 4u);
  EXPECT_TRUE(copy == in);
  EXPECT_EQ(b.jobs[1].out_len, n);
}

// Many batches of mixed ops from several threads at once: each batch completes
// exactly once, every job gets its status once, and the results are right.
TEST(CpuBackend, ManyConcurrentBatchesEachJobOnce) {
  backend::CpuBackend cpu(3);
  constexpr int kThreads = 4, kBatches = 40;
  const Bytes key = random_bytes(32, 3), iv12 = random_bytes(12, 4), iv16 = random_bytes(16, 5);
  std::atomic<int> bad{0}, completions{0};
  std::vector<std::thread> ts;
  for (int t = 0; t < kThreads; ++t)
    ts.emplace_back([&, t] {
      std::mt19937 rng{uint32_t(t)};
      for (int k = 0; k < kBatches; ++k) {
        const size_t njobs = 1 + rng() % 40;
        std::vector<Bytes> ins(njobs), outs(njobs);
        backend::Batch b;
        b.jobs.resize(njobs);
        for (size_t i = 0; i < njobs; ++i) {
          const size_t n = rng() % 3 == 0 ? rng() % (300 << 10) : rng() % 5000;
          ins[i] = random_bytes(n, rng());
          Job& j = b.jobs[i];
          j.cookie = i;
          j.in = ins[i];
          switch (i % 3) {
            case 0: j.op = OpId::sha256, outs[i].resize(32); break;
            case 1: j.op = OpId::aes256_gcm_encrypt, j.key = key, j.iv = iv12, outs[i].resize(n); break;
            default: j.op = OpId::aes256_ctr, j.key = key, j.iv = iv16, outs[i].resize(n); break;
          }
          j.out = outs[i];
        }
        std::mutex mu;
        std::condition_variable cv;
        int calls = 0;
        cpu.submit(b, [&](backend::Batch&) {
          std::lock_guard lk(mu);
          ++calls;
          cv.notify_all();
        });
        std::unique_lock lk(mu);
        if (!cv.wait_for(lk, std::chrono::minutes(2), [&] { return calls > 0; })) {
          bad++;
          return;
        }
        lk.unlock();
        completions++;
        for (size_t i = 0; i < njobs; ++i) {
          const Job& j = b.jobs[i];
          if (j.status != Status::ok || j.cookie != i) {
            bad++;
            continue;
          }
          if (j.op == OpId::aes256_ctr && outs[i] != ref_ctr(key, iv16, ins[i])) bad++;
          if (j.op == OpId::aes256_gcm_encrypt) {
            Bytes tag;
            const bool same = outs[i] == ref_gcm_encrypt(key, iv12, {}, ins[i], tag);
            if (!same || !std::equal(tag.begin(), tag.end(), j.tag.begin())) bad++;
          }
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
        std::lock_guard again(mu);  // a second done() would have bumped calls by now
        if (calls != 1) bad++;
      }
    });
  for (auto& t : ts) t.join();
  EXPECT_EQ(bad.load(), 0);
  EXPECT_EQ(completions.load(), kThreads * kBatches);
  EXPECT_EQ(cpu.stats().batches, uint64_t(kThreads * kBatches));
}

TEST(CpuBackend, RunJobsFromAnotherThreadWhileBatchesRun) {
  backend::CpuBackend cpu(2);
  const Bytes key = random_bytes(32, 6), iv = random_bytes(16, 7);
  const Bytes in = random_bytes(2 << 20, 8);
  Bytes out1(in.size()), out2(in.size());
  backend::Batch b;
  b.jobs.push_back(ctr_job(key, iv, in, out1));
  std::atomic<bool> got{false};
  cpu.submit(b, [&](backend::Batch&) { got = true; });
  Job j = ctr_job(key, iv, in, out2);
  Job* p = &j;
  const uint64_t ns = cpu.run_jobs(std::span<Job* const>(&p, 1));
  EXPECT_GT(ns, 0u);
  EXPECT_EQ(j.status, Status::ok);
  for (int i = 0; i < 1000 && !got; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_TRUE(got);
  EXPECT_TRUE(out1 == out2);
  EXPECT_TRUE(out1 == ref_ctr(key, iv, in));
}

TEST(CpuBackend, PrivateInputRunsOnACopy) {
  backend::CpuBackend cpu(2);
  const Bytes key = random_bytes(32, 10), iv = random_bytes(12, 11), iv16 = random_bytes(16, 12);
  const Bytes pt = random_bytes(70000, 12), big = random_bytes(3 << 20, 13);
  Bytes inplace = pt, out(big.size());
  backend::Batch b;
  b.jobs.resize(2);
  b.jobs[0].op = OpId::aes256_gcm_encrypt;
  b.jobs[0].key = key;
  b.jobs[0].iv = iv;
  b.jobs[0].in = inplace;
  b.jobs[0].out = inplace;
  b.jobs[0].private_input = true;
  b.jobs[1] = ctr_job(key, iv16, big, out);  // split, each range from its own copy
  b.jobs[1].private_input = true;
  cpu.run(b);
  ASSERT_EQ(b.jobs[0].status, Status::ok);
  Bytes tag;
  EXPECT_TRUE(inplace == ref_gcm_encrypt(key, iv, {}, pt, tag));
  EXPECT_TRUE(std::equal(tag.begin(), tag.end(), b.jobs[0].tag.begin()));
  EXPECT_TRUE(out == ref_ctr(key, iv16, big));
}

// The AES reference reuses a thread's key schedule while the key repeats:
// results must not depend on the job before (partial CTR blocks, direction
// changes, a failed tag check, another key).
TEST(CpuBackend, AesKeyReuseDoesNotLeakStateBetweenJobs) {
  const Bytes k1 = random_bytes(32, 20), k2 = random_bytes(32, 21), iv12 = random_bytes(12, 22),
              iv16 = random_bytes(16, 23);
  for (size_t n : {1ul, 17ul, 100ul, 4095ul, 4096ul}) {
    const Bytes pt = random_bytes(n, uint32_t(n));
    for (const Bytes* k : {&k1, &k1, &k2, &k1}) {
      Bytes out(n);
      aes::Job c{aes::Mode::ctr, aes::Dir::encrypt, k->data(), iv16.data(), {}, pt, out.data(), nullptr};
      ASSERT_EQ(aes::cpu_run(c), aes::Result::ok);
      EXPECT_TRUE(out == ref_ctr(*k, iv16, pt)) << n;
      Bytes ct(n), tag_ref, back(n);
      uint8_t tag[16];
      aes::Job e{aes::Mode::gcm, aes::Dir::encrypt, k->data(), iv12.data(), {}, pt, ct.data(), tag};
      ASSERT_EQ(aes::cpu_run(e), aes::Result::ok);
      EXPECT_TRUE(ct == ref_gcm_encrypt(*k, iv12, {}, pt, tag_ref)) << n;
      EXPECT_TRUE(std::equal(tag_ref.begin(), tag_ref.end(), tag)) << n;
      uint8_t bad[16];
      std::memcpy(bad, tag, 16);
      bad[3] ^= 0x40;
      aes::Job d{aes::Mode::gcm, aes::Dir::decrypt, k->data(), iv12.data(), {}, ct, back.data(), bad};
      EXPECT_EQ(aes::cpu_run(d), aes::Result::auth_failed) << n;
      d.tag = tag;
      ASSERT_EQ(aes::cpu_run(d), aes::Result::ok) << n;
      EXPECT_TRUE(back == pt) << n;
    }
  }
}

TEST(CpuBackend, CtrAddIsA128BitBigEndianAdd) {
  uint8_t iv[16], out[16];
  std::memset(iv, 0xff, 16);
  aes::ctr_add(iv, 1, out);
  for (int i = 0; i < 16; ++i) EXPECT_EQ(out[i], 0) << i;
  std::memset(iv, 0, 16);
  iv[7] = 1;
  iv[15] = 0xfe;
  aes::ctr_add(iv, 0x0102, out);
  EXPECT_EQ(out[15], 0x00);
  EXPECT_EQ(out[14], 0x02);
  EXPECT_EQ(out[7], 1);
}

// The workers carry names (`top -H`, `ps -L`): gpo-cpu/0 .. gpo-cpu/N-1.
TEST(CpuBackend, WorkersAreNamed) {
  backend::CpuBackend cpu(3);
  auto names = [] {
    std::vector<std::string> v;
    for (const auto& e : std::filesystem::directory_iterator("/proc/self/task")) {
      std::ifstream f(e.path() / "comm");
      std::string n;
      std::getline(f, n);
      if (n.rfind("gpo-cpu/", 0) == 0) v.push_back(n);
    }
    std::sort(v.begin(), v.end());
    return v;
  };
  // A worker names itself as it starts: wait (bounded) for all three.
  std::vector<std::string> v;
  for (int i = 0; i < 200 && (v = names()).size() < 3; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  EXPECT_EQ(v, (std::vector<std::string>{"gpo-cpu/0", "gpo-cpu/1", "gpo-cpu/2"}));
}

namespace {

std::vector<int> allowed_cpus() {
  std::vector<int> v;
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0)
    for (int c = 0; c < CPU_SETSIZE; ++c)
      if (CPU_ISSET(c, &set)) v.push_back(c);
  return v;
}

// Cpus_allowed_list of each gpo-cpu/N thread, by N.
std::map<int, std::string> worker_masks() {
  std::map<int, std::string> m;
  for (const auto& e : std::filesystem::directory_iterator("/proc/self/task")) {
    std::ifstream comm(e.path() / "comm");
    std::string n;
    std::getline(comm, n);
    if (n.rfind("gpo-cpu/", 0) != 0) continue;
    std::ifstream st(e.path() / "status");
    for (std::string line; std::getline(st, line);)
      if (line.rfind("Cpus_allowed_list:", 0) == 0) m[std::stoi(n.substr(8))] = line.substr(line.find_last_of(" \t") + 1);
  }
  return m;
}

}  // namespace

// One worker per allowed CPU (the agent's pool), each pinned to its own; a
// run of one job that names the CPU its submitter waits on runs on that CPU's
// worker when it is idle. Jobs naming no CPU, or one the pool has no worker
// for, run anyway and are not counted.
TEST(CpuBackend, AJobRunsOnTheCpuItsSubmitterWaitsOn) {
  const std::vector<int> cpus = allowed_cpus();
  ASSERT_FALSE(cpus.empty());
  backend::CpuBackend cpu(unsigned(cpus.size()));
  // A worker pins itself as it starts, before it first sleeps: wait (bounded) for all.
  std::map<int, std::string> masks = worker_masks();
  for (int i = 0; i < 200; ++i, masks = worker_masks()) {
    bool pinned = masks.size() == cpus.size();
    for (size_t w = 0; pinned && w < cpus.size(); ++w) pinned = masks[int(w)] == std::to_string(cpus[w]);
    if (pinned) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  ASSERT_EQ(masks.size(), cpus.size());
  for (size_t w = 0; w < cpus.size(); ++w) EXPECT_EQ(masks[int(w)], std::to_string(cpus[w])) << "worker " << w;

  const Bytes in = random_bytes(64 << 10, 11);
  auto one = [&](int32_t where) {
    Bytes digest(32);
    backend::Batch b;
    b.jobs.resize(1);
    b.jobs[0].op = OpId::sha256;
    b.jobs[0].in = in;
    b.jobs[0].out = digest;
    b.jobs[0].cpu = where;
    // Every worker asleep first (the one that ran the last job may still be
    // on its way back): then the worker named is the only one woken.
    for (int i = 0; i < 2000 && cpu.asleep() < cpu.threads(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    ASSERT_EQ(cpu.asleep(), cpu.threads());
    cpu.run(b);
    EXPECT_EQ(b.jobs[0].status, Status::ok);
    EXPECT_TRUE(digest == gpo::test::ref_sha256(in));
  };
  constexpr int kEach = 3;
  for (int k = 0; k < kEach; ++k)
    for (int c : cpus) one(c);
  EXPECT_EQ(cpu.stats().jobs_on_waiter_cpu, uint64_t(kEach * cpus.size()));
  one(-1);
  one(cpus.back() + 1);  // no worker for it
  EXPECT_EQ(cpu.stats().jobs_on_waiter_cpu, uint64_t(kEach * cpus.size()));

  // Many submitters naming CPUs at once, some the same one: the worker
  // named is often busy and another takes the run; every job runs once.
  std::atomic<int> bad{0};
  std::vector<std::thread> ts;
  for (int t = 0; t < 4; ++t)
    ts.emplace_back([&, t] {
      std::mt19937 rng{uint32_t(t)};
      for (int k = 0; k < 50; ++k) {
        std::vector<Bytes> digests(1 + rng() % 3, Bytes(32));
        backend::Batch b;
        b.jobs.resize(digests.size());
        for (size_t i = 0; i < digests.size(); ++i) {
          b.jobs[i].op = OpId::sha256;
          b.jobs[i].in = in;
          b.jobs[i].out = digests[i];
          b.jobs[i].cpu = cpus[rng() % cpus.size()];
        }
        cpu.run(b);
        for (size_t i = 0; i < digests.size(); ++i)
          if (b.jobs[i].status != Status::ok || digests[i] != gpo::test::ref_sha256(in)) bad++;
      }
    });
  for (auto& t : ts) t.join();
  EXPECT_EQ(bad.load(), 0);
}
