// The agent's event loop: a callback that throws is caught, logged and
// counted, and the loop goes on (the agent must not exit over one bad event);
// SIGHUP reaches its callback instead of ending the process; one-shot timers.
#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <thread>
#include <vector>
#include <signal.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <stdexcept>

#include "loop/event_loop.h"

namespace {

TEST(EventLoop, ThrowingCallbacksAreCaughtAndCounted) {
  gpo::loop::EventLoop loop;
  int efd = eventfd(1, EFD_NONBLOCK | EFD_CLOEXEC);  // readable at once
  ASSERT_GE(efd, 0);
  int fd_calls = 0, timer_calls = 0;
  loop.add_fd(efd, [&] {
    fd_calls++;
    uint64_t v;
    [[maybe_unused]] ssize_t r = read(efd, &v, sizeof v);
    throw std::runtime_error("bad packet");
  });
  loop.add_timer(std::chrono::milliseconds(10), [&] {
    if (++timer_calls == 1) throw 42;  // not even a std::exception
    if (timer_calls == 3) loop.stop();
  });
  EXPECT_EQ(loop.run(false), 0);
  EXPECT_EQ(fd_calls, 1);
  EXPECT_EQ(timer_calls, 3) << "the loop went on after both throws";
  EXPECT_EQ(loop.callback_errors(), 2u);
  close(efd);
}

TEST(EventLoop, HangupCallsItsCallbackAndTheLoopGoesOn) {
  gpo::loop::EventLoop::block_stop_signals();
  gpo::loop::EventLoop loop;
  int hups = 0;
  loop.on_hangup([&] { hups++; });
  loop.add_timer(std::chrono::milliseconds(20), [&] {
    static int ticks = 0;
    if (++ticks == 1) kill(getpid(), SIGHUP);
    if (ticks == 5) loop.stop();
  });
  EXPECT_EQ(loop.run(), 0) << "stopped by stop(), not by a signal";
  EXPECT_EQ(hups, 1);
}

// post() from other threads: each task runs once, on the loop's thread, in
// the order one thread posted them.
TEST(EventLoop, PostedTasksRunOnTheLoopThread) {
  gpo::loop::EventLoop loop;
  std::thread::id loop_thread;
  std::vector<int> seen;
  std::atomic<int> ran{0};
  std::thread runner([&] {
    loop_thread = std::this_thread::get_id();
    loop.run(false);
  });
  std::vector<std::thread> posters;
  for (int t = 0; t < 4; t++)
    posters.emplace_back([&, t] {
      for (int i = 0; i < 100; i++)
        loop.post([&, t, i] {
          EXPECT_EQ(std::this_thread::get_id(), loop_thread);
          if (t == 0) seen.push_back(i);
          ran++;
        });
    });
  for (auto& p : posters) p.join();
  for (int i = 0; i < 500 && ran < 400; i++) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  loop.post([&] { loop.stop(); });
  runner.join();
  EXPECT_EQ(ran.load(), 400);
  ASSERT_EQ(seen.size(), 100u);
  for (int i = 0; i < 100; i++) EXPECT_EQ(seen[size_t(i)], i);
}

// OneShotTimer: cb once, on the loop thread, no sooner than the delay;
// cancel() before the deadline means no call; arm() again after it fired
// fires again.
using Clock = std::chrono::steady_clock;
using std::chrono::microseconds;
using std::chrono::milliseconds;

TEST(OneShotTimer, FiresOnceAfterTheDelay) {
  gpo::loop::EventLoop loop;
  int fired = 0;
  Clock::time_point at{};
  gpo::loop::OneShotTimer timer(loop, [&] {
    fired++;
    at = Clock::now();
  });
  EXPECT_FALSE(timer.armed());
  const auto t0 = Clock::now();
  ASSERT_TRUE(timer.arm(milliseconds(30)));
  EXPECT_TRUE(timer.armed());
  loop.add_timer(milliseconds(150), [&] { loop.stop(); });  // time enough to fire twice, were it periodic
  loop.run(false);
  EXPECT_EQ(fired, 1);
  EXPECT_FALSE(timer.armed());
  EXPECT_GE(at - t0, milliseconds(30)) << "not before the delay";
  EXPECT_LT(at - t0, milliseconds(150));
}

TEST(OneShotTimer, CancelledBeforeTheDeadlineItDoesNotFire) {
  gpo::loop::EventLoop loop;
  int fired = 0;
  gpo::loop::OneShotTimer timer(loop, [&] { fired++; });
  ASSERT_TRUE(timer.arm(milliseconds(20)));
  loop.post([&] { timer.cancel(); });
  loop.add_timer(milliseconds(80), [&] { loop.stop(); });
  loop.run(false);
  EXPECT_EQ(fired, 0);
  EXPECT_FALSE(timer.armed());
}

// The loop saw the deadline pass (the timerfd came back from epoll_wait) but
// an earlier callback of the same round cancels the timer: it is not called.
// (epoll hands back fds in the order they became ready: the eventfd first.)
TEST(OneShotTimer, CancelledAfterTheDeadlineInTheSameRoundItDoesNotFire) {
  gpo::loop::EventLoop loop;
  int fired = 0, cancels = 0;
  gpo::loop::OneShotTimer timer(loop, [&] { fired++; });
  int efd = eventfd(1, EFD_NONBLOCK | EFD_CLOEXEC);  // readable at once
  ASSERT_GE(efd, 0);
  loop.add_fd(efd, [&] {
    uint64_t v;
    [[maybe_unused]] ssize_t r = read(efd, &v, sizeof v);
    cancels++;
    timer.cancel();
  });
  ASSERT_TRUE(timer.arm(microseconds(1)));
  std::this_thread::sleep_for(milliseconds(5));  // both ready before the loop first waits
  loop.add_timer(milliseconds(40), [&] { loop.stop(); });
  loop.run(false);
  EXPECT_EQ(cancels, 1);
  EXPECT_EQ(fired, 0);
  close(efd);
}

TEST(OneShotTimer, ArmingAnArmedTimerKeepsItsDeadlineAndItCanBeArmedAgain) {
  gpo::loop::EventLoop loop;
  std::vector<Clock::duration> fired;
  const auto t0 = Clock::now();
  gpo::loop::OneShotTimer* tp = nullptr;
  gpo::loop::OneShotTimer timer(loop, [&] {
    fired.push_back(Clock::now() - t0);
    if (fired.size() == 1) {
      EXPECT_TRUE(tp->arm(milliseconds(10)));  // from its own callback
    }
  });
  tp = &timer;
  ASSERT_TRUE(timer.arm(milliseconds(20)));
  ASSERT_TRUE(timer.arm(milliseconds(500)));  // already armed: 20 ms stands
  loop.add_timer(milliseconds(200), [&] { loop.stop(); });
  loop.run(false);
  ASSERT_EQ(fired.size(), 2u);
  EXPECT_GE(fired[0], milliseconds(20));
  EXPECT_LT(fired[0], milliseconds(200)) << "the second arm() did not push the deadline out";
  EXPECT_GE(fired[1], fired[0] + milliseconds(10));
}

// A timer gone from the loop is no longer watched: its fd is closed and
// removed, and the loop runs on without it.
TEST(OneShotTimer, DestroyedItLeavesTheLoop) {
  gpo::loop::EventLoop loop;
  int fired = 0;
  auto timer = std::make_unique<gpo::loop::OneShotTimer>(loop, [&] { fired++; });
  ASSERT_TRUE(timer->arm(milliseconds(10)));
  timer.reset();
  const uint64_t before = loop.dispatches();
  loop.add_timer(milliseconds(50), [&] { loop.stop(); });
  loop.run(false);
  EXPECT_EQ(fired, 0);
  EXPECT_EQ(loop.dispatches(), before) << "no fd callback ran";
}

}  // namespace
