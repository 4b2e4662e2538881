// Multi-pattern payload matcher on the GPU: the layout, the scan every thread
// runs (host and device), and the host batch API.
//
// Layout (built on the host from the same match::Matcher the CPU classifier
// uses, uploaded once, read-only on the device):
//  - Per automaton (exact, folded) one flat transition table of uint32 over
//    byte classes (alphabet compression: bytes in no pattern share class 0,
//    so a table row is num_classes entries, usually far fewer than 256). An entry holds the *row
//    offset* of the next state (state * num_classes: no multiply in the loop)
//    with bit 31 set when that state ends a pattern, so the hot loop is one
//    dependent load per byte and touches the output lists only on a hit.
//  - One 256-entry table maps a byte to both automata's classes at once
//    (exact class | folded class << 16): one load per byte for both.
//  - States are in breadth-first order (match_cpu.cpp), so the shallow
//    states, where a scan of ordinary traffic spends nearly all its steps, are
//    the first rows, which stay in L1/L2. The batch kernel copies the class
//    table into shared memory; it can also copy the first rows there
//    (AutomatonView::hot, set_hot_bytes), which measured slower on H100
//    (occupancy and L1 lost), so that is off by default. Device functions called from another
//    kernel may leave `hot` at its default (all rows from global memory).
//  - Outputs: CSR lists (out_first per state, out_ids), as on the CPU.
// Why a full DFA (not PFAC, not failure links): one load per byte and no
// divergence between threads of a warp walking different payloads; the
// exact and folded automata are walked in lockstep, two independent loads per
// byte, which hides part of the memory latency.
//
// Parallelism: a thread scans one payload, or one chunk of it: scan_span()
// reports occurrences ending in (begin, end] and starts reading
// max_pattern_len - 1 bytes before `begin`, so chunks of one payload together
// report exactly what one whole scan reports (long payloads in small batches
// keep the GPU busy).
//
// Results: a bitset per payload of bitset_words() uint32 words (or, from
// DeviceMatcher::scan_lists, compact id lists made from them on the GPU), bit `id` set
// when pattern `id` occurs in the first `depth` bytes (a pattern that
// straddles the depth does not match, as on the CPU). That is what the
// classifier's first-match walk needs (CpuClassifier's seen_ marks): for each
// header-matching rule, test its ContentRef pattern ids with has_hit().
// Callers that want something else pass their own on_hit(pattern_id).
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "kernels/common/host_device.h"
#include "kernels/match/match.h"


namespace gpo::match::gpu {

inline constexpr uint32_t kHitFlag = 0x8000'0000u;  // entry bit: the next state ends a pattern

// One automaton in the GPU layout. Pointers are device addresses in a
// DeviceMatcher's view, host addresses in a MatcherImage's view.
struct AutomatonView {
  const uint32_t* next = nullptr;       // num_states * num_classes entries: row offset | kHitFlag
  const uint32_t* out_first = nullptr;  // num_states + 1, CSR offsets into out_ids (by state index)
  const uint32_t* out_ids = nullptr;    // pattern ids
  const uint32_t* hot = nullptr;        // copy of next[0, hot_entries) in faster memory (shared), or null
  uint32_t hot_entries = 0;
  uint32_t num_classes = 1;
  uint32_t num_states = 1;
  uint32_t active = 0;                  // 0: no pattern of this kind; the scan skips it
};

struct MatcherView {
  AutomatonView exact;
  AutomatonView folded;
  const uint32_t* classes = nullptr;  // 256 entries: exact class | folded class << 16
  uint32_t num_patterns = 0;
  uint32_t max_pattern_len = 0;       // overlap for split scans: max_pattern_len - 1
  GPO_HD GPO_FORCEINLINE uint32_t bitset_words() const { return (num_patterns + 31) / 32; }
};

// Host copy of the GPU layout (what DeviceMatcher uploads). view() points into
// these vectors, so the same scan code runs on the CPU (unit tests).
struct MatcherImage {
  struct Automaton {
    std::vector<uint32_t> next, out_first, out_ids;
    uint32_t num_classes = 1, num_states = 1;
    bool active = false;
  };
  Automaton exact, folded;
  std::vector<uint32_t> classes;  // 256
  uint32_t num_patterns = 0;
  uint32_t max_pattern_len = 0;

