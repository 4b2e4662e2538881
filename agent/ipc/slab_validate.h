// What a slab layout and a job descriptor must satisfy: one definition that
// the agent applies to what clients send (registration, every claimed job's
// descriptor copy) and that libgpuoffload applies to what it writes, so the
// library never sends what the agent would refuse. Header-only: the client
// library links none of the agent. tests/fuzz/fuzz_slab_job.cpp fuzzes it:
// whatever it accepts must be safe to run.
#pragma once
#include <zstd.h>

#include <cstdint>

#include "backend/op_table.h"
#include "ipc/slab_protocol.h"

namespace gpo::ipc {

struct SlabLayout {
  uint64_t size = 0;      // bytes of the slab
  uint32_t njobs = 0;     // entries of the job table at job_off
  uint64_t job_off = 0;
  uint64_t data_off = 0;  // buffers live in [data_off, size)
};

inline constexpr uint32_t kMaxSlabJobs = 65536;
static_assert(backend::kMaxOpId < GPO_PLAN_OPS, "the plan page has a slot per op id");

// [off, off + len) within [lo, hi), without overflow.
inline bool in_range(uint64_t off, uint64_t len, uint64_t lo, uint64_t hi) {
  return off >= lo && off <= hi && len <= hi - off;
}

// Do [a, a + an) and [b, b + bn) share a byte? (empty ranges share none)
inline bool overlaps(uint64_t a, uint64_t an, uint64_t b, uint64_t bn) {
  return an && bn && a < b + bn && b < a + an;
}

// Null when the layout is sound, else why not (a static string).
inline const char* check_layout(const SlabLayout& l) {
  if (l.njobs == 0 || l.njobs > kMaxSlabJobs) return "job count out of range";
  if (l.job_off < sizeof(gpo_slab_header) || l.job_off % alignof(gpo_job)) return "job table offset";
  if (!in_range(l.job_off, uint64_t(l.njobs) * sizeof(gpo_job), 0, l.size)) return "job table past the slab";
  if (l.data_off < l.job_off + uint64_t(l.njobs) * sizeof(gpo_job) || l.data_off > l.size)
    return "data area overlaps the job table or lies past the slab";
  return nullptr;
}

// What the agent accepts of compression levels (its memory, per worker).
struct JobLimits {
  int zstd_min_level = ZSTD_minCLevel();
  int zstd_max_level = ZSTD_maxCLevel();
  int zlib_min_level = -1;  // Z_DEFAULT_COMPRESSION
  int zlib_max_level = 9;
};

// The sizes of descriptor d as check_sizes() sees them. Its key is read only
// by ops that take one, and then always whole.
inline backend::JobSizes job_sizes(const gpo_job& d) {
  const uint32_t key = backend::is_op(d.op) ? backend::op_params(backend::OpId(d.op)).key_bytes : 0;
  return {d.op, d.in_len, d.out_cap, key, d.iv_len, d.aad_len,
          overlaps(d.out_off, d.out_cap, d.in_off, d.in_len) && d.out_off != d.in_off};
}

// Null when descriptor d (a private copy, never the shared slab) may run on a
// slab with layout l, rung with (op, len); else why not. Every range lies in
// the data area, the output overlaps neither the input nor the AAD (inputs
// are read while outputs are written), sizes and parameters fit the op
// (check_sizes), and compression levels lie in the limits.
inline const char* check_job(const SlabLayout& l, const gpo_job& d, uint32_t op, uint64_t len,
                             const JobLimits& lim) {
  if (d.op != op) return "op differs from the doorbell";
  if (d.in_len != len) return "length differs from the doorbell";
  if (!in_range(d.in_off, d.in_len, l.data_off, l.size)) return "input out of the data area";
  if (!in_range(d.out_off, d.out_cap, l.data_off, l.size)) return "output out of the data area";
  if (!in_range(d.aad_off, d.aad_len, l.data_off, l.size)) return "AAD out of the data area";
  if (d.iv_len > sizeof(d.iv)) return "IV length";
  if (overlaps(d.out_off, d.out_cap, d.in_off, d.in_len) || overlaps(d.out_off, d.out_cap, d.aad_off, d.aad_len))
    return "output overlaps an input";
  if (const char* why = backend::check_sizes(job_sizes(d))) return why;
  switch (d.op) {
    case GPO_OP_ZSTD_COMPRESS:
      return d.level >= lim.zstd_min_level && d.level <= lim.zstd_max_level ? nullptr : "zstd level out of range";
    case GPO_OP_ZLIB_COMPRESS:
      return d.level >= lim.zlib_min_level && d.level <= lim.zlib_max_level ? nullptr : "zlib level out of range";
    default: return nullptr;
  }
}

}  // namespace gpo::ipc
