// The CUDA kernels through the CUDA backend, bit for bit against OpenSSL (the
// CPU reference) on random inputs of many sizes and batch shapes, and the
// published vectors. Every test skips with the reason when there is no GPU.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <memory>
#include <mutex>
#include <random>
#include <thread>

#include "kernels/aes/aes.h"
#include "backend/cpu_backend.h"
#include "backend/cuda_backend.h"
#include "backend/ops.h"
#include "common/crypto_vectors.h"
#include "gpu/cuda_backend_fixture.h"
#include "kernels/sha256/sha256.h"

using namespace gpo;
using backend::Job;
using backend::OpId;
using backend::Status;
using gpo::test::hex;

namespace {

class Gpu : public test::CudaBackendTest {
 protected:
  Gpu() : CudaBackendTest(12345) {}

  std::vector<uint8_t> random_bytes(size_t n) {
    std::vector<uint8_t> v(n);
    for (auto& b : v) b = uint8_t(rng_());
    return v;
  }
};

// Owns the buffers of a batch; jobs may point into one slab (packed, offset).
struct Owned {
  std::vector<std::vector<uint8_t>> keys, ivs, aads, ins, outs;
  backend::Batch batch;
};

// A reference copy of job j run on the CPU: output and tag.
struct Ref {
  std::vector<uint8_t> out;
  std::array<uint8_t, 16> tag;
  Status status;
};
Ref reference(const Job& j) {
  Ref r;
  r.out.resize(j.out.size());
  Job c = j;
  c.out = r.out;
  r.status = backend::run_on_cpu(c);
  r.tag = c.tag;
  return r;
}

// Same bytes as the CPU reference, and computed where expected: on the GPU
// (on_gpu), except SHA-256 messages over the GPU's limit, which the backend
// hands to its CPU pool. A CPU fallback with the right bytes fails here.
void expect_matches_reference(backend::Batch& b, const std::vector<Ref>& refs, bool on_gpu = true) {
  for (size_t i = 0; i < b.jobs.size(); ++i) {
    const Job& j = b.jobs[i];
    const bool gpu = on_gpu && !(j.op == OpId::sha256 && j.in.size() > backend::CudaBackend::kShaGpuMaxBytes);
    EXPECT_EQ(int(j.ran), int(gpu ? backend::Ran::gpu : backend::Ran::cpu))
        << "job " << i << " op " << int(j.op) << " len " << j.in.size() << " ran elsewhere than expected";
    ASSERT_EQ(j.status, refs[i].status) << "job " << i << " len " << j.in.size();
    ASSERT_TRUE(std::equal(j.out.begin(), j.out.end(), refs[i].out.begin()))
        << "job " << i << " op " << int(j.op) << " len " << j.in.size() << " aad " << j.aad.size();
    if (j.op == OpId::aes256_gcm_encrypt) {
      ASSERT_EQ(j.tag, refs[i].tag) << "job " << i << " len " << j.in.size();
    }
  }
}

}  // namespace

TEST_F(Gpu, AesGcmAndCtrMatchOpenSslOnManySizes) {
  const size_t sizes[] = {0, 1, 15, 16, 17, 31, 255, 256, 4095, 4096, 4097, 16383, 16384, 16401, 65536 + 3, 300000, (1 << 20) + 5};
  const size_t aads[] = {0, 1, 13, 16, 40};
  Owned o;
  for (size_t n : sizes)
    for (OpId op : {OpId::aes256_gcm_encrypt, OpId::aes256_ctr}) {
      const size_t aad = op == OpId::aes256_ctr ? 0 : aads[rng_() % 5];
      o.keys.push_back(random_bytes(32));
      o.ivs.push_back(random_bytes(op == OpId::aes256_ctr ? 16 : 12));
      o.aads.push_back(random_bytes(aad));
      // Odd offsets take the unaligned path.
      const size_t off = (rng_() % 2) ? 0 : 1 + rng_() % 15;
      o.ins.push_back(random_bytes(n + off));
      o.outs.push_back(std::vector<uint8_t>(n + off, 0xee));
      Job j;
      j.op = op;
      j.key = o.keys.back();
      j.iv = o.ivs.back();
      j.aad = o.aads.back();
      j.in = std::span<const uint8_t>(o.ins.back()).subspan(off);
      j.out = std::span<uint8_t>(o.outs.back()).subspan(off);
      o.batch.jobs.push_back(j);
    }
  std::vector<Ref> refs;
  for (auto& j : o.batch.jobs) refs.push_back(reference(j));
  gpu_->run(o.batch);
  EXPECT_EQ(o.batch.ran_on, "cuda:0");
  expect_matches_reference(o.batch, refs);
  EXPECT_EQ(gpu_->stats().gpu_errors, 0u);
}