  MatcherView view() const;
  size_t bytes() const;
};

// Throws std::length_error when an automaton has more than 2^31 table entries.
MatcherImage build_image(const Matcher& m);

// ---- the scan (host and device) -------------------------------------------

namespace detail {
GPO_HD GPO_FORCEINLINE uint32_t load_entry(const AutomatonView& a, uint32_t off) {
#if defined(__CUDA_ARCH__)
  return off < a.hot_entries ? a.hot[off] : __ldg(a.next + off);
#else
  return a.next[off];
#endif
}
GPO_HD GPO_FORCEINLINE uint32_t load_word(const uint8_t* p) {  // p 4-byte aligned
#if defined(__CUDA_ARCH__)
  return __ldg(reinterpret_cast<const uint32_t*>(p));
#else
  uint32_t w;
  std::memcpy(&w, p, 4);
  return w;
#endif
}
template <typename OnHit>
GPO_HD GPO_FORCEINLINE void report(const AutomatonView& a, uint32_t row, OnHit& on_hit) {
  const uint32_t s = row / a.num_classes;
  for (uint32_t o = a.out_first[s], e = a.out_first[s + 1]; o < e; ++o) on_hit(a.out_ids[o]);
}
}  // namespace detail

// Reports on_hit(pattern_id) for every occurrence in p[0, n) whose last byte
// is at an index in [begin, end) (n: payload bytes already cut to the
// inspection depth). Reads from max(0, begin - (max_pattern_len - 1)).
// An id may be reported more than once.
template <typename OnHit>
GPO_HD GPO_FORCEINLINE void scan_span(const MatcherView& m, const uint8_t* p, uint32_t n, uint32_t begin, uint32_t end,
                            OnHit&& on_hit) {
  if (end > n) end = n;
  if (begin >= end) return;
  const uint32_t overlap = m.max_pattern_len > 0 ? m.max_pattern_len - 1 : 0;
  uint32_t i = begin > overlap ? begin - overlap : 0;
  const bool ex = m.exact.active != 0, fo = m.folded.active != 0;
  uint32_t se = 0, sf = 0;  // row offsets
  auto step = [&](uint32_t b, uint32_t pos) {
    const uint32_t c = m.classes[b];
    if (ex) {
      se = detail::load_entry(m.exact, se + (c & 0xffffu));
      if (se & kHitFlag) {
        se &= ~kHitFlag;
        if (pos >= begin) detail::report(m.exact, se, on_hit);
      }
    }
    if (fo) {
      sf = detail::load_entry(m.folded, sf + (c >> 16));
      if (sf & kHitFlag) {
        sf &= ~kHitFlag;
        if (pos >= begin) detail::report(m.folded, sf, on_hit);
      }
    }
  };
  if (!ex && !fo) return;
  // Head bytes up to 4-byte alignment, then whole words, then the tail.
  while (i < end && (reinterpret_cast<uintptr_t>(p + i) & 3u) != 0) {
    step(p[i], i);
    ++i;
  }
  for (; i + 4 <= end; i += 4) {
    const uint32_t w = detail::load_word(p + i);  // little-endian: byte i is the low byte
    step(w & 0xffu, i);
    step((w >> 8) & 0xffu, i + 1);
    step((w >> 16) & 0xffu, i + 2);
    step(w >> 24, i + 3);
  }
  for (; i < end; ++i) step(p[i], i);
}

// Every occurrence in the first min(len, depth) bytes.
template <typename OnHit>
GPO_HD GPO_FORCEINLINE void scan_payload(const MatcherView& m, const uint8_t* p, uint32_t len, uint32_t depth, OnHit&& on_hit) {
  const uint32_t n = len < depth ? len : depth;
  scan_span(m, p, n, 0, n, on_hit);
}

// Bitset helpers. set_hit is an atomicOr on the device (chunks of one payload
// may run in different threads); bits must be zeroed before the scan.
GPO_HD GPO_FORCEINLINE void set_hit(uint32_t* bits, uint32_t id) {
#if defined(__CUDA_ARCH__)
  const uint32_t mask = 1u << (id & 31);
  if ((bits[id >> 5] & mask) == 0) atomicOr(bits + (id >> 5), mask);
#else
  bits[id >> 5] |= 1u << (id & 31);
#endif
}
GPO_HD GPO_FORCEINLINE bool has_hit(const uint32_t* bits, uint32_t id) { return (bits[id >> 5] >> (id & 31)) & 1u; }

// scan_payload into a zeroed bitset of m.bitset_words() words.
GPO_HD GPO_FORCEINLINE void scan_to_bits(const MatcherView& m, const uint8_t* p, uint32_t len, uint32_t depth, uint32_t* bits) {
  scan_payload(m, p, len, depth, [bits](uint32_t id) { set_hit(bits, id); });
}

// ---- host batch API (defined in match_gpu.cu; needs a CUDA build) ---------

// A payload inside one contiguous buffer.
struct PayloadRef {
  uint32_t offset = 0;
  uint32_t len = 0;
};

// True when a CUDA device is usable; otherwise *why says why (no driver, no device, ...).
bool gpu_usable(std::string* why);

struct ScanTiming {
  double kernel_ms = 0;  // the scan kernel alone (events around it)
  double total_ms = 0;   // host payloads in .. bitsets back on the host (wall clock)
};

// The compiled matcher in device memory, uploaded once; scans batches.
// Not thread-safe (one stream, scratch buffers grow with the batch): one
// instance per thread, or serialize.
class DeviceMatcher {
 public:
  explicit DeviceMatcher(const Matcher& m, int device = 0);  // throws std::runtime_error on CUDA errors
  ~DeviceMatcher();
  DeviceMatcher(const DeviceMatcher&) = delete;
  DeviceMatcher& operator=(const DeviceMatcher&) = delete;

