// zstd stage 2 on the GPU: a batch of inputs (stage 1's layout: blocks and
// sequences on the device) entropy-coded into one frame per input by
// GpuEncoder. Every frame must be bit-identical to the CPU run of the same
// encoder (cpu_encode_frame) and decompress with libzstd to its input, over
// the data kinds and sizes of zstd_entropy_data.h (empty input included).
#include <cuda_runtime.h>
#include <gtest/gtest.h>
#include <zstd.h>

#include <algorithm>
#include <span>
#include <string>
#include <vector>

#include "kernels/common/cuda_check.h"
#include "unit/zstd_entropy_data.h"
#include "kernels/zstd/zstd_entropy.h"
#include "kernels/zstd/zstd_find.h"

namespace {

using gpo::zstd::gpu::BlockDesc;
using gpo::zstd::gpu::Sequence;
namespace ent = gpo::zstd::entropy;
namespace data = gpo::test::zstd_data;

bool gpu_usable(std::string* why) {
  std::string reason;
  if (gpo::cuda::device_count(&reason) > 0) return true;
  *why = "no usable CUDA device: " + reason;
  return false;
}

template <typename T>
T* upload(const std::vector<T>& v) {
  T* d = nullptr;
  EXPECT_EQ(cudaMalloc(&d, std::max<size_t>(1, v.size()) * sizeof(T)), cudaSuccess);
  if (!v.empty()) {
    EXPECT_EQ(cudaMemcpy(d, v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice), cudaSuccess);
  }
  return d;
}

// Encodes a batch (inputs laid out in batch, blocks and sequences in stage
// 1's layout) on the GPU and checks every frame: equal to the CPU encoder's,
// decompresses to its input.
void check_batch(const std::string& name, const std::vector<std::vector<uint8_t>>& inputs,
                 const std::vector<uint8_t>& batch, const std::vector<BlockDesc>& blocks,
                 const std::vector<Sequence>& seqs, ent::GpuEncoder& encoder) {
  std::vector<uint64_t> in_sizes;
  std::vector<size_t> sizes;
  for (const auto& in : inputs) {
    in_sizes.push_back(in.size());
    sizes.push_back(in.size());
  }
  const uint64_t extent = batch.size(), slots = seqs.size();
  uint8_t* d_in = upload(batch);
  BlockDesc* d_blocks = upload(blocks);
  Sequence* d_seqs = upload(seqs);
  ASSERT_EQ(encoder.encode(d_in, extent, d_blocks, uint32_t(blocks.size()), d_seqs, slots, in_sizes, nullptr), 0);
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  std::vector<uint64_t> offs(inputs.size() + 1);
  ASSERT_EQ(cudaMemcpy(offs.data(), encoder.d_offsets(), offs.size() * 8, cudaMemcpyDeviceToHost), cudaSuccess);
  std::vector<uint8_t> out(offs.back());
  ASSERT_EQ(cudaMemcpy(out.data(), encoder.d_out(), out.size(), cudaMemcpyDeviceToHost), cudaSuccess);
  cudaFree(d_in);
  cudaFree(d_blocks);
  cudaFree(d_seqs);

  size_t b0 = 0;
  for (size_t i = 0; i < inputs.size(); ++i) {
    const std::string what = name + " " + std::to_string(sizes[i]) + " (input " + std::to_string(i) + ")";
    size_t nb = 0;
    while (b0 + nb < blocks.size() && blocks[b0 + nb].input == i) nb++;
    std::vector<uint8_t> ref(ent::frame_bound(sizes[i]));
    ref.resize(ent::cpu_encode_frame(batch.data(), {blocks.data() + b0, nb}, seqs.data(), sizes[i], ent::kWindowLog,
                                     ref.data(), ref.size()));
    b0 += nb;
    const std::vector<uint8_t> got(out.begin() + offs[i], out.begin() + offs[i + 1]);
    size_t first_diff = 0;
    while (first_diff < std::min(got.size(), ref.size()) && got[first_diff] == ref[first_diff]) first_diff++;
    EXPECT_TRUE(got == ref) << what << ": GPU frame (" << got.size() << " B) differs from CPU frame (" << ref.size()
                            << " B) first at byte " << first_diff;
    std::vector<uint8_t> back(sizes[i] + 1);
    const size_t r = ZSTD_decompress(back.data(), back.size(), got.data(), got.size());
    ASSERT_FALSE(ZSTD_isError(r)) << what << ": " << ZSTD_getErrorName(r);
    ASSERT_EQ(r, sizes[i]) << what;
    back.resize(r);
    EXPECT_TRUE(back == inputs[i]) << what << ": content differs";
  }
}

// Lays inputs out back to back (16-byte aligned), as the bench and
// GpuCompressor do. Returns the batch; offsets get each input's start.
std::vector<uint8_t> lay_out(const std::vector<std::vector<uint8_t>>& inputs, std::vector<uint64_t>& sizes,
                             std::vector<uint64_t>& offsets) {
  uint64_t extent = 0;
  for (const auto& in : inputs) {
    sizes.push_back(in.size());
    offsets.push_back(extent);
    extent += (in.size() + 15) / 16 * 16;
  }
  std::vector<uint8_t> batch(extent);
  for (size_t i = 0; i < inputs.size(); ++i) std::copy(inputs[i].begin(), inputs[i].end(), batch.begin() + offsets[i]);
  return batch;
}

// One batch: all sizes of one data kind, stage 1's CPU twin for the parse.
void run_batch(const data::Kind& kind, const std::vector<size_t>& sizes, ent::GpuEncoder& encoder) {
  std::vector<std::vector<uint8_t>> inputs;
  for (size_t n : sizes) inputs.push_back(kind.make(n));
  std::vector<uint64_t> in_sizes, offsets;
  const std::vector<uint8_t> batch = lay_out(inputs, in_sizes, offsets);
  std::vector<BlockDesc> blocks;
  const uint64_t slots = gpo::zstd::gpu::plan_blocks(in_sizes, offsets, blocks);
  std::vector<Sequence> seqs(slots);
  gpo::zstd::gpu::cpu_find(batch, blocks, seqs);
  check_batch(kind.name, inputs, batch, blocks, seqs, encoder);
}

// Sequence shapes the finder rarely makes (data::make_shape): the most
// sequences a block holds, one per block, RLE streams, long codes, none.
void run_shape(int shape, ent::GpuEncoder& encoder) {
  data::Shaped sh = data::make_shape(shape);
  check_batch("shape " + std::to_string(shape), sh.inputs, sh.batch, sh.blocks, sh.seqs, encoder);
}

TEST(GpuZstdEntropy, FramesMatchCpuAndDecompressAllKinds) {
  std::string why;
  if (!gpu_usable(&why)) GTEST_SKIP() << why;
  ent::GpuEncoder encoder;
  for (const auto& k : data::kinds()) run_batch(k, data::sizes(), encoder);
}

TEST(GpuZstdEntropy, SequenceShapesMatchCpu) {
  std::string why;
  if (!gpu_usable(&why)) GTEST_SKIP() << why;
  ent::GpuEncoder encoder;
  for (int shape = 0; shape < 6; ++shape) run_shape(shape, encoder);
}

// The first, simple path (one thread per block) gives the same frames.
TEST(GpuZstdEntropy, OneThreadPerBlockPathMatchesToo) {
  std::string why;
  if (!gpu_usable(&why)) GTEST_SKIP() << why;
  ent::GpuEncoder encoder;
  encoder.set_one_thread_per_block(true);
  for (const auto& k : data::kinds()) run_batch(k, data::sizes(), encoder);
}

// A big batch: many 1 MiB inputs and one 64 MiB input in one launch.
TEST(GpuZstdEntropy, LargeBatch) {
  std::string why;
  if (!gpu_usable(&why)) GTEST_SKIP() << why;
  ent::GpuEncoder encoder;
  std::vector<size_t> sizes(24, 1 << 20);
  sizes.push_back(64 << 20);
  sizes.push_back(0);
  run_batch(data::kinds()[5], sizes, encoder);  // mixed
}

// Stages 1 + 2 host in, host out: every kind and size in one call; each
// frame decompresses to its input; a too-small output reports 0.
TEST(GpuZstdEntropy, CompressorHostInHostOut) {
  std::string why;
  if (!gpu_usable(&why)) GTEST_SKIP() << why;
  ent::GpuCompressor comp;
  std::vector<std::vector<uint8_t>> inputs, outputs;
  for (const auto& k : data::kinds())
    for (size_t n : data::sizes()) {
      inputs.push_back(k.make(n));
      outputs.emplace_back(ent::frame_bound(n));
    }
  outputs.back().resize(8);  // too small for any frame of its input
  std::vector<std::span<const uint8_t>> ins(inputs.begin(), inputs.end());
  std::vector<std::span<uint8_t>> outs(outputs.begin(), outputs.end());
  std::vector<size_t> sizes(inputs.size());
  for (int round = 0; round < 2; ++round) {  // buffers reused by the second call
    comp.compress(ins, outs, sizes);
    for (size_t i = 0; i + 1 < inputs.size(); ++i) {
      ASSERT_GT(sizes[i], 0u) << i;
      std::vector<uint8_t> back(inputs[i].size() + 1);
      const size_t r = ZSTD_decompress(back.data(), back.size(), outputs[i].data(), sizes[i]);
      ASSERT_FALSE(ZSTD_isError(r)) << i << ": " << ZSTD_getErrorName(r);
      back.resize(r);
      EXPECT_TRUE(back == inputs[i]) << i;
    }
    EXPECT_EQ(sizes.back(), 0u);
  }
}

}  // namespace
