// The crc32 and memcpy ops through the CUDA backend: the CRC-32 kernel bit for bit
// against zlib's crc32_z (called directly, not through the code under test) on
// many sizes, alignments, initial crcs and batch shapes, a 64 MiB buffer split
// over the GPU; memcpy through the device; CUDA errors re-run on the CPU.
// Every test skips with the reason when there is no GPU.
#include <gtest/gtest.h>
#include <zlib.h>

#include <cstring>
#include <memory>
#include <random>

#include "backend/cpu_backend.h"
#include "backend/cuda_backend.h"
#include "backend/ops.h"
#include "gpu/cuda_backend_fixture.h"

using namespace gpo;
using backend::Job;
using backend::OpId;
using backend::Status;

namespace {

class GpuCrc32Memcpy : public test::CudaBackendTest {
 protected:
  GpuCrc32Memcpy() : CudaBackendTest(2026) {}

  void fill(uint8_t* p, size_t n) {
    for (size_t i = 0; i < n; ++i) p[i] = uint8_t(rng_());
  }
};

uint32_t zlib_crc(uint32_t init, const uint8_t* p, size_t n) {
  static const uint8_t empty = 0;
  return uint32_t(crc32_z(init, n ? p : &empty, n));
}

uint32_t le32(const uint8_t* p) { return uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16 | uint32_t(p[3]) << 24; }

Job crc_job(const uint8_t* p, size_t n, uint32_t init, uint8_t* out) {
  Job j;
  j.op = OpId::crc32;
  j.in = {p, n};
  j.out = {out, 4};
  j.crc = init;
  return j;
}

}  // namespace

TEST_F(GpuCrc32Memcpy, Crc32CheckValueAndChaining) {
  const char* s = "123456789";
  uint8_t out[4], out2[4];
  backend::Batch b;
  b.jobs.push_back(crc_job(reinterpret_cast<const uint8_t*>(s), 9, 0, out));
  gpu_->run(b);
  EXPECT_EQ(b.ran_on, gpu_->name());
  ASSERT_EQ(b.jobs[0].status, Status::ok);
  EXPECT_EQ(le32(out), 0xCBF43926u);
  // Chaining: crc("12345") continued over "6789" is crc("123456789").
  backend::Batch a;
  a.jobs.push_back(crc_job(reinterpret_cast<const uint8_t*>(s), 5, 0, out));
  gpu_->run(a);
  backend::Batch c;
  c.jobs.push_back(crc_job(reinterpret_cast<const uint8_t*>(s) + 5, 4, le32(out), out2));
  gpu_->run(c);
  EXPECT_EQ(le32(out2), 0xCBF43926u);
}

TEST_F(GpuCrc32Memcpy, Crc32BitExactOnManySizesAlignmentsAndInitialCrcs) {
  const size_t sizes[] = {0, 1, 2, 3, 4, 7, 8, 15, 16, 17, 255, 256, 257, 4095, 4096, 4097, 65535, 65536, 65537,
                          131071, 200003, (size_t{1} << 20) + 7, (size_t{3} << 20) + 5};
  std::vector<uint8_t> buf((size_t{3} << 20) + 64);
  fill(buf.data(), buf.size());
  for (size_t n : sizes)
    for (size_t off : {size_t{0}, size_t{1}, size_t{13}}) {
      const uint32_t init = off == 0 ? 0 : uint32_t(rng_());
      uint8_t out[4];
      backend::Batch b;
      b.jobs.push_back(crc_job(buf.data() + off, n, init, out));
      gpu_->run(b);
      ASSERT_EQ(b.jobs[0].status, Status::ok) << n;
      ASSERT_EQ(b.ran_on, gpu_->name());
      ASSERT_EQ(int(b.jobs[0].ran), int(backend::Ran::gpu)) << n;
      ASSERT_EQ(le32(out), zlib_crc(init, buf.data() + off, n)) << "len " << n << " offset " << off << " init " << init;
    }
}

TEST_F(GpuCrc32Memcpy, Crc32Of64MiBSplitAcrossTheGpu) {
  const size_t n = size_t{64} << 20;
  std::vector<uint8_t> buf(n + 3);
  fill(buf.data(), buf.size());
  for (size_t len : {n, n + 3}) {
    uint8_t out[4];
    backend::Batch b;
    b.jobs.push_back(crc_job(buf.data(), len, 0x12345678u, out));
    gpu_->run(b);
    ASSERT_EQ(b.jobs[0].status, Status::ok);
    EXPECT_EQ(b.ran_on, gpu_->name());
    EXPECT_EQ(int(b.jobs[0].ran), int(backend::Ran::gpu));
    EXPECT_EQ(le32(out), zlib_crc(0x12345678u, buf.data(), len)) << len;
  }
}

