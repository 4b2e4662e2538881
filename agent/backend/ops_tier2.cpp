// The seed's tier-2 ops and zlib: compress2() (CPU only), CRC-32 (a GPU kernel
// that splits one buffer, kernels/crc32) and memcpy (CPU memcpy; on a GPU it is
// two PCIe crossings, kept so the planner and `bench tier2` show what it costs).
#include <cstring>

#include "backend/ops.h"
#include "kernels/crc32/crc32.h"
#include "kernels/zlib/zlib.h"

namespace gpo::backend {
namespace {

bool no_crypto_params(const Job& j) { return j.key.empty() && j.iv.empty() && j.aad.empty(); }

Status validate_zlib(const Job& j) { return no_crypto_params(j) ? Status::ok : Status::invalid; }

Status cpu_zlib(Job& j) {
  size_t n = 0;
  const auto r = deflate::cpu_compress(j.in, j.out, j.level, &n);
  j.out_len = n;
  return r == deflate::Result::ok ? Status::ok : Status::invalid;
}

Status validate_crc32(const Job& j) {
  return no_crypto_params(j) && j.out.size() == crc32::kCrcBytes ? Status::ok : Status::invalid;
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

Status validate_memcpy(const Job& j) {
  if (!no_crypto_params(j) || j.out.size() != j.in.size()) return Status::invalid;
  // memcpy semantics: the same buffer, or two that do not overlap.
  const uint8_t *i = j.in.data(), *o = j.out.data();
  const bool overlap = !j.in.empty() && i != o && o < i + j.in.size() && i < o + j.out.size();
  return overlap ? Status::invalid : Status::ok;
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

void register_tier2_ops() {
  // deflate is a sequential match search: no GPU kernel (gpu = false, the CUDA backend hands it to its CPU).
  register_op({OpId::zlib_compress, "zlib-compress", Family::deflate, false, true, validate_zlib, cpu_zlib});
  // One buffer splits into segments joined by the GF(2) shift operator: parallel within a job.
  // The CPU backend splits long CRC-32 and memcpy jobs across its threads the same way.
  register_op({OpId::crc32, "crc32", Family::crc32, true, false, validate_crc32, cpu_crc32, 64, cpu_crc32_range,
               join_crc32});
  register_op({OpId::memcpy, "memcpy", Family::memcpy, true, false, validate_memcpy, cpu_memcpy, 4096,
               cpu_memcpy_range, join_memcpy});
}

}  // namespace gpo::backend
