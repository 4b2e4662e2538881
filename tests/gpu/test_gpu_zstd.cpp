// zstd stage 1 on the GPU: the match finder gives exactly the CPU twin's
// sequences, and every frame of the GPU path (Pipeline, and the CUDA backend's
// zstd_compress) decompresses with ZSTD_decompress to its input, for every
// data kind and size, and for a batch of many inputs. Skips without a GPU.
#include <gtest/gtest.h>
#include <zstd.h>

#include <random>

#include "backend/backend.h"
#include "backend/cpu_backend.h"
#include "backend/cuda_backend.h"
#include "common/zstd_data.h"
#include "zstd/zstd_gpu.h"

namespace gpo::zstd::gpu {
namespace {

using test::ZstdKind;

class GpuZstd : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string why;
    if (backend::cuda_device_count(&why) < 0) GTEST_SKIP() << "no GPU: " << why;
  }
};

struct Inputs {
  std::vector<std::vector<uint8_t>> data;
  std::vector<std::span<const uint8_t>> spans;
  std::vector<std::string> names;
  void add(std::vector<uint8_t> v, std::string name) {
    data.push_back(std::move(v));
    names.push_back(std::move(name));
  }
  void finish() {
    spans.clear();
    for (auto& v : data) spans.emplace_back(v);
  }
};

Inputs all_kinds_and_sizes() {
  Inputs in;
  for (auto k : test::kZstdKinds)
    for (size_t n : test::kZstdSizes) in.add(test::zstd_data(k, n), std::string(test::kind_name(k)) + "/" + std::to_string(n));
  in.finish();
  return in;
}

std::vector<uint8_t> decompress(std::span<const uint8_t> frame, size_t expect) {
  std::vector<uint8_t> out(expect + 1);
  const size_t r = ZSTD_decompress(out.data(), out.size(), frame.data(), frame.size());
  EXPECT_FALSE(ZSTD_isError(r)) << ZSTD_getErrorName(r);
  out.resize(ZSTD_isError(r) ? 0 : r);
  return out;
}

void expect_round_trips(Pipeline& p, const Inputs& in, int level) {
  std::vector<std::vector<uint8_t>> frames(in.data.size());
  std::vector<std::span<uint8_t>> outs;
  for (size_t i = 0; i < frames.size(); ++i) {
    frames[i].resize(ZSTD_compressBound(in.data[i].size()));
    outs.emplace_back(frames[i]);
  }
  std::vector<size_t> sizes(frames.size(), 0);
  unsigned fallbacks = 99;
  p.compress(in.spans, outs, {&level, 1}, sizes, &fallbacks);
  EXPECT_EQ(fallbacks, 0u) << "libzstd found its own matches for some block";
  for (size_t i = 0; i < frames.size(); ++i) {
    ASSERT_GT(sizes[i], 0u) << in.names[i];
    EXPECT_TRUE(decompress({frames[i].data(), sizes[i]}, in.data[i].size()) == in.data[i]) << in.names[i];
  }
}

TEST_F(GpuZstd, FinderGivesTheCpuTwinsSequences) {
  const Inputs in = all_kinds_and_sizes();
  Pipeline p;
  Pipeline::Found got;
  p.find(in.spans, got);
  size_t bi = 0;
  for (size_t i = 0; i < in.data.size(); ++i) {
    std::vector<BlockDesc> blocks;
    const uint64_t size = in.data[i].size(), off = 0;
    std::vector<Sequence> seqs(plan_blocks({&size, 1}, {&off, 1}, blocks));
    cpu_find(in.data[i], blocks, seqs);
    for (const auto& want : blocks) {
      ASSERT_LT(bi, got.blocks.size());
      const BlockDesc& b = got.blocks[bi++];
      ASSERT_EQ(b.input, i) << in.names[i];
      ASSERT_EQ(b.pos, want.pos) << in.names[i];
      ASSERT_EQ(b.seq_count, want.seq_count) << in.names[i] << " block at " << want.pos;
      ASSERT_EQ(b.trailing_literals, want.trailing_literals) << in.names[i];
      for (uint32_t k = 0; k < want.seq_count; ++k) {
        const Sequence &x = got.seqs[b.seq_first + k], &y = seqs[want.seq_first + k];
        ASSERT_TRUE(x.lit_len == y.lit_len && x.match_len == y.match_len && x.offset == y.offset)
            << in.names[i] << " block at " << want.pos << " sequence " << k << ": gpu (" << x.lit_len << ","
            << x.match_len << "," << x.offset << ") cpu (" << y.lit_len << "," << y.match_len << "," << y.offset << ")";
      }
    }
  }
  EXPECT_EQ(bi, got.blocks.size());
}

