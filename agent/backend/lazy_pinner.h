// Pins client slabs for DMA only once the GPU is given work in them, on a
// thread of its own. Pinning (cudaHostRegister) faults in and locks every
// page of the region: about a second for the 2 GiB slab a program may ask
// for, which the client's registration would otherwise wait for, and memory
// committed for slabs whose jobs all stay on the CPU. Until a region is
// pinned, the GPU backend's copies of it go through its staging buffers.
#pragma once
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <thread>

namespace gpo::backend {

class LazyPinner {
 public:
  using PinFn = std::function<bool(void* p, size_t len)>;  // false: could not pin (stays unpinned)
  using UnpinFn = std::function<void(void* p)>;
  LazyPinner(PinFn pin, UnpinFn unpin);
  ~LazyPinner();  // stops the thread; regions still pinned are unpinned

  void add(void* p, size_t len);  // known, not pinned yet
  // A GPU run reads or writes addr: its region (if any) is queued for pinning.
  void used(const void* addr);
  // Forgets p: a pin in progress is waited for, a queued one dropped, a done one undone.
  void remove(void* p);

  enum class State { waiting, queued, pinning, pinned, failed };
  // The state of the region holding addr, or false when no region holds it.
  bool state(const void* addr, State* s) const;

 private:
  struct Region {
    size_t len;
    State state;
  };
  void run();
  std::map<uintptr_t, Region>::iterator find(uintptr_t a);

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
