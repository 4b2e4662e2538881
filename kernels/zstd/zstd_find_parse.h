// The match finder's tuning knobs and the pieces the CUDA kernel and its CPU
// twin (cpu_find) share, so both produce the same parse (the GPU test checks
// that they agree sequence for sequence).
//
// The parse, per block: the block is cut into up to kMaxSegments segments
// (segments_of), each parsed on its own by one warp with its own small hash
// table (kHashLog buckets, the latest position per bucket as 16 bits relative
// to the segment's window base), so no step waits for another warp:
//  1. prefill: the table gets every kPrefillStride-th position of the up to
//     kLookback bytes before the segment (same input; they may lie in the
//     previous block), in order, the latest per bucket winning;
//  2. a warp step at cursor looks at the n = min(kWindow, segment end -
//     cursor) positions cursor + i (lane i): each hashes its kHashBytes bytes;
//     its candidate is the latest earlier position of the step with the same
//     hash, else the table's; its hash match (with the candidate) and its
//     matches at the three last offsets (reps) are measured up to kCapA and
//     choose() picks one;
//  3. the first position of the step with a match wins, unless the next one
//     has a longer match (prefer_next: one lazy step); a match of kCapA is
//     extended to its end, then backwards over pending literals; matches end
//     inside their segment. The cursor moves past the match (or by n);
//  4. the step's positions below the new cursor enter the table in order
//     (the latest per bucket wins); positions a match jumped over beyond the
//     step are not entered;
//  5. the segments' sequences are joined, each segment's trailing literals
//     leading the next segment's first sequence.
// No match starts in the last kTail bytes of a block.
#pragma once
#include <cstdint>

#include "kernels/common/host_device.h"
#include "kernels/zstd/zstd_find.h"


namespace gpo::zstd::gpu::find {

inline constexpr int kHashLog = 11;        // 2K buckets of 16 bits per warp (4 KiB of shared memory)
inline constexpr uint32_t kHashBytes = 5;  // bytes hashed per position (5 beat 6 on binaries and libraries)
inline constexpr uint32_t kLookback = 47 * 1024;  // bytes before its segment a warp's table starts with
inline constexpr uint32_t kPrefillStride = 8;     // every 8th position of the lookback enters the table
inline constexpr uint32_t kWindow = 32;    // positions per warp step (a warp)
inline constexpr uint32_t kMatchesPerStep = 32;  // matches a step may take, one after the other
inline constexpr uint32_t kCapA = 32;      // match length measured per position in a step
inline constexpr uint32_t kHashMin = 5;    // shortest hash match taken
inline constexpr uint32_t kRepMin = 4;     // shortest rep match taken
inline constexpr uint32_t kTail = 8;       // no match starts in the last kTail bytes of a block
inline constexpr uint32_t kMaxSegments = 8;      // a block's parse runs in up to 8 independent segments
inline constexpr uint32_t kMinSegment = 4096;    // of at least this many bytes

// The segments of a block of len bytes: count of `bytes` each (the last one
// shorter), bytes a multiple of 4 so segment k's sequences start at slot
// k * bytes / 4 of the block (see zstd_find_gpu.cu).
struct Segments {
  uint32_t bytes, count;
};
GPO_HD GPO_FORCEINLINE Segments segments_of(uint32_t len) {
  uint32_t bytes = ((len + kMaxSegments - 1) / kMaxSegments + 3) & ~3u;
  if (bytes < kMinSegment) bytes = kMinSegment;
  return {bytes, (len + bytes - 1) / bytes};
}
static_assert(kRepMin >= kMinMatch && kHashMin >= kMinMatch);
// Table entries are position - window base + 1 (0 = empty).
using TableEntry = uint16_t;
static_assert(uint64_t(kLookback) + kBlockBytes / kMaxSegments <= TableEntry(~TableEntry(0)) && kLookback <= kHistoryBytes);
static_assert(kCapA % 8 == 0 && kCapA >= 8);

// Little-endian 8 bytes -> bucket (zstd's prime multiply of the low kHashBytes bytes).
GPO_HD GPO_FORCEINLINE uint32_t hash_of(uint64_t v) {
  constexpr uint64_t kPrime = 227718039650203ULL;
  return uint32_t(((v << (64 - 8 * kHashBytes)) * kPrime) >> (64 - kHashLog));
}

// The parse's choice at one position, from its hash match and its matches at
// the three last distinct offsets (reps[0] the latest; 0 = none yet): rep 0
// unless the hash match is longer by more than one, then a longer rep 1 or 2.
struct Choice {
  uint32_t len;  // 0: no match
  uint32_t dist;
};
GPO_HD GPO_FORCEINLINE Choice choose(uint32_t hash_len, uint32_t hash_dist, const uint32_t* rep_len, const uint32_t* reps) {
  Choice c{0, 0};
  if (rep_len[0] >= kRepMin && rep_len[0] + 1 >= hash_len)
    c = {rep_len[0], reps[0]};
  else if (hash_len >= kHashMin)
    c = {hash_len, hash_dist};
  if (rep_len[1] >= kRepMin && rep_len[1] > c.len) c = {rep_len[1], reps[1]};
  if (rep_len[2] >= kRepMin && rep_len[2] > c.len) c = {rep_len[2], reps[2]};
  return c;
}
// After a match at distance d (zstd's repcode history, without its ll0 special case).
GPO_HD GPO_FORCEINLINE void update_reps(uint32_t* reps, uint32_t d) {
  if (d == reps[0]) return;
  if (d != reps[1]) reps[2] = reps[1];
  reps[1] = reps[0];
  reps[0] = d;
}
// Lazy step: the next position's match replaces this one's when longer by more than one.
GPO_HD GPO_FORCEINLINE bool prefer_next(Choice here, Choice next) { return next.len > here.len + 1; }

}  // namespace gpo::zstd::gpu::find
