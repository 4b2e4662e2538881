// The host-to-device copy planning of the CUDA backend (kernels/common/copy_plan.h),
// on the CPU: where buffers land in the device buffer, which ranges are staged,
// and which copies a piece makes.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <span>
#include <vector>

#include "kernels/common/copy_plan.h"

namespace {

using gpo::cuda::CopyPlan;
using gpo::cuda::DeviceLayout;
using Bufs = std::vector<std::span<const uint8_t>>;

// 256-aligned host memory, so the tests know every buffer's address mod 256.
struct Arena {
  std::vector<uint8_t> raw = std::vector<uint8_t>(1 << 16);
  uint8_t* base() { return raw.data() + (256 - reinterpret_cast<uintptr_t>(raw.data()) % 256) % 256; }
  std::span<const uint8_t> at(size_t off, size_t len) { return {base() + off, len}; }
};

TEST(DeviceLayout, BuffersCloseInHostMemoryShareARange) {
  Arena a;
  // 0: [0,100); 1: [100,200) adjacent; 2: [1000,1100) 800 bytes later; 3: [20000,...) far.
  const Bufs bufs = {a.at(0, 100), a.at(100, 100), a.at(1000, 100), a.at(20000, 50)};
  DeviceLayout l;
  l.build(bufs, 4096);
  ASSERT_EQ(l.ranges.size(), 2u);
  EXPECT_EQ(l.range_of, (std::vector<uint32_t>{0, 0, 0, 1}));
  EXPECT_EQ(l.dev[0], 0u);
  EXPECT_EQ(l.dev[1], 100u);
  EXPECT_EQ(l.dev[2], 1000u);  // the gap is carried along: one copy for all three
  EXPECT_EQ(l.ranges[0].len, 1100u);
  EXPECT_EQ(l.dev[3], 1280u + 20000 % 256);  // next 256 boundary after 1100, plus host address mod 256
  EXPECT_EQ(l.total, l.dev[3] + 50);
  EXPECT_FALSE(l.any_staged());
}

TEST(DeviceLayout, NoGapAllowedSplitsRangesAndKeepsAlignmentModulo256) {
  Arena a;
  const Bufs bufs = {a.at(16, 10), a.at(30, 10), a.at(40, 0), a.at(40, 5)};
  DeviceLayout l;
  l.build(bufs, 0);  // outputs: the 4-byte gap between 0 and 1 must not be written
  ASSERT_EQ(l.ranges.size(), 2u);
  EXPECT_EQ(l.dev[0], 16u);  // host address mod 256
  EXPECT_EQ(l.dev[1], 256u + 30);
  EXPECT_EQ(l.range_of[2], DeviceLayout::kNone);  // empty buffers take no place
  EXPECT_EQ(l.range_of[3], 1u);  // adjacent to buffer 1 (gap 0)
  EXPECT_EQ(l.dev[3], 256u + 40);
}

TEST(DeviceLayout, UnpinnedRangesAreStagedOnePinnedQueryPerRange) {
  Arena a;
  static const uint8_t* pinned_base;
  static int queries;
  pinned_base = a.base();
  queries = 0;
  auto pinned = [](const void* p) {
    ++queries;
    return p == pinned_base;
  };
  const Bufs bufs = {a.at(0, 10), a.at(10, 10), a.at(9000, 10)};
  DeviceLayout l;
  l.build(bufs, 4096, pinned);
  ASSERT_EQ(l.ranges.size(), 2u);
  EXPECT_EQ(queries, 2);
  EXPECT_FALSE(l.ranges[0].staged);
  EXPECT_TRUE(l.ranges[1].staged);
  EXPECT_TRUE(l.any_staged());
}

TEST(CopyPlan, IntervalsMergePerRangeAndSkipEmptyBuffers) {
  Arena a;
  const Bufs bufs = {a.at(0, 100), a.at(100, 100), a.at(50000, 100), a.at(0, 0)};
  DeviceLayout l;
  l.build(bufs, 4096);
  CopyPlan p;
  p.add(l, 0, 50, 100);
  p.add(l, 1, 0, 60);    // same range, after the last copy: extends it
  p.add(l, 2, 10, 20);   // another range: a new copy
  p.add(l, 3, 0, 10);    // empty buffer: nothing
  p.add(l, 0, 30, 30);   // empty interval: nothing
  ASSERT_EQ(p.copies.size(), 2u);
  EXPECT_EQ(p.copies[0].range, 0u);
  EXPECT_EQ(p.copies[0].lo, 50u);
  EXPECT_EQ(p.copies[0].hi, 160u);
  EXPECT_EQ(p.copies[1].range, 1u);
  EXPECT_EQ(p.copies[1].lo, l.dev[2] + 10);
  EXPECT_EQ(p.copies[1].hi, l.dev[2] + 20);
  p.add(l, 0, 0, 10);  // back to an earlier range: its own copy
  EXPECT_EQ(p.copies.size(), 3u);
  p.clear();
  EXPECT_TRUE(p.copies.empty());
}

TEST(CopyPlan, CopyInSendsPinnedRangesDirectlyAndStagesTheOthers) {
  Arena a;
  uint8_t* host = a.base();
  for (size_t i = 0; i < 20000; ++i) host[i] = uint8_t(i * 7 + 1);
  static const uint8_t* pinned_base;
  pinned_base = host;
  const Bufs bufs = {a.at(0, 100), a.at(10000, 300)};  // range 0 pinned, range 1 not
  DeviceLayout l;
  l.build(bufs, 4096, [](const void* p) { return p == pinned_base; });
  ASSERT_EQ(l.ranges.size(), 2u);
  CopyPlan p;
  p.add(l, 0, 10, 60);
  p.add(l, 1, 100, 250);
  std::vector<uint8_t> staging(l.total, 0);
  std::vector<uint8_t> device(l.total, 0);
  struct Sent {
    uint64_t off;
    const void* src;
    uint64_t len;
  };
  std::vector<Sent> sent;
  p.copy_in(l, staging.data(), [&](uint64_t off, const void* src, uint64_t len) {
    sent.push_back({off, src, len});
    std::memcpy(device.data() + off, src, len);
  });
  ASSERT_EQ(sent.size(), 2u);
  EXPECT_EQ(sent[0].off, l.dev[0] + 10);
  EXPECT_EQ(sent[0].src, host + 10);  // pinned: straight from the buffer
  EXPECT_EQ(sent[0].len, 50u);
  EXPECT_EQ(sent[1].off, l.dev[1] + 100);
  EXPECT_EQ(sent[1].src, staging.data() + l.dev[1] + 100);  // staged at the device offset
  EXPECT_EQ(sent[1].len, 150u);
  for (uint64_t i = 10; i < 60; ++i) EXPECT_EQ(device[l.dev[0] + i], host[i]);
  for (uint64_t i = 100; i < 250; ++i) EXPECT_EQ(device[l.dev[1] + i], host[10000 + i]);
  EXPECT_EQ(staging[l.dev[1] + 99], 0);  // only the piece's bytes were staged
  EXPECT_EQ(staging[l.dev[1] + 250], 0);
}

TEST(CopyPlan, PieceTargetIsASixteenthWithinOneAndSixteenMiB) {
  EXPECT_EQ(gpo::cuda::piece_target(0), 1u << 20);
  EXPECT_EQ(gpo::cuda::piece_target(64u << 20), 4u << 20);
  EXPECT_EQ(gpo::cuda::piece_target(uint64_t{1} << 40), 16u << 20);
}

}  // namespace
