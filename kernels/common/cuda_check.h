// The CUDA error check of the ops' host code (g++ against cudart, or nvcc):
// a failed call becomes a cuda::Error, a std::runtime_error whose what() names
// the call's context and CUDA's error. Code with its own error path (the
// enqueue_* functions, GrowBuf::ensure) returns the cudaError_t instead and
// its caller checks it here.
#pragma once
#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

namespace gpo::cuda {

// A CUDA error as an exception; what() is "<context> (<name>: <description>)",
// or "<name>: <description>" without a context.
struct Error : std::runtime_error {
  cudaError_t code;
  Error(cudaError_t c, const char* context)
      : std::runtime_error(context ? std::string(context) + " (" + cudaGetErrorName(c) + ": " + cudaGetErrorString(c) + ")"
                                   : std::string(cudaGetErrorName(c)) + ": " + cudaGetErrorString(c)),
        code(c) {}
};

inline void check(cudaError_t e, const char* context = nullptr) {
  if (e != cudaSuccess) throw Error(e, context);
}
// The ops' enqueue_* functions return a cudaError_t as int, so that their
// headers stay free of CUDA types.
inline void check(int e, const char* context = nullptr) { check(static_cast<cudaError_t>(e), context); }

// Usable CUDA devices: the count, or 0 with *why set (no driver, no device,
// ...); a failed query's error is cleared so it does not stick to the next call.
inline int device_count(std::string* why) {
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    cudaGetLastError();
    if (why) *why = std::string(cudaGetErrorString(e)) + " (" + cudaGetErrorName(e) + ")";
    return 0;
  }
  if (n == 0 && why) *why = "no CUDA device found";
  return n;
}

}  // namespace gpo::cuda
