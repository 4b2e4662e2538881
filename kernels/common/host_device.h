// The host/device marker of the ops' portable code, after CUB's
// _CCCL_HOST_DEVICE / _CCCL_FORCEINLINE pair: one implementation that nvcc
// compiles for both sides and g++ for the host (the frame parser, the ACL
// lookup, the match step, the zstd parse and block encoder, crc32's GF(2)
// algebra), so a GPU result can be checked against its CPU twin.
//
//   GPO_HD           callable on the host and the device (nothing for g++)
//   GPO_FORCEINLINE  __forceinline__ under nvcc, inline for g++
//
// Write the linkage with it: `GPO_HD GPO_FORCEINLINE` for the small steps a
// kernel's inner loop calls, `GPO_HD inline` for larger functions nvcc may
// keep out of line, `GPO_HD constexpr` for compile-time tables.
#pragma once
#if defined(__CUDACC__)
#define GPO_HD __host__ __device__
#define GPO_FORCEINLINE __forceinline__
#else
#define GPO_HD
#define GPO_FORCEINLINE inline
#endif