TEST_F(GpuCrc32Memcpy, Crc32BatchesPackedInAPinnedSlabAndScattered) {
  // A slab like a client's (pinned by register_memory), jobs packed 64-byte
  // aligned with their 4-byte outputs in between, plus unpinned jobs.
  const size_t slab_len = size_t{48} << 20;
  std::vector<uint8_t> slab(slab_len);
  ASSERT_TRUE(gpu_->register_memory(slab.data(), slab.size()));
  std::uniform_int_distribution<size_t> small(0, 9000), big(0, 3 << 20);
  backend::Batch b;
  size_t at = 0;
  for (int i = 0; i < 600; ++i) {
    const size_t n = i % 50 == 0 ? big(rng_) : small(rng_);
    if (at + n + 128 > slab_len) break;
    fill(slab.data() + at, n);
    uint8_t* out = slab.data() + ((at + n + 63) / 64 * 64);
    b.jobs.push_back(crc_job(slab.data() + at, n, uint32_t(rng_()), out));
    at = (out - slab.data()) + 64;
  }
  std::vector<std::vector<uint8_t>> scattered(40), outs(40, std::vector<uint8_t>(4));
  for (size_t i = 0; i < scattered.size(); ++i) {
    scattered[i].resize(small(rng_) * 7);
    fill(scattered[i].data(), scattered[i].size());
    b.jobs.push_back(crc_job(scattered[i].data(), scattered[i].size(), uint32_t(i), outs[i].data()));
  }
  gpu_->run(b);
  EXPECT_EQ(b.ran_on, gpu_->name());
  for (size_t i = 0; i < b.jobs.size(); ++i) {
    const Job& j = b.jobs[i];
    ASSERT_EQ(j.status, Status::ok) << i;
    ASSERT_EQ(int(j.ran), int(backend::Ran::gpu)) << i;
    ASSERT_EQ(le32(j.out.data()), zlib_crc(j.crc, j.in.data(), j.in.size())) << "job " << i << " len " << j.in.size();
  }
  gpu_->unregister_memory(slab.data());
}

TEST_F(GpuCrc32Memcpy, MemcpyThroughTheDevicePinnedUnpinnedAndInPlace) {
  const size_t sizes[] = {0, 1, 4095, 65536 + 3, (size_t{5} << 20) + 1, size_t{40} << 20};
  std::vector<uint8_t> pinned_out(size_t{41} << 20);
  ASSERT_TRUE(gpu_->register_memory(pinned_out.data(), pinned_out.size()));
  for (size_t n : sizes)
    for (int mode = 0; mode < 3; ++mode) {  // 0: unpinned out, 1: pinned out, 2: in place
      std::vector<uint8_t> in(n), out(mode == 0 ? n : 0);
      fill(in.data(), n);
      const std::vector<uint8_t> want = in;
      uint8_t* dst = mode == 0 ? out.data() : mode == 1 ? pinned_out.data() : in.data();
      Job j;
      j.op = OpId::memcpy;
      j.in = {in.data(), n};
      j.out = {dst, n};
      backend::Batch b;
      b.jobs.push_back(j);
      gpu_->run(b);
      ASSERT_EQ(b.jobs[0].status, Status::ok) << n << " mode " << mode;
      EXPECT_EQ(b.jobs[0].out_len, n);
      if (n) {
        EXPECT_EQ(b.ran_on, gpu_->name());
        EXPECT_EQ(int(b.jobs[0].ran), int(backend::Ran::gpu)) << n << " mode " << mode;
      }
      ASSERT_EQ(std::memcmp(dst, want.data(), n), 0) << "len " << n << " mode " << mode;
    }
  gpu_->unregister_memory(pinned_out.data());
}

TEST_F(GpuCrc32Memcpy, CudaErrorRetriesCrcAndMemcpyOnTheCpu) {
  std::vector<uint8_t> in(3 << 20), out(in.size());
  fill(in.data(), in.size());
  uint8_t crc_out[4];
  backend::Batch b;
  b.jobs.push_back(crc_job(in.data(), in.size(), 7, crc_out));
  Job m;
  m.op = OpId::memcpy;
  m.in = in;
  m.out = out;
  b.jobs.push_back(m);
  const auto before = gpu_->stats();
  gpu_->inject_fault_for_test();
  gpu_->run(b);
  EXPECT_EQ(b.ran_on, "cpu-retry");
  ASSERT_EQ(b.jobs[0].status, Status::ok);
  ASSERT_EQ(b.jobs[1].status, Status::ok);
  EXPECT_EQ(le32(crc_out), zlib_crc(7, in.data(), in.size()));
  EXPECT_EQ(out, in);
  EXPECT_GE(gpu_->stats().cpu_retries - before.cpu_retries, 2u);
  // The device is still usable: the next batch runs on the GPU.
  backend::Batch again;
  again.jobs.push_back(crc_job(in.data(), in.size(), 0, crc_out));
  gpu_->run(again);
  EXPECT_EQ(again.ran_on, gpu_->name());
  EXPECT_EQ(le32(crc_out), zlib_crc(0, in.data(), in.size()));
}
