// The agent's event loop: one epoll set, callbacks per fd, periodic and one-shot timers,
// a clean stop on SIGINT/SIGTERM, and SIGHUP handed to a callback (reload).
// Nothing spins: when every source is idle the thread sleeps in epoll_wait.
// Each data path (spotting ring buffer, AF_XDP sockets, client IPC) registers
// its fds here; `run` composes them. A callback that throws is logged and
// counted, and the loop goes on: one bad event must not end the agent (whose
// exit would take the packet filter's agent away).
#pragma once
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
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
  // Calls cb (on the loop thread) when SIGHUP arrives; without one SIGHUP is
  // logged and ignored.
  void on_hangup(Callback cb) { hangup_ = std::move(cb); }
  // Exceptions thrown by callbacks (caught, logged, counted).
  uint64_t callback_errors() const { return callback_errors_; }

  // Runs until stop() or SIGINT/SIGTERM (when catch_signals). Returns the
  // signal number that stopped it, or 0 when stopped by stop(). Throws
  // std::runtime_error when it cannot watch for those signals (it could not
  // be stopped) or epoll fails.
  int run(bool catch_signals = true);
  // Blocks SIGINT/SIGTERM/SIGHUP in the calling thread. Call it before any thread is
  // started (CUDA runtime, backend workers): threads inherit the mask, so the
  // signal waits for run()'s signalfd instead of killing the process through a
  // worker thread that left it unblocked.
  static void block_stop_signals();
  // Safe from any thread and from inside callbacks.
  void stop();
  // Runs cb on the loop thread, soon (safe from any thread): how another
  // thread hands work to a loop that owns the state it touches.
  void post(Callback cb);
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
  int post_fd_ = -1;  // eventfd: post() from other threads
  std::mutex posted_mu_;
  std::vector<Callback> posted_;
  std::map<int, Callback> fds_;
  std::vector<Timer> timers_;
  Callback hangup_;
  uint64_t callback_errors_ = 0;
  bool stopping_ = false;
  void call(const Callback& cb, const char* what);
  std::atomic<uint64_t> dispatches_{0};
};

// A one-shot timer on an EventLoop, to the microsecond (a timerfd; the loop's
// periodic timers count milliseconds): arm() has cb called once, on the loop
// thread, when the delay has passed; cancel() takes that back. Registered
// with the loop for its whole life: the loop must outlive it.
class OneShotTimer {
 public:
  // Throws std::runtime_error when no timerfd can be made or added.
  OneShotTimer(EventLoop& loop, EventLoop::Callback cb);
  ~OneShotTimer();
  OneShotTimer(const OneShotTimer&) = delete;
  OneShotTimer& operator=(const OneShotTimer&) = delete;

  // Fires delay from now (at least 1 us); an armed timer keeps the deadline
  // it has. False, with errno set, when the kernel refused it: not armed.
  bool arm(std::chrono::microseconds delay);
  // Disarmed: cb is not called until the next arm(), even when the deadline
  // passed and the loop has not run it yet.
  void cancel();
  bool armed() const { return armed_; }

 private:
  void on_expiry();
  EventLoop& loop_;
  EventLoop::Callback cb_;
  int fd_ = -1;
  bool armed_ = false;
};

}  // namespace gpo::loop
