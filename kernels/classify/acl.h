// The header ACL as a decision structure that maps to the GPU: first match
// over (src, dst, sport, dport, protocol) for up to ~100K rules without a
// per-packet scan of the rules.
//
// Address lookups start with a 16-bit hint table (top 16 bits -> the
// interval range to search), so a binary search covers one /16's edges.
//
// Decomposition (per-field elementary intervals + chunked bit vectors):
//  - A slot is one direction of a rule: every rule has a forward slot, a
//    bidirectional (`<>`) rule a reverse slot right after it (src/dst and
//    sport/dport swapped). Slots are in file order, so the first matching
//    slot belongs to the first matching rule.
//  - Per field (src and dst address, separately for IPv4 and IPv6 packets;
//    sport; dport; protocol class), every slot's set of matching values is a
//    union of ranges (CIDRs, port ranges, lists, negations folded in). All
//    range edges of all slots cut the field's domain into elementary
//    intervals: inside one, every slot either matches or not.
//  - Slots are cut into chunks of kChunkSlots in file order. Per (interval,
//    chunk) the field stores a class id; a class is a kChunkSlots-bit vector
//    (which slots of that chunk match this interval), deduplicated, with a
//    summary word (bit w set = vector word w is non-zero).
//  - Lookup: one search per field (binary search for addresses, a direct
//    table for ports and protocols) gives the interval; then chunk by chunk,
//    AND the 5 summaries, AND the 5 words they leave, and the set bits are
//    the matching slots in file order. The first chunk with a set bit holds
//    the first match, so most packets touch one chunk.
//  Memory is bounded by sum over chunks of (classes of that chunk) x 256 B,
//  plus intervals x chunks x 4 B of class ids: a chunk sees only its own
//  slots' edges as distinct classes, so the vectors never become
//  intervals x rules bits.
//
// build() runs on the host; lookup (View, for_each_match) is host+device code:
// the CPU tests check it against a naive reference and the GPU kernel calls
// the same function.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "kernels/classify/frame.h"
#include "kernels/common/host_device.h"
#include "kernels/classify/tables.h"

namespace gpo::classify::acl {

inline constexpr uint32_t kChunkSlots = 2048;
inline constexpr uint32_t kWordsPerChunk = kChunkSlots / 64;  // 32: the summary is one uint32
static_assert(kWordsPerChunk == 32);

enum Field : uint8_t { kSrc4, kDst4, kSrc6, kDst6, kSport, kDport, kProto, kNumFields };

struct U128 {
  uint64_t hi = 0, lo = 0;
};
GPO_HD GPO_FORCEINLINE bool operator<(const U128& a, const U128& b) { return a.hi < b.hi || (a.hi == b.hi && a.lo < b.lo); }
GPO_HD GPO_FORCEINLINE bool operator==(const U128& a, const U128& b) { return a.hi == b.hi && a.lo == b.lo; }

// Protocol classes of the kProto field, in ProtoBits order.
GPO_HD GPO_FORCEINLINE uint32_t proto_class(uint8_t ipproto) {
  switch (ipproto) {
    case 6: return 0;
    case 17: return 1;
    case 1: return 2;
    case 58: return 3;
    default: return 4;
  }
}

// One field, as pointers (host vectors or their device copies).
struct FieldView {
  uint32_t num_intervals = 0;
  const uint32_t* starts32 = nullptr;  // kSrc4/kDst4: sorted interval starts (starts[0] == 0)
  const U128* starts128 = nullptr;     // kSrc6/kDst6
  const uint32_t* hint16 = nullptr;    // address fields: 65537 entries, [k] = interval holding the
                                       // first value whose top 16 bits are k ([65536] = num_intervals - 1)
  const uint32_t* direct = nullptr;    // kSport/kDport: 65536 entries, kProto: 5; value -> interval
  const uint32_t* class_of = nullptr;  // [interval * num_chunks + chunk]
  const uint64_t* words = nullptr;     // [class * kWordsPerChunk + w]
  const uint32_t* summary = nullptr;   // [class]
};

struct View {
  uint32_t num_slots = 0;
  uint32_t num_chunks = 0;
  const uint32_t* slot_rule = nullptr;  // slot -> rule index (file order)
  FieldView f[kNumFields];
};

struct FieldIndex {
  uint32_t num_intervals = 0;
  uint32_t num_classes = 0;
  std::vector<uint32_t> starts32;
  std::vector<U128> starts128;
  std::vector<uint32_t> hint16;
  std::vector<uint32_t> direct;
  std::vector<uint32_t> class_of;
  std::vector<uint64_t> words;
  std::vector<uint32_t> summary;
  size_t bytes() const {
    return starts32.size() * 4 + starts128.size() * 16 + hint16.size() * 4 + direct.size() * 4 + class_of.size() * 4 + words.size() * 8 +
           summary.size() * 4;
  }
};

// The built structure (host memory). view() points into it.
struct Index {
  uint32_t num_slots = 0;
  uint32_t num_chunks = 0;
  std::vector<uint32_t> slot_rule;
  FieldIndex f[kNumFields];

