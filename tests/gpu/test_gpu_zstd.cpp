// zstd on the GPU: the stage 1 match finder gives exactly the CPU twin's
// sequences; every frame of stage 1's Pipeline decompresses with
// ZSTD_decompress to its input, for every data kind and size, and for a batch
// of many inputs; the CUDA backend's zstd_compress (stages 1 + 2 through
// GpuCompressor at levels <= 3, libzstd above) gives valid frames, retries on
// the CPU after a CUDA error. Skips without a GPU.
#include <gtest/gtest.h>
#include <zstd.h>

#include <cuda_runtime.h>

#include <algorithm>
#include <random>

#include "backend/backend.h"
#include "backend/cpu_backend.h"
#include "backend/cuda_backend.h"
#include "common/zstd_data.h"
#include "kernels/zstd/zstd_entropy.h"
#include "kernels/zstd/zstd_find.h"

namespace gpo::zstd::gpu {
namespace {

using test::decompress;
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

// ---- The CUDA backend's zstd_compress: stages 1 + 2 on the GPU
// (GpuCompressor) at levels <= 3, libzstd on the CPU above.

std::vector<uint8_t> libzstd_frame(std::span<const uint8_t> in, int level) {
  std::vector<uint8_t> f(ZSTD_compressBound(in.size()));
  const size_t r = ZSTD_compress(f.data(), f.size(), in.data(), in.size(), level);
  EXPECT_FALSE(ZSTD_isError(r));
  f.resize(ZSTD_isError(r) ? 0 : r);
  return f;
}

bool same_bytes(std::span<const uint8_t> a, const std::vector<uint8_t>& b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin());
}

// A batch of zstd_compress jobs, job i at level(i), into frames[i] (sized to
// out_size(i), default ZSTD_compressBound).
template <typename Level, typename OutSize>
backend::Batch zstd_batch(const Inputs& in, std::vector<std::vector<uint8_t>>& frames, Level level, OutSize out_size) {
  frames.assign(in.data.size(), {});
  backend::Batch batch;
  for (size_t i = 0; i < in.data.size(); ++i) {
    frames[i].resize(out_size(i));
    backend::Job j;
    j.op = backend::OpId::zstd_compress;
    j.in = in.spans[i];
    j.out = frames[i];
    j.level = level(i);
    batch.jobs.push_back(j);
  }
  return batch;
}
template <typename Level>
backend::Batch zstd_batch(const Inputs& in, std::vector<std::vector<uint8_t>>& frames, Level level) {
  return zstd_batch(in, frames, level, [&](size_t i) { return ZSTD_compressBound(in.data[i].size()); });
}

TEST_F(GpuZstd, BackendRunsZstdCompressOnTheGpu) {
  backend::Options opt;
  opt.choice = "cuda";
  auto be = backend::make_backend(opt);
  ASSERT_TRUE(be);
  const Inputs in = all_kinds_and_sizes();
  std::vector<std::vector<uint8_t>> frames;
  const int levels[] = {1, 3, 0, -5};  // 0: zstd's default (3); negative: faster than 1
  backend::Batch batch = zstd_batch(in, frames, [&](size_t i) { return levels[i % 4]; });
  be->run(batch);
  EXPECT_EQ(batch.ran_on, be->name());
  size_t gpu_bytes = 0, gpu_frames = 0;
  for (size_t i = 0; i < in.data.size(); ++i) {
    ASSERT_EQ(batch.jobs[i].status, backend::Status::ok) << in.names[i];
    // Each job, not just the batch: a CPU fallback giving a valid frame must fail here.
    EXPECT_EQ(int(batch.jobs[i].ran), int(backend::Ran::gpu)) << in.names[i] << " ran on the CPU";
    const std::span<const uint8_t> f{frames[i].data(), batch.jobs[i].out_len};
    EXPECT_TRUE(decompress(f, in.data[i].size()) == in.data[i]) << in.names[i];
    // The GPU's frames: no checksum, blocks coded independently; not libzstd's bytes on compressible data.
    if (in.data[i].size() >= 128 * 1024 && !same_bytes(f, libzstd_frame(in.spans[i], batch.jobs[i].level))) gpu_frames++;
    gpu_bytes += f.size();
  }
  EXPECT_GT(gpu_frames, 0u) << "no job's frame differs from libzstd's: did any run on the GPU?";
  EXPECT_EQ(be->stats().cpu_retries, 0u);
  EXPECT_EQ(be->stats().gpu_errors, 0u);
}

// Jobs packed in one registered slab, as the agent's clients send them:
// inputs and outputs are copied by DMA directly (no staging); same frames as
// with pageable buffers.
TEST_F(GpuZstd, BackendZstdFromARegisteredSlabGivesTheSameFrames) {
  auto cpu = std::make_shared<backend::CpuBackend>(4);
  backend::CudaBackend gpu(0, cpu);
  Inputs in;
  for (int i = 0; i < 40; ++i)
    in.add(test::zstd_data(test::kZstdKinds[i % 5], size_t(i) * 7777 + (i % 3) * 300000, uint32_t(i)),
           "job" + std::to_string(i));
  in.finish();
  size_t in_bytes = 0, out_bytes = 0;
  for (auto& d : in.data) in_bytes += d.size() + 100, out_bytes += ZSTD_compressBound(d.size()) + 100;
  std::vector<uint8_t> slab(in_bytes + out_bytes);
  ASSERT_TRUE(gpu.register_memory(slab.data(), slab.size()));
  backend::Batch pinned, pageable;
  std::vector<std::vector<uint8_t>> frames(in.data.size());
  size_t ip = 0, op = in_bytes;
  for (size_t i = 0; i < in.data.size(); ++i) {
    std::copy(in.data[i].begin(), in.data[i].end(), slab.begin() + ptrdiff_t(ip));
    backend::Job j;
    j.op = backend::OpId::zstd_compress;
    j.level = 1;
    j.in = {slab.data() + ip, in.data[i].size()};
    j.out = {slab.data() + op, ZSTD_compressBound(in.data[i].size())};
    pinned.jobs.push_back(j);
    ip += in.data[i].size() + (i % 2 ? 0 : 100);  // half the inputs adjacent, half with a gap
    op += j.out.size() + 100;
    frames[i].resize(ZSTD_compressBound(in.data[i].size()));
    j.in = in.spans[i];
    j.out = frames[i];
    pageable.jobs.push_back(j);
  }
  gpu.run(pinned);
  gpu.run(pageable);
  EXPECT_EQ(pinned.ran_on, gpu.name());
  EXPECT_EQ(pageable.ran_on, gpu.name());
  EXPECT_EQ(gpu.stats().cpu_retries, 0u);
  for (size_t i = 0; i < in.data.size(); ++i) {
    ASSERT_EQ(pinned.jobs[i].status, backend::Status::ok) << in.names[i];
    ASSERT_EQ(pageable.jobs[i].status, backend::Status::ok) << in.names[i];
    EXPECT_EQ(int(pinned.jobs[i].ran), int(backend::Ran::gpu)) << in.names[i] << " ran on the CPU";
    EXPECT_EQ(int(pageable.jobs[i].ran), int(backend::Ran::gpu)) << in.names[i] << " ran on the CPU";
    const std::span<const uint8_t> a{pinned.jobs[i].out.data(), pinned.jobs[i].out_len};
    ASSERT_EQ(pinned.jobs[i].out_len, pageable.jobs[i].out_len) << in.names[i];
    EXPECT_TRUE(std::equal(a.begin(), a.end(), frames[i].begin())) << in.names[i];  // same length checked above
    EXPECT_TRUE(decompress(a, in.data[i].size()) == in.data[i]) << in.names[i];
  }
  gpu.unregister_memory(slab.data());
}

// Above level 3 a GPU frame would be worse than the level asked for: those
// jobs run libzstd on the CPU, byte-identical to ZSTD_compress at their level,
// next to level-1 jobs of the same batch on the GPU.
TEST_F(GpuZstd, BackendRunsLevelsAbove3OnTheCpuByteIdentical) {
  auto cpu = std::make_shared<backend::CpuBackend>(4);
  backend::CudaBackend gpu(0, cpu);
  Inputs in;
  for (int i = 0; i < 12; ++i)
    in.add(test::zstd_data(test::kZstdKinds[i % 5], 200000 + 1234 * i, uint32_t(i)), "job" + std::to_string(i));
  in.finish();
  const int levels[] = {1, 4, 9, 19};
  std::vector<std::vector<uint8_t>> frames;
  backend::Batch batch = zstd_batch(in, frames, [&](size_t i) { return levels[i % 4]; });
  gpu.run(batch);
  EXPECT_EQ(batch.ran_on, gpu.name());
  for (size_t i = 0; i < in.data.size(); ++i) {
    ASSERT_EQ(batch.jobs[i].status, backend::Status::ok) << in.names[i];
    EXPECT_EQ(int(batch.jobs[i].ran), int(batch.jobs[i].level > 3 ? backend::Ran::cpu : backend::Ran::gpu))
        << in.names[i] << " at level " << batch.jobs[i].level;
    const std::span<const uint8_t> f{frames[i].data(), batch.jobs[i].out_len};
    EXPECT_TRUE(decompress(f, in.data[i].size()) == in.data[i]) << in.names[i];
    if (batch.jobs[i].level > 3) {
      const auto want = libzstd_frame(in.spans[i], batch.jobs[i].level);
      EXPECT_TRUE(same_bytes(f, want)) << in.names[i] << " at level " << batch.jobs[i].level;
    }
  }
  // A batch of only such jobs never touches the GPU.
  backend::Batch high;
  for (size_t i = 0; i < in.data.size(); ++i)
    if (batch.jobs[i].level > 3) high.jobs.push_back(batch.jobs[i]), high.jobs.back().status = backend::Status::pending;
  gpu.run(high);
  EXPECT_EQ(high.ran_on, "cpu");
}

// A CUDA error during the GPU part (a real one: an invalid copy queued on the
// first piece) re-runs the jobs on the CPU; the next batch runs on the GPU.
// A job whose output cannot hold its frame is reported by the CPU.
TEST_F(GpuZstd, BackendRetriesOnTheCpuAfterAGpuErrorAndReportsShortOutputs) {
  auto cpu = std::make_shared<backend::CpuBackend>(4);
  backend::CudaBackend gpu(0, cpu);
  Inputs in;
  for (int i = 0; i < 12; ++i) in.add(test::zstd_data(test::kZstdKinds[i % 5], 50000 + 999 * i, uint32_t(i)), "job" + std::to_string(i));
  in.finish();
  std::vector<std::vector<uint8_t>> frames;
  backend::Batch batch = zstd_batch(
      in, frames, [](size_t i) { return 1 + int(i % 3); },
      [&](size_t i) { return i == 3 ? size_t(20) : ZSTD_compressBound(in.data[i].size()); });  // job 3: no room
  auto check = [&](bool cpu_frames) {
    for (size_t i = 0; i < in.data.size(); ++i) {
      if (i == 3) {
        EXPECT_EQ(batch.jobs[i].status, backend::Status::invalid);
        continue;
      }
      ASSERT_EQ(batch.jobs[i].status, backend::Status::ok) << in.names[i];
      EXPECT_EQ(int(batch.jobs[i].ran), int(cpu_frames ? backend::Ran::cpu : backend::Ran::gpu)) << in.names[i];
      const std::span<const uint8_t> f{frames[i].data(), batch.jobs[i].out_len};
      EXPECT_TRUE(decompress(f, in.data[i].size()) == in.data[i]) << in.names[i];
      if (cpu_frames) {  // the retry is libzstd's, byte for byte
        const auto want = libzstd_frame(in.spans[i], batch.jobs[i].level);
        EXPECT_TRUE(same_bytes(f, want)) << in.names[i];
      }
    }
  };
  gpu.inject_fault_for_test();
  gpu.run(batch);
  EXPECT_EQ(batch.ran_on, "cpu-retry");
  check(true);
  EXPECT_EQ(gpu.stats().gpu_errors, 1u);
  // The next batch runs on the GPU again.
  for (auto& j : batch.jobs) j.status = backend::Status::pending, j.out_len = 0;
  gpu.run(batch);
  EXPECT_EQ(batch.ran_on, gpu.name());
  check(false);
  EXPECT_EQ(gpu.stats().gpu_errors, 1u);
}

// GpuCompressor directly: pieces of one input and of the whole batch, pinned
// and pageable buffers, give the same frames; short outputs give size 0.
TEST_F(GpuZstd, CompressorSameFramesWhateverThePiecesAndMemory) {
  Inputs in;
  for (int i = 0; i < 30; ++i)
    in.add(test::zstd_data(test::kZstdKinds[i % 5], size_t(i % 7) * 150001 + (i % 4), uint32_t(i)),
           "in" + std::to_string(i));
  in.finish();
  const size_t n = in.data.size();
  auto run = [&](entropy::GpuCompressor& c, std::span<const std::span<const uint8_t>> ins, uint8_t* out_base,
                 std::vector<size_t>& caps) {
    std::vector<std::span<uint8_t>> outs;
    size_t o = 0;
    for (size_t i = 0; i < n; ++i) outs.emplace_back(out_base + o, caps[i]), o += caps[i] + 64;
    std::vector<size_t> sizes(n, 99);
    c.compress(ins, outs, sizes);
    std::vector<std::vector<uint8_t>> r(n);
    for (size_t i = 0; i < n; ++i) r[i].assign(outs[i].begin(), outs[i].begin() + ptrdiff_t(sizes[i]));
    return r;
  };
  std::vector<size_t> caps(n);
  size_t total_cap = 0, total_in = 0;
  for (size_t i = 0; i < n; ++i) {
    caps[i] = i == 5 ? 10 : entropy::frame_bound(in.data[i].size());  // input 5: no room
    total_cap += caps[i] + 64;
    total_in += in.data[i].size();
  }
  entropy::GpuCompressor whole, one_per_piece(2);
  one_per_piece.set_piece_bytes(1);
  std::vector<uint8_t> pageable_out(total_cap);
  const auto a = run(whole, in.spans, pageable_out.data(), caps);
  const auto b = run(one_per_piece, in.spans, pageable_out.data(), caps);
  EXPECT_EQ(one_per_piece.times().pieces, n);
  EXPECT_EQ(whole.times().staged_in, total_in);
  // Pinned: inputs back to back in one cudaMallocHost buffer, outputs in another.
  uint8_t *pin_in = nullptr, *pin_out = nullptr;
  ASSERT_EQ(cudaMallocHost(&pin_in, total_in + 1), cudaSuccess);
  ASSERT_EQ(cudaMallocHost(&pin_out, total_cap), cudaSuccess);
  std::vector<std::span<const uint8_t>> pins;
  size_t o = 0;
  for (auto& d : in.data) {
    std::copy(d.begin(), d.end(), pin_in + o);
    pins.emplace_back(pin_in + o, d.size());
    o += d.size();
  }
  const auto c = run(whole, pins, pin_out, caps);
  EXPECT_EQ(whole.times().direct_in, total_in);
  EXPECT_EQ(whole.times().staged_in, 0u);
  EXPECT_EQ(whole.times().staged_out, 0u);
  EXPECT_LE(whole.times().copies_in, whole.times().pieces);  // adjacent pinned inputs: one copy per piece
  for (size_t i = 0; i < n; ++i) {
    EXPECT_EQ(a[i], b[i]) << in.names[i];
    EXPECT_EQ(a[i], c[i]) << in.names[i];
    if (i == 5) {
      EXPECT_TRUE(a[i].empty()) << "a frame that does not fit has size 0";
      continue;
    }
    EXPECT_TRUE(decompress(a[i], in.data[i].size()) == in.data[i]) << in.names[i];
  }
  // A CUDA error is thrown after the call's GPU work has stopped; the next call works.
  whole.inject_fault_once();
  EXPECT_THROW(run(whole, pins, pin_out, caps), std::runtime_error);
  EXPECT_EQ(run(whole, pins, pin_out, caps), a);
  cudaFreeHost(pin_in);
  cudaFreeHost(pin_out);
}

}  // namespace
}  // namespace gpo::zstd::gpu