  // Device addresses: pass by value to your own kernels, call scan_* there.
  const MatcherView& view() const;
  uint32_t bitset_words() const { return view().bitset_words(); }
  size_t device_bytes() const;

  // Host batch: payloads (slices of `data`) in, bitsets out:
  // bits[i * bitset_words() + w]. Synchronous. data may be pinned_input().
  void scan(std::span<const uint8_t> data, std::span<const PayloadRef> payloads, uint32_t depth,
            std::vector<uint32_t>& bits, ScanTiming* timing = nullptr);

  // The same, with compact hit lists out instead of bitsets (the GPU turns
  // the bitsets into lists, so few bytes cross PCIe even with 10K patterns):
  // payload i's pattern ids, increasing, are ids[offsets[i] .. offsets[i + 1]).
  void scan_lists(std::span<const uint8_t> data, std::span<const PayloadRef> payloads, uint32_t depth,
                  std::vector<uint32_t>& offsets, std::vector<uint32_t>& ids, ScanTiming* timing = nullptr);

  // A pinned host buffer of at least `bytes` (valid until the next call):
  // payloads written there skip one host copy in scan().
  uint8_t* pinned_input(size_t bytes);

  // Device batch (kernel only): d_data, d_payloads and d_bits are device
  // memory; d_bits (n * bitset_words() words) is zeroed here. max_len: the
  // longest payload (sizes the chunks; a longer payload is still scanned
  // whole, its last chunk just longer). Returns cudaError_t as int (0 = success).
  int enqueue_scan(const uint8_t* d_data, const PayloadRef* d_payloads, uint32_t n, uint32_t max_len,
                   uint32_t depth, uint32_t* d_bits, void* stream);

  // Tuning: shared-memory bytes for the hot rows of the batch kernel (0 = off, the default: measured
  // on H100, the rows in shared memory cost occupancy and L1 and made the kernel 1.2-3x slower).
  void set_hot_bytes(uint32_t bytes);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace gpo::match::gpu
