// Grow-only CUDA buffers for host code (g++ against cudart, or nvcc): device
// memory (DevBuf) and pinned host memory (PinnedBuf) that a batch reuses from
// the last one and replaces only when it needs more. Growing drops the old
// contents. Sizes are in elements of T.
//
// Errors the way each caller needs them: ensure() returns the cudaError_t
// (callers with their own error path), get() throws cuda::Error with context
// (cuda_check.h).
#pragma once
#include <cuda_runtime.h>

#include <cstddef>
#include <utility>

#include "kernels/common/cuda_check.h"

namespace gpo::cuda {

// Whether host memory at p is pinned (cudaMallocHost or registered), so the
// GPU can DMA it directly. A failed query (plain pageable memory on some
// drivers) counts as not pinned and is cleared.
inline bool is_pinned(const void* p) {
  cudaPointerAttributes a{};
  const bool pinned = cudaPointerGetAttributes(&a, p) == cudaSuccess && a.type == cudaMemoryTypeHost;
  cudaGetLastError();
  return pinned;
}

namespace detail {

struct DeviceMemory {
  static cudaError_t alloc(void** p, size_t bytes) { return cudaMalloc(p, bytes); }
  static void release(void* p) { cudaFree(p); }
  static constexpr const char* kName = "cudaMalloc";
};
struct PinnedMemory {
  static cudaError_t alloc(void** p, size_t bytes) { return cudaMallocHost(p, bytes); }
  static void release(void* p) { cudaFreeHost(p); }
  static constexpr const char* kName = "cudaMallocHost";
};

template <typename T, typename Memory>
class GrowBuf {
 public:
  GrowBuf() = default;
  GrowBuf(const GrowBuf&) = delete;
  GrowBuf& operator=(const GrowBuf&) = delete;
  GrowBuf(GrowBuf&& o) noexcept : p_(std::exchange(o.p_, nullptr)), n_(std::exchange(o.n_, 0)) {}
  GrowBuf& operator=(GrowBuf&& o) noexcept {
    if (this != &o) {
      reset();
      p_ = std::exchange(o.p_, nullptr);
      n_ = std::exchange(o.n_, 0);
    }
    return *this;
  }
  ~GrowBuf() { reset(); }

  // Room for at least n elements (at least one is allocated, so data() is
  // never null after a success). On failure the buffer is empty.
  cudaError_t ensure(size_t n) {
    if (n <= n_ && p_) return cudaSuccess;
    reset();
    void* p = nullptr;
    const cudaError_t e = Memory::alloc(&p, (n ? n : 1) * sizeof(T));
    if (e != cudaSuccess) return e;
    p_ = static_cast<T*>(p);
    n_ = n;
    return cudaSuccess;
  }
  // ensure(n) or throw cuda::Error naming context (default: the allocator).
  T* get(size_t n, const char* context = nullptr) {
    check(ensure(n), context ? context : Memory::kName);
    return p_;
  }
  void reset() {
    if (p_) Memory::release(p_);
    p_ = nullptr;
    n_ = 0;
  }

  T* data() const { return p_; }
  size_t size() const { return n_; }  // capacity in elements

 private:
  T* p_ = nullptr;
  size_t n_ = 0;
};

}  // namespace detail

template <typename T>
using DevBuf = detail::GrowBuf<T, detail::DeviceMemory>;
template <typename T>
using PinnedBuf = detail::GrowBuf<T, detail::PinnedMemory>;

}  // namespace gpo::cuda