TEST_F(Gpu, CtrCounterCarriesAcross64And128Bits) {
  Owned o;
  for (const char* iv : {"ffffffffffffffffffffffffffffff00", "0000000000000000fffffffffffffff0", "f0f1f2f3f4f5f6f7ffffffffffffffe0"}) {
    o.keys.push_back(random_bytes(32));
    o.ivs.push_back(hex(iv));
    o.ins.push_back(random_bytes(100000));
    o.outs.push_back(std::vector<uint8_t>(100000));
    Job j;
    j.op = OpId::aes256_ctr;
    j.key = o.keys.back();
    j.iv = o.ivs.back();
    j.in = o.ins.back();
    j.out = o.outs.back();
    o.batch.jobs.push_back(j);
  }
  std::vector<Ref> refs;
  for (auto& j : o.batch.jobs) refs.push_back(reference(j));
  gpu_->run(o.batch);
  expect_matches_reference(o.batch, refs);
}

TEST_F(Gpu, PublishedVectors) {
  Owned o;
  for (const auto& v : test::kGcmVectors) {
    o.keys.push_back(hex(v.key));
    o.ivs.push_back(hex(v.iv));
    o.aads.push_back(hex(v.aad));
    o.ins.push_back(hex(v.pt));
    o.outs.push_back(std::vector<uint8_t>(o.ins.back().size()));
    Job j;
    j.op = OpId::aes256_gcm_encrypt;
    j.key = o.keys.back();
    j.iv = o.ivs.back();
    j.aad = o.aads.back();
    j.in = o.ins.back();
    j.out = o.outs.back();
    o.batch.jobs.push_back(j);
  }
  o.keys.push_back(hex(test::kCtrKey));
  o.ivs.push_back(hex(test::kCtrIv));
  o.ins.push_back(hex(test::kCtrPt));
  o.outs.push_back(std::vector<uint8_t>(64));
  Job c;
  c.op = OpId::aes256_ctr;
  c.key = o.keys.back();
  c.iv = o.ivs.back();
  c.in = o.ins.back();
  c.out = o.outs.back();
  o.batch.jobs.push_back(c);
  auto shas = test::sha_vectors();
  for (auto& s : shas) {
    o.outs.push_back(std::vector<uint8_t>(32));
    Job j;
    j.op = OpId::sha256;
    j.in = {reinterpret_cast<const uint8_t*>(s.msg.data()), s.msg.size()};
    j.out = o.outs.back();
    o.batch.jobs.push_back(j);
  }
  gpu_->run(o.batch);
  size_t i = 0;
  for (const auto& v : test::kGcmVectors) {
    const Job& j = o.batch.jobs[i++];
    EXPECT_EQ(std::vector<uint8_t>(j.out.begin(), j.out.end()), hex(v.ct)) << v.name;
    EXPECT_EQ(std::vector<uint8_t>(j.tag.begin(), j.tag.end()), hex(v.tag)) << v.name;
  }
  const Job& cj = o.batch.jobs[i++];
  EXPECT_EQ(std::vector<uint8_t>(cj.out.begin(), cj.out.end()), hex(test::kCtrCt));
  for (auto& s : shas) {
    const Job& j = o.batch.jobs[i++];
    EXPECT_EQ(std::vector<uint8_t>(j.out.begin(), j.out.end()), hex(s.digest)) << s.msg.size();
  }
  EXPECT_EQ(o.batch.ran_on, "cuda:0");
  for (const Job& j : o.batch.jobs) EXPECT_EQ(int(j.ran), int(backend::Ran::gpu)) << "a vector ran on the CPU";
}

TEST_F(Gpu, GcmDecryptVerifiesTagsAndFailsOnlyWrongOnes) {
  Owned o;
  std::vector<bool> corrupt;
  for (int i = 0; i < 64; ++i) {
    const size_t n = (i % 8 == 0) ? 70000 + i : 1 + rng_() % 9000;
    o.keys.push_back(random_bytes(32));
    o.ivs.push_back(random_bytes(12));
    o.aads.push_back(random_bytes(rng_() % 33));
    std::vector<uint8_t> pt = random_bytes(n), ct(n);
    Job e;
    e.op = OpId::aes256_gcm_encrypt;
    e.key = o.keys.back();
    e.iv = o.ivs.back();
    e.aad = o.aads.back();
    e.in = pt;
    e.out = ct;
    ASSERT_EQ(backend::run_on_cpu(e), Status::ok);
    o.ins.push_back(ct);
    o.outs.push_back(std::vector<uint8_t>(n));
    Job d = e;
    d.op = OpId::aes256_gcm_decrypt;
    d.in = o.ins.back();
    d.out = o.outs.back();
    const bool bad = i % 3 == 1;
    if (bad) d.tag[rng_() % 16] ^= uint8_t(1 << (rng_() % 8));
    corrupt.push_back(bad);
    o.aads.push_back(pt);  // keep the plaintext to compare
    o.batch.jobs.push_back(d);
  }
  gpu_->run(o.batch);
  for (size_t i = 0; i < o.batch.jobs.size(); ++i) {
    const Job& j = o.batch.jobs[i];
    EXPECT_EQ(int(j.ran), int(backend::Ran::gpu)) << i;
    if (corrupt[i]) {
      EXPECT_EQ(j.status, Status::auth_failed) << i;
      // No unauthenticated plaintext left, as the CPU reference leaves none.
      EXPECT_TRUE(std::all_of(j.out.begin(), j.out.end(), [](uint8_t x) { return x == 0; })) << i;
    } else {
      ASSERT_EQ(j.status, Status::ok) << i;
      EXPECT_TRUE(std::equal(j.out.begin(), j.out.end(), o.aads[2 * i + 1].begin())) << i;
    }
  }
}

