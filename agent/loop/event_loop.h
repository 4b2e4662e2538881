// The agent's event loop: one epoll set, callbacks per fd, periodic timers,
// and a clean stop on SIGINT/SIGTERM. Nothing spins: when every source is
// idle the thread sleeps in epoll_wait. Each data path (spotting ring buffer,
// AF_XDP sockets, client IPC) registers its fds here; `run` composes them.
#pragma once
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <vector>

namespace gpo::loop {

class EventLoop {
 public:
  using Callback = std::function<void()>;

  EventLoop();
  ~EventLoop();
  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;

  // Calls cb whenever fd is readable (level-triggered). fd stays owned by the
  // caller. Throws std::runtime_error when epoll refuses it.
  void add_fd(int fd, Callback cb);
  void remove_fd(int fd);
  // Calls cb every period, from the loop thread, starting one period from now.
  void add_timer(std::chrono::milliseconds period, Callback cb);

  // Runs until stop() or SIGINT/SIGTERM (when catch_signals). Returns the
  // signal number that stopped it, or 0 when stopped by stop(). Throws
  // std::runtime_error when it cannot watch for those signals (it could not
  // be stopped) or epoll fails.
  int run(bool catch_signals = true);
  // Blocks SIGINT/SIGTERM in the calling thread. Call it before any thread is
  // started (CUDA runtime, backend workers): threads inherit the mask, so the
  // signal waits for run()'s signalfd instead of killing the process through a
  // worker thread that left it unblocked.
  static void block_stop_signals();
  // Safe from any thread and from inside callbacks.
  void stop();
  // fd callbacks run so far (any thread): a loop that spins shows here.
  uint64_t dispatches() const { return dispatches_.load(std::memory_order_relaxed); }

 private:
  struct Timer {
    std::chrono::milliseconds period;
    std::chrono::steady_clock::time_point next;
    Callback cb;
  };
  int epfd_ = -1;
  int wake_fd_ = -1;  // eventfd: stop() from other threads
  std::map<int, Callback> fds_;
  std::vector<Timer> timers_;
  bool stopping_ = false;
  std::atomic<uint64_t> dispatches_{0};
};

}  // namespace gpo::loop