TEST_F(GpuZstd, EveryKindAndSizeRoundTrips) {
  const Inputs in = all_kinds_and_sizes();
  Pipeline p;
  expect_round_trips(p, in, 1);
  expect_round_trips(p, in, 3);
}

TEST_F(GpuZstd, ManyInputsInOneBatch) {
  Inputs in;
  std::mt19937 rng(5);
  for (int i = 0; i < 600; ++i) {
    const auto k = test::kZstdKinds[rng() % 5];
    const size_t n = rng() % 4 == 0 ? rng() % 64 : rng() % (300 * 1024);
    in.add(test::zstd_data(k, n, uint32_t(i)), std::string(test::kind_name(k)) + "#" + std::to_string(i));
  }
  in.finish();
  Pipeline p(4);
  expect_round_trips(p, in, 1);
  // The pipeline's buffers are reused by the next batch.
  expect_round_trips(p, in, 1);
}

TEST_F(GpuZstd, BackendRunsZstdCompressOnTheGpu) {
  backend::Options opt;
  opt.kind = "cuda";
  auto be = backend::make_backend(opt);
  ASSERT_TRUE(be);
  const Inputs in = all_kinds_and_sizes();
  backend::Batch batch;
  std::vector<std::vector<uint8_t>> frames(in.data.size());
  for (size_t i = 0; i < in.data.size(); ++i) {
    frames[i].resize(ZSTD_compressBound(in.data[i].size()));
    backend::Job j;
    j.op = backend::OpId::zstd_compress;
    j.in = in.spans[i];
    j.out = frames[i];
    j.level = 1;
    batch.jobs.push_back(j);
  }
  be->run(batch);
  EXPECT_NE(batch.ran_on, "cpu");
  EXPECT_NE(batch.ran_on, "cpu-retry");
  for (size_t i = 0; i < in.data.size(); ++i) {
    ASSERT_EQ(batch.jobs[i].status, backend::Status::ok) << in.names[i];
    EXPECT_TRUE(decompress({frames[i].data(), batch.jobs[i].out_len}, in.data[i].size()) == in.data[i]) << in.names[i];
  }
  EXPECT_EQ(be->stats().cpu_retries, 0u);
}

TEST_F(GpuZstd, BackendRetriesOnTheCpuAfterAGpuErrorAndReportsShortOutputs) {
  auto cpu = std::make_shared<backend::CpuBackend>(4);
  backend::CudaBackend gpu(0, cpu);
  Inputs in;
  for (int i = 0; i < 12; ++i) in.add(test::zstd_data(test::kZstdKinds[i % 5], 50000 + 999 * i, uint32_t(i)), "job" + std::to_string(i));
  in.finish();
  std::vector<std::vector<uint8_t>> frames(in.data.size());
  backend::Batch batch;
  for (size_t i = 0; i < in.data.size(); ++i) {
    frames[i].resize(i == 3 ? 20 : ZSTD_compressBound(in.data[i].size()));  // job 3: no room for its frame
    backend::Job j;
    j.op = backend::OpId::zstd_compress;
    j.in = in.spans[i];
    j.out = frames[i];
    j.level = 1 + int(i % 3);
    batch.jobs.push_back(j);
  }
  auto check = [&] {
    for (size_t i = 0; i < in.data.size(); ++i) {
      if (i == 3) {
        EXPECT_EQ(batch.jobs[i].status, backend::Status::invalid);
        continue;
      }
      ASSERT_EQ(batch.jobs[i].status, backend::Status::ok) << in.names[i];
      EXPECT_TRUE(decompress({frames[i].data(), batch.jobs[i].out_len}, in.data[i].size()) == in.data[i]) << in.names[i];
    }
  };
  gpu.inject_fault_for_test();
  gpu.run(batch);
  EXPECT_EQ(batch.ran_on, "cpu-retry");
  check();
  EXPECT_EQ(gpu.stats().gpu_errors, 1u);
  // The next batch runs on the GPU again.
  for (auto& j : batch.jobs) j.status = backend::Status::pending, j.out_len = 0;
  gpu.run(batch);
  EXPECT_EQ(batch.ran_on, gpu.name());
  check();
}

}  // namespace
}  // namespace gpo::zstd::gpu
