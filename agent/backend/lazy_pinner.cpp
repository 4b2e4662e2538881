#include "backend/lazy_pinner.h"

#include <pthread.h>

namespace gpo::backend {

LazyPinner::LazyPinner(PinFn pin, UnpinFn unpin) : pin_(std::move(pin)), unpin_(std::move(unpin)) {}

LazyPinner::~LazyPinner() {
  {
    std::lock_guard lk(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  for (auto& [a, r] : regions_)
    if (r.state == State::pinned) unpin_(reinterpret_cast<void*>(a));
}

void LazyPinner::add(void* p, size_t len) {
  std::lock_guard lk(mu_);
  regions_[reinterpret_cast<uintptr_t>(p)] = {len, State::waiting};
}

template <typename Map>
auto LazyPinner::find(Map& regions, uintptr_t a) -> decltype(regions.end()) {
  auto it = regions.upper_bound(a);
  if (it == regions.begin()) return regions.end();
  --it;
  return a < it->first + it->second.len ? it : regions.end();
}

void LazyPinner::used(std::span<const Use> uses) {
  std::lock_guard lk(mu_);
  bool queued = false;
  for (const Use& u : uses) {
    auto it = find(regions_, reinterpret_cast<uintptr_t>(u.addr));
    if (it == regions_.end() || it->second.state != State::waiting) continue;
    it->second.moved += u.bytes;
    if (it->second.moved < it->second.len) continue;
    it->second.state = State::queued;
    queue_.push_back(it->first);
    queued = true;
  }
  if (!queued) return;
  if (!thread_.joinable())
    thread_ = std::thread([this] {
      pthread_setname_np(pthread_self(), "gpo-pin");
      run();
    });
  cv_.notify_all();
}

void LazyPinner::run() {
  std::unique_lock lk(mu_);
  for (;;) {
    cv_.wait(lk, [&] { return stop_ || !queue_.empty(); });
    if (stop_) return;
    const uintptr_t a = queue_.front();
    queue_.pop_front();
    auto it = regions_.find(a);
    if (it == regions_.end() || it->second.state != State::queued) continue;
    it->second.state = State::pinning;
    const size_t len = it->second.len;
    lk.unlock();
    const bool ok = pin_(reinterpret_cast<void*>(a), len);
    lk.lock();
    regions_.at(a).state = ok ? State::pinned : State::failed;  // remove() waits while pinning
    cv_.notify_all();
  }
}

void LazyPinner::remove(void* p) {
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  std::unique_lock lk(mu_);
  cv_.wait(lk, [&] {
    auto it = regions_.find(a);
    return it == regions_.end() || it->second.state != State::pinning;
  });
  auto it = regions_.find(a);
  if (it == regions_.end()) return;
  const bool pinned = it->second.state == State::pinned;
  regions_.erase(it);  // a queued entry is skipped by run()
  lk.unlock();
  if (pinned) unpin_(p);
}

bool LazyPinner::state(const void* addr, State* s) const {
  std::lock_guard lk(mu_);
  auto it = find(regions_, reinterpret_cast<uintptr_t>(addr));
  if (it == regions_.end()) return false;
  *s = it->second.state;
  return true;
}

}  // namespace gpo::backend
