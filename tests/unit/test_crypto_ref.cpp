// The CPU references against published vectors, and the CPU backend end to end.
#include <gtest/gtest.h>

#include <random>

#include "kernels/aes/aes.h"
#include "backend/cpu_backend.h"
#include "backend/ops.h"
#include "common/crypto_vectors.h"
#include "kernels/sha256/sha256.h"

using namespace gpo;
using gpo::test::hex;

TEST(CryptoRef, GcmSpecVectorsEncryptAndDecrypt) {
  for (const auto& v : test::kGcmVectors) {
    auto key = hex(v.key), iv = hex(v.iv), aad = hex(v.aad), pt = hex(v.pt), ct = hex(v.ct), tag = hex(v.tag);
    std::vector<uint8_t> out(pt.size());
    uint8_t t[16];
    aes::Job j{aes::Mode::gcm, aes::Dir::encrypt, key.data(), iv.data(), aad, pt, out.data(), t};
    ASSERT_EQ(aes::cpu_run(j), aes::Result::ok) << v.name;
    EXPECT_EQ(out, ct) << v.name;
    EXPECT_EQ(std::vector<uint8_t>(t, t + 16), tag) << v.name;
    aes::Job d{aes::Mode::gcm, aes::Dir::decrypt, key.data(), iv.data(), aad, ct, out.data(), tag.data()};
    ASSERT_EQ(aes::cpu_run(d), aes::Result::ok) << v.name;
    EXPECT_EQ(out, pt) << v.name;
    tag[0] ^= 1;
    EXPECT_EQ(aes::cpu_run(d), aes::Result::auth_failed) << v.name;
  }
}

TEST(CryptoRef, CtrSp80038aVector) {
  auto key = hex(test::kCtrKey), iv = hex(test::kCtrIv), pt = hex(test::kCtrPt), ct = hex(test::kCtrCt);
  std::vector<uint8_t> out(pt.size());
  aes::Job j{aes::Mode::ctr, aes::Dir::encrypt, key.data(), iv.data(), {}, pt, out.data(), nullptr};
  ASSERT_EQ(aes::cpu_run(j), aes::Result::ok);
  EXPECT_EQ(out, ct);
}

TEST(CryptoRef, Sha256Fips180Vectors) {
  for (const auto& v : test::sha_vectors()) {
    uint8_t d[32];
    sha256::cpu_digest({reinterpret_cast<const uint8_t*>(v.msg.data()), v.msg.size()}, d);
    EXPECT_EQ(std::vector<uint8_t>(d, d + 32), hex(v.digest)) << v.msg.size() << " bytes";
  }
}

TEST(CryptoRef, RegistryHasEveryCryptoOpOnce) {
  for (auto id : {backend::OpId::aes256_gcm_encrypt, backend::OpId::aes256_gcm_decrypt, backend::OpId::aes256_ctr,
                  backend::OpId::sha256}) {
    const auto* op = backend::find_op(id);
    ASSERT_NE(op, nullptr);
    EXPECT_EQ(backend::find_op(op->name), op);
  }
  size_t crypto = 0;
  for (const auto& op : backend::ops()) crypto += op.family == backend::Family::aes || op.family == backend::Family::sha256;
  EXPECT_EQ(crypto, 4u);
}

TEST(CryptoRef, CpuBackendRunsABatchAndRejectsBadJobs) {
  backend::CpuBackend cpu(2);
  std::mt19937 rng(7);
  std::vector<std::vector<uint8_t>> bufs;
  std::vector<uint8_t> key(32), iv(12);
  for (auto& b : key) b = uint8_t(rng());
  backend::Batch b;
  std::vector<std::vector<uint8_t>> ins, outs;
  for (size_t n : {0, 1, 100, 4096}) {
    ins.emplace_back(n);
    for (auto& x : ins.back()) x = uint8_t(rng());
    outs.emplace_back(n);
  }
  for (size_t i = 0; i < ins.size(); ++i) {
    backend::Job j;
    j.op = backend::OpId::aes256_gcm_encrypt;
    j.in = ins[i];
    j.out = outs[i];
    j.key = key;
    j.iv = iv;
    b.jobs.push_back(j);
  }
  backend::Job bad = b.jobs.back();
  bad.iv = std::span<const uint8_t>(iv.data(), 5);
  b.jobs.push_back(bad);
  cpu.run(b);
  EXPECT_EQ(b.ran_on, "cpu");
  for (size_t i = 0; i < ins.size(); ++i) {
    ASSERT_EQ(b.jobs[i].status, backend::Status::ok);
    // Decrypt with the reference: the round trip gives the input back.
    std::vector<uint8_t> back(ins[i].size());
    aes::Job d{aes::Mode::gcm, aes::Dir::decrypt, key.data(), iv.data(), {}, outs[i], back.data(), b.jobs[i].tag.data()};
    ASSERT_EQ(aes::cpu_run(d), aes::Result::ok);
    EXPECT_EQ(back, ins[i]);
  }
  EXPECT_EQ(b.jobs.back().status, backend::Status::invalid);
  EXPECT_EQ(cpu.stats().jobs, b.jobs.size());
}

TEST(CryptoRef, AutoBackendServesWithoutAGpu) {
  std::string why;
  if (backend::cuda_device_count(&why) > 0) GTEST_SKIP() << "this machine has a GPU; the fallback is tested on CI";
  backend::Options o;
  o.cpu_threads = 1;
  auto b = backend::make_backend(o);
  ASSERT_TRUE(b);
  EXPECT_EQ(b->name(), "cpu") << why;
  o.choice = "cuda";
  EXPECT_THROW(backend::make_backend(o), std::runtime_error);
}
