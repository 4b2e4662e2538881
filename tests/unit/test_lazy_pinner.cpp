// LazyPinner: a slab is pinned only after the GPU has moved its size through
// it, on the pinner's thread, never on the caller's; remove() waits for a pin in
// progress and undoes a finished one. The pin and unpin functions here are
// stand-ins that record their calls (cudaHostRegister needs a GPU).
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include "backend/lazy_pinner.h"

using gpo::backend::LazyPinner;
using State = LazyPinner::State;
using namespace std::chrono_literals;

namespace {

struct Recorder {
  std::atomic<int> pins{0}, unpins{0};
  std::atomic<bool> release{true};  // pin() returns only once this is true
  std::atomic<std::thread::id> pin_thread{};
  bool fail = false;
  LazyPinner make() {
    return LazyPinner(
        [this](void*, size_t) {
          pin_thread = std::this_thread::get_id();
          while (!release.load()) std::this_thread::sleep_for(1ms);
          ++pins;
          return !fail;
        },
        [this](void*) { ++unpins; });
  }
};

bool wait_for(const LazyPinner& lp, const void* p, State want) {
  for (int i = 0; i < 2000; ++i) {
    State s;
    if (lp.state(p, &s) && s == want) return true;
    std::this_thread::sleep_for(1ms);
  }
  return false;
}

}  // namespace

TEST(LazyPinner, NothingIsPinnedUntilTheGpuMovedItsSize) {
  Recorder r;
  std::vector<uint8_t> slab(1 << 16), other(64);
  {
    LazyPinner lp = r.make();
    lp.add(slab.data(), slab.size());
    State s;
    ASSERT_TRUE(lp.state(slab.data() + 100, &s));
    EXPECT_EQ(s, State::waiting);
    EXPECT_FALSE(lp.state(other.data(), &s)) << "an address outside every region";
    lp.used(other.data(), 1 << 20);  // not a region: nothing happens
    lp.used(slab.data(), slab.size() / 2);  // half its size: staging is cheaper than pinning yet
    std::this_thread::sleep_for(20ms);
    EXPECT_EQ(r.pins, 0);
    ASSERT_TRUE(lp.state(slab.data(), &s));
    EXPECT_EQ(s, State::waiting);
    lp.used(slab.data() + slab.size() - 1, slab.size() / 2);  // the last byte belongs to it
    ASSERT_TRUE(wait_for(lp, slab.data(), State::pinned));
    EXPECT_EQ(r.pins, 1);
    EXPECT_NE(r.pin_thread.load(), std::this_thread::get_id()) << "the caller pinned";
    lp.used(slab.data(), slab.size());  // pinned already: once only
    std::this_thread::sleep_for(20ms);
    EXPECT_EQ(r.pins, 1);
  }
  EXPECT_EQ(r.unpins, 1) << "the destructor leaves a region pinned";
}

TEST(LazyPinner, UsedDoesNotWaitForThePin) {
  Recorder r;
  r.release = false;
  std::vector<uint8_t> slab(4096);
  LazyPinner lp = r.make();
  lp.add(slab.data(), slab.size());
  const auto t0 = std::chrono::steady_clock::now();
  lp.used(slab.data(), slab.size());
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 500ms);
  ASSERT_TRUE(wait_for(lp, slab.data(), State::pinning));
  r.release = true;
  ASSERT_TRUE(wait_for(lp, slab.data(), State::pinned));
}

TEST(LazyPinner, RemoveWaitsForAPinInProgressThenUndoesIt) {
  Recorder r;
  r.release = false;
  std::vector<uint8_t> slab(4096);
  LazyPinner lp = r.make();
  lp.add(slab.data(), slab.size());
  lp.used(slab.data(), slab.size());
  ASSERT_TRUE(wait_for(lp, slab.data(), State::pinning));
  std::atomic<bool> removed{false};
  std::thread t([&] {
    lp.remove(slab.data());
    removed = true;
  });
  std::this_thread::sleep_for(50ms);
  EXPECT_FALSE(removed) << "remove() returned while the region was being pinned";
  r.release = true;
  t.join();
  EXPECT_EQ(r.pins, 1);
  EXPECT_EQ(r.unpins, 1);
  State s;
  EXPECT_FALSE(lp.state(slab.data(), &s));
}

TEST(LazyPinner, ARegionRemovedBeforeItsTurnIsNeverPinned) {
  Recorder r;
  r.release = false;
  std::vector<uint8_t> a(4096), b(4096);
  LazyPinner lp = r.make();
  lp.add(a.data(), a.size());
  lp.add(b.data(), b.size());
  lp.used(a.data(), a.size());
  ASSERT_TRUE(wait_for(lp, a.data(), State::pinning));
  lp.used(b.data(), b.size());  // queued behind a
  lp.remove(b.data());
  r.release = true;
  ASSERT_TRUE(wait_for(lp, a.data(), State::pinned));
  std::this_thread::sleep_for(20ms);
  EXPECT_EQ(r.pins, 1) << "b was pinned after it was removed";
  EXPECT_EQ(r.unpins, 0);
}

TEST(LazyPinner, AFailedPinIsNotUndoneNorRetried) {
  Recorder r;
  r.fail = true;
  std::vector<uint8_t> slab(4096);
  {
    LazyPinner lp = r.make();
    lp.add(slab.data(), slab.size());
    lp.used(slab.data(), slab.size());
    ASSERT_TRUE(wait_for(lp, slab.data(), State::failed));
    lp.used(slab.data(), slab.size());
    std::this_thread::sleep_for(20ms);
    EXPECT_EQ(r.pins, 1);
  }
  EXPECT_EQ(r.unpins, 0);
}