  View view() const;
  size_t bytes() const;
};

Index build(const RuleTables& t);

// ---- lookup (host + device) ----------------------------------------------------

GPO_HD GPO_FORCEINLINE int ctz32(uint32_t x) {
#if defined(__CUDA_ARCH__)
  return __ffs(int(x)) - 1;
#else
  return __builtin_ctz(x);
#endif
}
GPO_HD GPO_FORCEINLINE int ctz64(uint64_t x) {
#if defined(__CUDA_ARCH__)
  return __ffsll((long long)x) - 1;
#else
  return __builtin_ctzll(x);
#endif
}

// Largest i in [lo, hi) with starts[i] <= x (starts[lo] <= x holds).
template <typename T>
GPO_HD GPO_FORCEINLINE uint32_t find_interval(const T* starts, uint32_t lo, uint32_t hi, const T& x) {
  while (hi - lo > 1) {
    uint32_t mid = (lo + hi) / 2;
    if (x < starts[mid]) hi = mid;
    else lo = mid;
  }
  return lo;
}

GPO_HD GPO_FORCEINLINE uint32_t be32(const uint8_t* p) {
  return uint32_t(p[0]) << 24 | uint32_t(p[1]) << 16 | uint32_t(p[2]) << 8 | p[3];
}
GPO_HD GPO_FORCEINLINE U128 be128(const uint8_t* p) {
  U128 v;
  for (int i = 0; i < 8; ++i) v.hi = v.hi << 8 | p[i];
  for (int i = 8; i < 16; ++i) v.lo = v.lo << 8 | p[i];
  return v;
}

// Calls on_slot(slot) for every slot whose header matches the parsed frame,
// in slot (file) order, until on_slot returns true. p must be ok().
template <typename OnSlot>
GPO_HD GPO_FORCEINLINE void for_each_match(const View& v, const ParsedFrame& p, OnSlot&& on_slot) {
  if (v.num_chunks == 0) return;
  const FieldView* fs[5];
  uint32_t iv[5];
  if (p.ip_version == 4) {
    fs[0] = &v.f[kSrc4];
    fs[1] = &v.f[kDst4];
    const uint32_t s = be32(p.src + 12), d = be32(p.dst + 12);
    iv[0] = find_interval(fs[0]->starts32, fs[0]->hint16[s >> 16], fs[0]->hint16[(s >> 16) + 1] + 1, s);
    iv[1] = find_interval(fs[1]->starts32, fs[1]->hint16[d >> 16], fs[1]->hint16[(d >> 16) + 1] + 1, d);
  } else {
    fs[0] = &v.f[kSrc6];
    fs[1] = &v.f[kDst6];
    const U128 s = be128(p.src), d = be128(p.dst);
    const uint32_t ks = uint32_t(s.hi >> 48), kd = uint32_t(d.hi >> 48);
    iv[0] = find_interval(fs[0]->starts128, fs[0]->hint16[ks], fs[0]->hint16[ks + 1] + 1, s);
    iv[1] = find_interval(fs[1]->starts128, fs[1]->hint16[kd], fs[1]->hint16[kd + 1] + 1, d);
  }
  fs[2] = &v.f[kSport];
  fs[3] = &v.f[kDport];
  fs[4] = &v.f[kProto];
  iv[2] = fs[2]->direct[p.sport];
  iv[3] = fs[3]->direct[p.dport];
  iv[4] = fs[4]->direct[proto_class(p.proto)];
  const uint32_t nc = v.num_chunks;
  for (uint32_t c = 0; c < nc; ++c) {
    uint32_t cls[5];
    uint32_t summ = ~0u;
    for (int i = 0; i < 5; ++i) {
      cls[i] = fs[i]->class_of[size_t(iv[i]) * nc + c];
      summ &= fs[i]->summary[cls[i]];
    }
    while (summ) {
      const int w = ctz32(summ);
      summ &= summ - 1;
      uint64_t word = ~0ull;
      for (int i = 0; i < 5; ++i) word &= fs[i]->words[size_t(cls[i]) * kWordsPerChunk + w];
      while (word) {
        const int b = ctz64(word);
        word &= word - 1;
        if (on_slot(c * kChunkSlots + uint32_t(w) * 64 + uint32_t(b))) return;
      }
    }
  }
}

}  // namespace gpo::classify::acl
