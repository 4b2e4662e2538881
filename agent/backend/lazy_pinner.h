// Pins client slabs for DMA only once the GPU has moved as many bytes through
// them as they hold, on a thread of its own. Pinning (cudaHostRegister)
// faults in and locks every page of the region: about a second for the 2 GiB
// slab a program may ask for, which the client's registration would otherwise
// wait for, memory committed for slabs whose jobs all stay on the CPU, and
// more than staging costs a program that sends a few jobs (one collected
// stream: a 270 MB job in a 2 GiB slab). Until a region is pinned, the GPU
// backend's copies of it go through its staging buffers, which cost about
// what pinning would once the bytes moved reach the slab's size.
#pragma once
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <span>
#include <thread>

namespace gpo::backend {

class LazyPinner {
 public:
  using PinFn = std::function<bool(void* p, size_t len)>;  // false: could not pin (stays unpinned)
  using UnpinFn = std::function<void(void* p)>;
  LazyPinner(PinFn pin, UnpinFn unpin);
  ~LazyPinner();  // stops the thread; regions still pinned are unpinned

  void add(void* p, size_t len);  // known, not pinned yet
  // A GPU run reads or writes bytes at addr: once its region (if any) has
  // seen as many bytes as it holds, it is queued for pinning.
  void used(const void* addr, size_t bytes) {
    const Use u{addr, bytes};
    used(std::span<const Use>(&u, 1));
  }
  // The same for every job of a GPU run, under one lock.
  struct Use {
    const void* addr;
    size_t bytes;
  };
  void used(std::span<const Use> uses);
  // Forgets p: a pin in progress is waited for, a queued one dropped, a done one undone.
  void remove(void* p);

  enum class State { waiting, queued, pinning, pinned, failed };
  // The state of the region holding addr, or false when no region holds it.
  bool state(const void* addr, State* s) const;

 private:
  struct Region {
    size_t len;
    State state;
    uint64_t moved = 0;  // bytes GPU runs read or wrote in it
  };
  void run();
  // The region holding a, or end(); regions_ is const-iterable from state().
  template <typename Map>
  static auto find(Map& regions, uintptr_t a) -> decltype(regions.end());

  PinFn pin_;
  UnpinFn unpin_;
  mutable std::mutex mu_;
  std::condition_variable cv_;  // queue and state changes
  std::map<uintptr_t, Region> regions_;
  std::deque<uintptr_t> queue_;
  bool stop_ = false;
  std::thread thread_;  // started on the first used()
};

}  // namespace gpo::backend
