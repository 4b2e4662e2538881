// The agent's event loop: a callback that throws is caught, logged and
// counted, and the loop goes on (the agent must not exit over one bad event);
// SIGHUP reaches its callback instead of ending the process.
#include <gtest/gtest.h>

#include <atomic>
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

}  // namespace