TEST_F(Gpu, LargeSingleGcmJobSplitsAcrossTheGpu) {
  // 24 MiB + 7: about 1500 segments over several pipelined pieces, GHASH
  // combined by powers of H.
  Owned o;
  for (OpId op : {OpId::aes256_gcm_encrypt, OpId::aes256_ctr}) {
    const size_t n = (24u << 20) + 7;
    o.keys.push_back(random_bytes(32));
    o.ivs.push_back(random_bytes(op == OpId::aes256_ctr ? 16 : 12));
    o.aads.push_back(random_bytes(op == OpId::aes256_ctr ? 0 : 29));
    o.ins.push_back(random_bytes(n));
    o.outs.push_back(std::vector<uint8_t>(n));
    Job j;
    j.op = op;
    j.key = o.keys.back();
    j.iv = o.ivs.back();
    j.aad = o.aads.back();
    j.in = o.ins.back();
    j.out = o.outs.back();
    o.batch.jobs.push_back(j);
  }
  std::vector<Ref> refs;
  for (auto& j : o.batch.jobs) refs.push_back(reference(j));
  gpu_->run(o.batch);
  expect_matches_reference(o.batch, refs);
}

TEST_F(Gpu, PackedSlabOfSmallJobsPinnedAndInPlace) {
  // 3000 jobs of 4 KiB packed in one registered slab (as client slabs are),
  // encrypted in place.
  const size_t n = 4096, count = 3000;
  std::vector<uint8_t> slab = random_bytes(n * count);
  const std::vector<uint8_t> orig = slab;
  ASSERT_TRUE(gpu_->register_memory(slab.data(), slab.size()));
  Owned o;
  std::vector<Ref> refs;
  for (size_t i = 0; i < count; ++i) {
    o.keys.push_back(random_bytes(32));
    o.ivs.push_back(random_bytes(12));
    Job j;
    j.op = OpId::aes256_gcm_encrypt;
    j.key = o.keys.back();
    j.iv = o.ivs.back();
    j.in = std::span<const uint8_t>(slab.data() + i * n, n);
    j.out = std::span<uint8_t>(slab.data() + i * n, n);
    refs.push_back(reference(j));
    o.batch.jobs.push_back(j);
  }
  gpu_->run(o.batch);
  gpu_->unregister_memory(slab.data());
  expect_matches_reference(o.batch, refs);
}

TEST_F(Gpu, Sha256MatchesOpenSslOnMixedSizes) {
  const size_t sizes[] = {0, 1, 55, 56, 57, 63, 64, 65, 119, 120, 127, 128, 1000, 4096, 4097, 65536, 1 << 20, 5 << 20};
  Owned o;
  std::vector<Ref> refs;
  for (int rep = 0; rep < 3; ++rep)
    for (size_t n : sizes) {
      const size_t off = rep == 1 ? 1 + rng_() % 15 : 0;
      o.ins.push_back(random_bytes(n + off));
      o.outs.push_back(std::vector<uint8_t>(32));
      Job j;
      j.op = OpId::sha256;
      j.in = std::span<const uint8_t>(o.ins.back()).subspan(off);
      j.out = o.outs.back();
      refs.push_back(reference(j));
      o.batch.jobs.push_back(j);
    }
  gpu_->run(o.batch);
  expect_matches_reference(o.batch, refs);
}

TEST_F(Gpu, Sha256BatchOf4KiBMessagesInOneSlab) {
  const size_t n = 4096, count = 5000;
  std::vector<uint8_t> slab = random_bytes(n * count);
  Owned o;
  std::vector<Ref> refs;
  for (size_t i = 0; i < count; ++i) {
    o.outs.push_back(std::vector<uint8_t>(32));
    Job j;
    j.op = OpId::sha256;
    j.in = std::span<const uint8_t>(slab.data() + i * n, n);
    j.out = o.outs.back();
    refs.push_back(reference(j));
    o.batch.jobs.push_back(j);
  }
  gpu_->run(o.batch);
  expect_matches_reference(o.batch, refs);
}

