#include "loop/event_loop.h"

#include <signal.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <cerrno>
#include <algorithm>
#include <stdexcept>
#include <string>
#include <cstring>

#include "util/log.h"

namespace gpo::loop {
namespace {

// "what: strerror(e)". Not std::system_error: clang's UBSan (vptr) cannot
// check libstdc++'s error categories, whose types are local to libstdc++.
[[noreturn]] void fail(const std::string& what, int e) {
  throw std::runtime_error(what + ": " + std::strerror(e));
}

}  // namespace

EventLoop::EventLoop() {
  epfd_ = epoll_create1(EPOLL_CLOEXEC);
  wake_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  post_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (epfd_ < 0 || wake_fd_ < 0 || post_fd_ < 0) fail("epoll/eventfd", errno);
  for (int fd : {wake_fd_, post_fd_}) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = fd;
    if (epoll_ctl(epfd_, EPOLL_CTL_ADD, fd, &ev) != 0) {
      const int e = errno;
      close(post_fd_);
      close(wake_fd_);
      close(epfd_);
      fail("epoll_ctl add the loop's eventfd", e);
    }
  }
}

EventLoop::~EventLoop() {
  if (post_fd_ >= 0) close(post_fd_);
  if (wake_fd_ >= 0) close(wake_fd_);
  if (epfd_ >= 0) close(epfd_);
}

void EventLoop::add_fd(int fd, Callback cb) {
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = fd;
  if (epoll_ctl(epfd_, EPOLL_CTL_ADD, fd, &ev) != 0)
    fail("epoll_ctl add fd " + std::to_string(fd), errno);
  fds_[fd] = std::move(cb);
}

void EventLoop::remove_fd(int fd) {
  epoll_ctl(epfd_, EPOLL_CTL_DEL, fd, nullptr);
  fds_.erase(fd);
}

void EventLoop::add_timer(std::chrono::milliseconds period, Callback cb) {
  timers_.push_back({period, std::chrono::steady_clock::now() + period, std::move(cb)});
}

void EventLoop::stop() {
  uint64_t one = 1;
  // Best effort: a full eventfd counter still wakes the loop.
  [[maybe_unused]] ssize_t n = write(wake_fd_, &one, sizeof one);
}

void EventLoop::post(Callback cb) {
  {
    std::lock_guard<std::mutex> g(posted_mu_);
    posted_.push_back(std::move(cb));
  }
  uint64_t one = 1;
  [[maybe_unused]] ssize_t n = write(post_fd_, &one, sizeof one);
}

void EventLoop::block_stop_signals() {
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGINT);
  sigaddset(&mask, SIGTERM);
  sigaddset(&mask, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &mask, nullptr);
}

void EventLoop::call(const Callback& cb, const char* what) {
  try {
    cb();
  } catch (const std::exception& e) {
    callback_errors_++;
    log::error("event loop: a {} callback failed: {} (caught; the agent goes on)", what, e.what());
  } catch (...) {
    callback_errors_++;
    log::error("event loop: a {} callback threw a non-standard exception (caught; the agent goes on)", what);
  }
}

int EventLoop::run(bool catch_signals) {
  int sig_fd = -1;
  sigset_t mask, old;
  if (catch_signals) {
    sigemptyset(&mask);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &mask, &old);
    // Without the signalfd, SIGINT/SIGTERM would stay blocked and never be
    // read: the agent could not be stopped. Say so instead of running.
    sig_fd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = sig_fd;
    if (sig_fd < 0 || epoll_ctl(epfd_, EPOLL_CTL_ADD, sig_fd, &ev) != 0) {
      const int e = errno;
      if (sig_fd >= 0) close(sig_fd);
      pthread_sigmask(SIG_SETMASK, &old, nullptr);
      fail("signalfd for SIGINT/SIGTERM", e);
    }
  }
  int stopped_by = 0;
  stopping_ = false;
  epoll_event events[64];
  while (!stopping_) {
    int timeout_ms = -1;
    auto now = std::chrono::steady_clock::now();
    for (auto& t : timers_) {
      auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(t.next - now).count();
      if (ms < 0) ms = 0;
      if (timeout_ms < 0 || ms < timeout_ms) timeout_ms = int(ms);
    }
    int n = epoll_wait(epfd_, events, 64, timeout_ms);
    if (n < 0 && errno != EINTR) fail("epoll_wait", errno);
    for (int i = 0; i < n && !stopping_; i++) {
      int fd = events[i].data.fd;
      if (fd == wake_fd_) {
        uint64_t v;
        [[maybe_unused]] ssize_t r = read(wake_fd_, &v, sizeof v);
        stopping_ = true;
      } else if (fd == post_fd_) {
        uint64_t v;
        [[maybe_unused]] ssize_t r = read(post_fd_, &v, sizeof v);
        std::vector<Callback> work;
        {
          std::lock_guard<std::mutex> g(posted_mu_);
          work.swap(posted_);
        }
        for (auto& cb : work) call(cb, "posted");
      } else if (fd == sig_fd) {
        signalfd_siginfo si{};
        if (read(sig_fd, &si, sizeof si) != sizeof si) continue;
        if (si.ssi_signo == SIGHUP) {
          if (hangup_) call(hangup_, "SIGHUP");
          else log::info("SIGHUP ignored (nothing to reload)");
          continue;
        }
        stopped_by = int(si.ssi_signo);
        stopping_ = true;
      } else if (auto it = fds_.find(fd); it != fds_.end()) {
        auto cb = it->second;  // a callback may remove its own fd
        dispatches_.fetch_add(1, std::memory_order_relaxed);
        call(cb, "file descriptor");
      }
    }
    now = std::chrono::steady_clock::now();
    for (auto& t : timers_) {
      if (stopping_) break;
      if (now >= t.next) {
        t.next = now + t.period;
        call(t.cb, "timer");
      }
    }
  }
  if (sig_fd >= 0) {
    epoll_ctl(epfd_, EPOLL_CTL_DEL, sig_fd, nullptr);
    close(sig_fd);
    pthread_sigmask(SIG_SETMASK, &old, nullptr);
  }
  return stopped_by;
}

OneShotTimer::OneShotTimer(EventLoop& loop, EventLoop::Callback cb) : loop_(loop), cb_(std::move(cb)) {
  fd_ = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
  if (fd_ < 0) fail("timerfd_create", errno);
  try {
    loop_.add_fd(fd_, [this] { on_expiry(); });
  } catch (...) {
    close(fd_);
    throw;
  }
}

OneShotTimer::~OneShotTimer() {
  loop_.remove_fd(fd_);
  close(fd_);
}

bool OneShotTimer::arm(std::chrono::microseconds delay) {
  if (armed_) return true;
  // A zero it_value would disarm the timerfd instead.
  const long long us = std::max<long long>(delay.count(), 1);
  itimerspec ts{};
  ts.it_value.tv_sec = time_t(us / 1000000);
  ts.it_value.tv_nsec = long(us % 1000000) * 1000;
  if (timerfd_settime(fd_, 0, &ts, nullptr) != 0) return false;
  armed_ = true;
  return true;
}

void OneShotTimer::cancel() {
  if (!armed_) return;
  // Disarming also clears an expiry the loop has not read yet.
  itimerspec ts{};
  timerfd_settime(fd_, 0, &ts, nullptr);
  armed_ = false;
}

void OneShotTimer::on_expiry() {
  uint64_t expirations = 0;
  // Nothing to read: cancelled after the loop saw it readable.
  if (read(fd_, &expirations, sizeof expirations) != ssize_t(sizeof expirations)) return;
  armed_ = false;
  cb_();
}

}  // namespace gpo::loop
