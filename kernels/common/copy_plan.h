// Host-to-device copy planning for a batch of host buffers (the CUDA
// backend's AES and SHA-256 batches, its crc32 and memcpy runner):
//
//  - DeviceLayout places the buffers in one device buffer so that buffers
//    close together in host memory (jobs packed in a client slab) stay
//    together there and one copy moves many of them. The host address modulo
//    256 is kept, so 16-byte aligned host data is aligned on the device.
//  - CopyPlan lists the copies of one piece of the batch: the byte intervals
//    of buffers it needs, merged into one copy per contiguous range; its
//    copy_in() stages what is not pinned and hands each copy to the caller.
//  - piece_target() is the size of a piece, so that the copies, kernels and
//    copies back of successive pieces overlap on the streams.
//
// Pure host code with no CUDA types: the caller says which memory is pinned
// (cuda::is_pinned in cuda_buffers.h); unpinned ranges are marked staged, to
// go through a pinned staging buffer at the same offsets.
#pragma once
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <vector>

namespace gpo::cuda {

constexpr uint64_t align_up(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }

// Bytes per piece for a batch of total bytes: 1/16 of it, within [1, 16] MiB.
inline uint64_t piece_target(uint64_t total) {
  return std::clamp<uint64_t>(total / 16, uint64_t{1} << 20, uint64_t{16} << 20);
}

class DeviceLayout {
 public:
  struct Range {
    const uint8_t* host;
    uint64_t dev;  // offset in the device buffer
    uint64_t len;
    bool staged;   // not pinned (or must not be written early): goes through pinned staging
  };
  // Whether host memory at p is pinned; asked once per range.
  using PinnedQuery = bool (*)(const void* p);
  static constexpr uint32_t kNone = ~0u;

  std::vector<Range> ranges;
  std::vector<uint32_t> range_of;  // per buffer; kNone for empty buffers
  std::vector<uint64_t> dev;       // per buffer: device offset
  uint64_t total = 0;              // device bytes the layout spans

  // An empty layout for n buffers.
  void reset(size_t n) {
    ranges.clear();
    range_of.assign(n, kNone);
    dev.assign(n, 0);
    total = 0;
    prev_end_ = nullptr;
  }
  // Places buffer i after the ones added before it. max_gap: bytes between
  // two buffers that one copy may carry along (harmless for inputs; 0 for
  // outputs, whose gaps must not be overwritten). A new range is staged when
  // pinned is given and says its memory is not pinned.
  void add(size_t i, std::span<const uint8_t> b, uint64_t max_gap, PinnedQuery pinned = nullptr) {
    if (b.empty()) return;
    if (prev_end_ && b.data() >= prev_end_ && uint64_t(b.data() - prev_end_) <= max_gap) {
      Range& r = ranges.back();
      dev[i] = r.dev + uint64_t(b.data() - r.host);
      r.len = uint64_t(b.data() + b.size() - r.host);
      total = r.dev + r.len;
    } else {
      const uint64_t d = align_up(total, 256) + (reinterpret_cast<uintptr_t>(b.data()) & 255);
      ranges.push_back({b.data(), d, b.size(), pinned && !pinned(b.data())});
      dev[i] = d;
      total = d + b.size();
    }
    range_of[i] = uint32_t(ranges.size() - 1);
    prev_end_ = b.data() + b.size();
  }
  // reset() and add() of every buffer, in order.
  void build(std::span<const std::span<const uint8_t>> bufs, uint64_t max_gap, PinnedQuery pinned = nullptr) {
    reset(bufs.size());
    for (size_t i = 0; i < bufs.size(); ++i) add(i, bufs[i], max_gap, pinned);
  }
  bool any_staged() const {
    return std::any_of(ranges.begin(), ranges.end(), [](const Range& r) { return r.staged; });
  }

 private:
  const uint8_t* prev_end_ = nullptr;
};

// The copies of one piece, merged per range: adding [lo, hi) of buffers in
// ascending device order extends the last copy while it stays in one range.
struct CopyPlan {
  struct Copy {
    uint32_t range;
    uint64_t lo, hi;  // device offsets
  };
  std::vector<Copy> copies;
  void clear() { copies.clear(); }
  // Bytes [lo, hi) of buffer buf (offsets within the buffer).
  void add(const DeviceLayout& m, size_t buf, uint64_t lo, uint64_t hi) {
    if (hi <= lo || m.range_of[buf] == DeviceLayout::kNone) return;
    const uint32_t r = m.range_of[buf];
    const uint64_t dlo = m.dev[buf] + lo, dhi = m.dev[buf] + hi;
    if (!copies.empty() && copies.back().range == r && dlo >= copies.back().lo) {
      copies.back().hi = std::max(copies.back().hi, dhi);
      return;
    }
    copies.push_back({r, dlo, dhi});
  }
  // The host side of copying this piece in: each copy's source, with a staged
  // range's bytes first copied into staging (pinned, laid out like the device
  // buffer) and sent from there. copy(dev_offset, src, len) enqueues one copy.
  template <typename Copy>
  void copy_in(const DeviceLayout& m, uint8_t* staging, Copy&& copy) const {
    for (const auto& c : copies) {
      const auto& r = m.ranges[c.range];
      const void* src = r.host + (c.lo - r.dev);
      if (r.staged) {
        std::memcpy(staging + c.lo, src, c.hi - c.lo);
        src = staging + c.lo;
      }
      copy(c.lo, src, c.hi - c.lo);
    }
  }
};

}  // namespace gpo::cuda