TEST_F(Gpu, CudaErrorRetriesTheJobsOnTheCpu) {
  Owned o;
  for (int i = 0; i < 20; ++i) {
    o.keys.push_back(random_bytes(32));
    o.ivs.push_back(random_bytes(12));
    o.ins.push_back(random_bytes(5000 + i));
    o.outs.push_back(std::vector<uint8_t>(5000 + i));
    Job j;
    j.op = OpId::aes256_gcm_encrypt;
    j.key = o.keys.back();
    j.iv = o.ivs.back();
    j.in = o.ins.back();
    j.out = o.outs.back();
    o.batch.jobs.push_back(j);
  }
  std::vector<Ref> refs;
  for (auto& j : o.batch.jobs) refs.push_back(reference(j));
  gpu_->inject_fault_for_test();
  gpu_->run(o.batch);
  EXPECT_EQ(o.batch.ran_on, "cpu-retry");
  expect_matches_reference(o.batch, refs, false);
  EXPECT_EQ(gpu_->stats().gpu_errors, 1u);
  EXPECT_EQ(gpu_->stats().cpu_retries, 20u);
  // The device stays usable: the next batch runs on the GPU again.
  for (auto& j : o.batch.jobs) j.status = Status::pending;
  gpu_->run(o.batch);
  EXPECT_EQ(o.batch.ran_on, "cuda:0");
  expect_matches_reference(o.batch, refs);
}

// Batches submitted while one runs are taken together as one GPU run: each
// batch still completes exactly once, says where it ran, and its jobs are
// right, including the ones of a batch that belong on the CPU (SHA-256 over
// the GPU's limit) and run on the pool meanwhile.
TEST_F(Gpu, QueuedBatchesRunTogetherEachCompletedOnce) {
  constexpr int kBatches = 48;
  std::vector<Owned> owned(kBatches);
  std::vector<std::vector<Ref>> refs(kBatches);
  for (int b = 0; b < kBatches; ++b) {
    Owned& o = owned[size_t(b)];
    for (int i = 0; i < 6; ++i) {
      const size_t n = 1000 + size_t(rng_() % 70000);
      o.keys.push_back(random_bytes(32));
      o.ivs.push_back(random_bytes(i % 2 ? 16 : 12));
      o.ins.push_back(random_bytes(n));
      o.outs.push_back(std::vector<uint8_t>(i == 5 ? 32 : n));
      Job j;
      j.op = i == 5 ? OpId::sha256 : i % 2 ? OpId::aes256_ctr : OpId::aes256_gcm_encrypt;
      if (j.op != OpId::sha256) {
        j.key = o.keys.back();
        j.iv = o.ivs.back();
      }
      j.in = o.ins.back();
      j.out = o.outs.back();
      o.batch.jobs.push_back(j);
    }
    if (b % 8 == 0) {  // one long SHA-256 message: the CPU's part of this batch
      o.ins.push_back(random_bytes(backend::CudaBackend::kShaGpuMaxBytes + 1));
      o.outs.push_back(std::vector<uint8_t>(32));
      Job j;
      j.op = OpId::sha256;
      j.in = o.ins.back();
      j.out = o.outs.back();
      o.batch.jobs.push_back(j);
    }
    for (auto& j : o.batch.jobs) refs[size_t(b)].push_back(reference(j));
  }
  const auto before = gpu_->stats();
  std::mutex mu;
  std::condition_variable cv;
  std::vector<int> calls(kBatches, 0);
  for (int b = 0; b < kBatches; ++b)
    gpu_->submit(owned[size_t(b)].batch, [&, b](backend::Batch&) {
      std::lock_guard lk(mu);
      calls[size_t(b)]++;
      cv.notify_all();
    });
  {
    std::unique_lock lk(mu);
    ASSERT_TRUE(cv.wait_for(lk, std::chrono::minutes(2), [&] {
      return std::all_of(calls.begin(), calls.end(), [](int c) { return c > 0; });
    }));
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(50));  // a second completion would show now
  for (int b = 0; b < kBatches; ++b) {
    EXPECT_EQ(calls[size_t(b)], 1) << "batch " << b;
    EXPECT_EQ(owned[size_t(b)].batch.ran_on, gpu_->name()) << "batch " << b;
    EXPECT_GT(owned[size_t(b)].batch.run_ns, 0u) << "batch " << b;
    expect_matches_reference(owned[size_t(b)].batch, refs[size_t(b)]);
  }
  const auto after = gpu_->stats();
  EXPECT_EQ(after.batches - before.batches, uint64_t(kBatches));
  EXPECT_GT(after.cpu_ns, before.cpu_ns);
}
