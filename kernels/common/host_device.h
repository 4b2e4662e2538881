// GPO_HD marks code compiled for both the host and the GPU (nvcc), so the
// frame parser and the ACL lookup are one implementation on both sides.
#pragma once
#if defined(__CUDACC__)
#define GPO_HD __host__ __device__ __forceinline__
#else
#define GPO_HD inline
#endif
