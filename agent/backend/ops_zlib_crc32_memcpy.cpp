// zlib compress2() (CPU only), CRC-32 (a GPU kernel that splits one buffer,
// kernels/crc32) and memcpy (CPU memcpy; on a GPU it is two PCIe crossings,
// kept so the planner and `bench zlib-crc32-memcpy` show what it costs).
#include <cstring>

#include "backend/ops.h"
#include "kernels/crc32/crc32.h"
#include "kernels/zlib/zlib.h"

namespace gpo::backend {
namespace {

Status cpu_zlib(Job& j) {
  size_t n = 0;
  const auto r = deflate::cpu_compress(j.in, j.out, j.level, &n);
  j.out_len = n;
  return r == deflate::Result::ok ? Status::ok : Status::invalid;
}

Status cpu_crc32(Job& j) {
  const uint32_t c = crc32::cpu_crc32(j.crc, j.in);
  for (size_t i = 0; i < 4; ++i) j.out[i] = uint8_t(c >> (8 * i));
  j.out_len = crc32::kCrcBytes;
  return Status::ok;
}

// CRC-32 of bytes [lo, hi): from the job's crc for the first range, from 0
// for the others; join() chains them with the shift operator (crc32::combine).
Status cpu_crc32_range(Job& j, uint64_t lo, std::span<const uint8_t> bytes, uint64_t* part) {
  *part = crc32::cpu_crc32(lo == 0 ? j.crc : 0, bytes);
  return Status::ok;
}

void join_crc32(Job& j, std::span<const uint64_t> parts, std::span<const uint64_t> ends) {
  uint32_t c = uint32_t(parts[0]);
  for (size_t k = 1; k < parts.size(); ++k) c = crc32::combine(c, uint32_t(parts[k]), ends[k] - ends[k - 1]);
  for (size_t i = 0; i < 4; ++i) j.out[i] = uint8_t(c >> (8 * i));
  j.out_len = crc32::kCrcBytes;
}

Status cpu_memcpy(Job& j) {
  if (!j.in.empty() && j.in.data() != j.out.data()) std::memcpy(j.out.data(), j.in.data(), j.in.size());
  j.out_len = j.in.size();
  return Status::ok;
}

Status cpu_memcpy_range(Job& j, uint64_t lo, std::span<const uint8_t> bytes, uint64_t*) {
  if (j.out.data() + lo != bytes.data()) std::memcpy(j.out.data() + lo, bytes.data(), bytes.size());
  return Status::ok;
}

void join_memcpy(Job& j, std::span<const uint64_t>, std::span<const uint64_t>) { j.out_len = j.in.size(); }

}  // namespace

// deflate is a sequential match search: no GPU kernel (the CUDA backend hands it to its CPU).
const OpImpl zlib_compress_impl{.gpu_sequential = true, .cpu = cpu_zlib};
// One buffer splits into segments joined by the GF(2) shift operator: parallel within a job.
// The CPU backend splits long CRC-32 and memcpy jobs across its threads the same way.
const OpImpl crc32_impl{
    .cpu = cpu_crc32, .split_align = 64, .cpu_range = cpu_crc32_range, .join = join_crc32, .input_snapshot = false};
const OpImpl memcpy_impl{
    .cpu = cpu_memcpy, .split_align = 4096, .cpu_range = cpu_memcpy_range, .join = join_memcpy, .input_snapshot = false};

}  // namespace gpo::backend
