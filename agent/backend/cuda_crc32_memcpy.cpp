#include "backend/cuda_crc32_memcpy.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <cstring>
#include <span>

#include "kernels/crc32/crc32.h"
#include "kernels/common/copy_plan.h"
#include "kernels/common/cuda_buffers.h"

namespace gpo::backend {
namespace {

using cuda::check;

using cuda::CopyPlan;
using cuda::DeviceLayout;
using cuda::align_up;
using cuda::is_pinned;
using cuda::piece_target;

}  // namespace

struct CudaCrc32Memcpy::Impl {
  std::vector<cudaStream_t> streams;
  std::vector<cudaEvent_t> events;
  cudaEvent_t ev_meta = nullptr;
  // Grow-only (a batch reuses the last one's); allocation errors throw cuda::Error.
  cuda::DevBuf<uint8_t> d_in, d_meta;
  cuda::PinnedBuf<uint8_t> h_meta, h_stage_in, h_stage_out;
  template <typename Buf>
  static uint8_t* grow(Buf& b, size_t n) {
    check(b.ensure(n));
    return b.data();
  }
  DeviceLayout lay;  // the inputs on the device (4096: gap one copy may carry along)

  void build_layout(const std::vector<Job*>& jobs) {
    lay.reset(jobs.size());
    for (size_t i = 0; i < jobs.size(); ++i) lay.add(i, jobs[i]->in, 4096, is_pinned);
  }
  cudaEvent_t event(size_t p) {
    while (events.size() <= p) {
      cudaEvent_t e;
      check(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
      events.push_back(e);
    }
    return events[p];
  }
  void sync_all() {
    for (auto s : streams) cudaStreamSynchronize(s);
    cudaGetLastError();
  }
  void copy_in(const CopyPlan& cl, uint8_t* din, cudaStream_t s) {  // unpinned ranges through pinned staging
    cl.copy_in(lay, h_stage_in.data(), [&](uint64_t off, const void* src, uint64_t len) {
      check(cudaMemcpyAsync(din + off, src, len, cudaMemcpyHostToDevice, s));
    });
  }

  void crc32(std::vector<Job*>& jobs, bool inject_fault) {
    namespace g = crc32::gpu;
    const uint32_t n = uint32_t(jobs.size());
    build_layout(jobs);
    if (lay.any_staged()) grow(h_stage_in, lay.total);
    uint8_t* din = grow(d_in, lay.total);
    std::vector<uint32_t> first(n + 1, 0);
    for (uint32_t i = 0; i < n; ++i) first[i + 1] = first[i] + uint32_t(g::tiles_of(jobs[i]->in.size()));
    const uint32_t ntiles = first[n];
    // Metadata: jobs, tile -> job map, accumulators, results.
    const size_t jobs_b = align_up(n * sizeof(g::DevJob), 256), map_b = align_up(ntiles * sizeof(uint32_t), 256),
                 acc_b = align_up(n * sizeof(uint32_t), 256);
    uint8_t* hm = grow(h_meta, jobs_b + map_b + acc_b);
    uint8_t* dm = grow(d_meta, jobs_b + map_b + 2 * acc_b);
    auto* hjobs = reinterpret_cast<g::DevJob*>(hm);
    auto* hmap = reinterpret_cast<uint32_t*>(hm + jobs_b);
    auto* hres = reinterpret_cast<uint32_t*>(hm + jobs_b + map_b);
    auto* djobs = reinterpret_cast<g::DevJob*>(dm);
    auto* dmap = reinterpret_cast<uint32_t*>(dm + jobs_b);
    auto* dacc = reinterpret_cast<uint32_t*>(dm + jobs_b + map_b);
    auto* dres = reinterpret_cast<uint32_t*>(dm + jobs_b + map_b + acc_b);
    for (uint32_t i = 0; i < n; ++i) {
      hjobs[i] = {reinterpret_cast<uint64_t>(din + lay.dev[i]), jobs[i]->in.size(), first[i], jobs[i]->crc};
      for (uint32_t t = first[i]; t < first[i + 1]; ++t) hmap[t] = i;
    }
    cudaStream_t s0 = streams[0];
    if (!ev_meta) check(cudaEventCreateWithFlags(&ev_meta, cudaEventDisableTiming));
    check(cudaMemcpyAsync(dm, hm, jobs_b + map_b, cudaMemcpyHostToDevice, s0));
    check(cudaMemsetAsync(dacc, 0, n * sizeof(uint32_t), s0));
    check(cudaEventRecord(ev_meta, s0));

    // Pieces of whole tiles, ~piece_target bytes each, round-robin on the streams.
    const uint64_t target = piece_target(lay.total);
    size_t pieces = 0;
    CopyPlan cl;
    uint32_t ta = 0;
    uint64_t bytes = 0;
    auto flush = [&](uint32_t tb) {
      if (tb <= ta) return;
      cudaStream_t s = streams[pieces % streams.size()];
      check(cudaStreamWaitEvent(s, ev_meta, 0));
      copy_in(cl, din, s);
      if (inject_fault && pieces == 0) check(cudaMemcpyAsync(nullptr, din, 1, cudaMemcpyDeviceToHost, s));
      check(g::enqueue_tiles(djobs, dmap, ta, tb, dacc, s));
      check(cudaEventRecord(event(pieces), s));
      ++pieces;
      cl.clear();
      ta = tb;
      bytes = 0;
    };
    for (uint32_t i = 0; i < n; ++i) {
      const uint64_t len = jobs[i]->in.size(), nt = first[i + 1] - first[i];
      const uint64_t pad = nt * g::kTileBytes - len;
      for (uint64_t t = 0; t < nt; ++t) {
        const uint64_t lo = t * g::kTileBytes > pad ? t * g::kTileBytes - pad : 0, hi = (t + 1) * g::kTileBytes - pad;
        cl.add(lay, i, lo, hi);
        bytes += hi - lo + 64;
        if (bytes >= target) flush(first[i] + uint32_t(t) + 1);
      }
    }
    flush(ntiles);
    for (size_t p = 0; p < pieces; ++p) check(cudaStreamWaitEvent(s0, events[p], 0));
    check(g::enqueue_finalize(djobs, n, dacc, dres, s0));
    check(cudaMemcpyAsync(hres, dres, n * sizeof(uint32_t), cudaMemcpyDeviceToHost, s0));
    check(cudaStreamSynchronize(s0));
    for (uint32_t i = 0; i < n; ++i) {
      Job& j = *jobs[i];
      for (int b = 0; b < 4; ++b) j.out[b] = uint8_t(hres[i] >> (8 * b));
      j.out_len = crc32::kCrcBytes;
      j.status = Status::ok;
    }
  }

  // host -> device -> host, in pieces over the streams (copies in both
  // directions overlap). Outputs that are not pinned come back through staging.
  void memcpy_(std::vector<Job*>& jobs, bool inject_fault) {
    const uint32_t n = uint32_t(jobs.size());
    build_layout(jobs);
    if (lay.any_staged()) grow(h_stage_in, lay.total);
    uint8_t* din = grow(d_in, lay.total);
    std::vector<bool> out_staged(n, false);
    bool any_out_staged = false;
    for (uint32_t i = 0; i < n; ++i)
      if (!jobs[i]->out.empty() && jobs[i]->out.data() != jobs[i]->in.data())
        any_out_staged |= out_staged[i] = !is_pinned(jobs[i]->out.data());
    if (any_out_staged) grow(h_stage_out, lay.total);
    uint8_t* hso = h_stage_out.data();

    struct Chunk {
      uint32_t job;
      uint64_t lo, hi;
    };
    std::vector<std::vector<Chunk>> pieces;
    const uint64_t target = piece_target(lay.total);
    std::vector<Chunk> cur;
    uint64_t bytes = 0;
    for (uint32_t i = 0; i < n; ++i) {
      const uint64_t len = jobs[i]->in.size();
      for (uint64_t lo = 0; lo < len;) {
        const uint64_t hi = std::min(len, lo + (target - bytes));  // bytes < target here
        cur.push_back({i, lo, hi});
        bytes += hi - lo + 64;
        lo = hi;
        if (bytes >= target) {
          pieces.push_back(std::move(cur));
          cur.clear();
          bytes = 0;
        }
      }
    }
    if (!cur.empty()) pieces.push_back(std::move(cur));

    CopyPlan cl;
    for (size_t p = 0; p < pieces.size(); ++p) {
      cudaStream_t s = streams[p % streams.size()];
      cl.clear();
      for (auto& c : pieces[p]) cl.add(lay, c.job, c.lo, c.hi);
      copy_in(cl, din, s);
      if (inject_fault && p == 0) check(cudaMemcpyAsync(nullptr, din, 1, cudaMemcpyDeviceToHost, s));
      // Device -> host, merging chunks adjacent on both sides (outputs packed like their inputs).
      const uint8_t* run_src = nullptr;
      uint8_t* run_dst = nullptr;
      uint64_t run_len = 0;
      auto send = [&] {
        if (run_len) check(cudaMemcpyAsync(run_dst, run_src, run_len, cudaMemcpyDeviceToHost, s));
        run_len = 0;
      };
      for (auto& c : pieces[p]) {
        Job& j = *jobs[c.job];
        if (j.out.data() == j.in.data()) continue;  // in place: the bytes are already there
        const uint8_t* src = din + lay.dev[c.job] + c.lo;
        uint8_t* dst = out_staged[c.job] ? hso + lay.dev[c.job] + c.lo : j.out.data() + c.lo;
        if (run_len && src == run_src + run_len && dst == run_dst + run_len) {
          run_len += c.hi - c.lo;
          continue;
        }
        send();
        run_src = src, run_dst = dst, run_len = c.hi - c.lo;
      }
      send();
      check(cudaEventRecord(event(p), s));
    }
    for (size_t p = 0; p < pieces.size(); ++p) {
      check(cudaEventSynchronize(events[p]));
      for (auto& c : pieces[p])
        if (out_staged[c.job])
          std::memcpy(jobs[c.job]->out.data() + c.lo, hso + lay.dev[c.job] + c.lo, c.hi - c.lo);
    }
    for (auto* j : jobs) {
      j->out_len = j->in.size();
      j->status = Status::ok;
    }
  }
};

CudaCrc32Memcpy::CudaCrc32Memcpy(void* const* streams, int nstreams) : impl_(std::make_unique<Impl>()) {
  for (int i = 0; i < nstreams; ++i) impl_->streams.push_back(static_cast<cudaStream_t>(streams[i]));
}

CudaCrc32Memcpy::~CudaCrc32Memcpy() {
  for (auto e : impl_->events) cudaEventDestroy(e);
  if (impl_->ev_meta) cudaEventDestroy(impl_->ev_meta);
}

int CudaCrc32Memcpy::run_crc32(std::vector<Job*>& jobs, bool inject_fault) {
  if (jobs.empty()) return 0;
  try {
    impl_->crc32(jobs, inject_fault);
    return 0;
  } catch (const cuda::Error& f) {
    impl_->sync_all();  // nothing of this batch still in flight when the CPU takes over
    return int(f.code);
  }
}

int CudaCrc32Memcpy::run_memcpy(std::vector<Job*>& jobs, bool inject_fault) {
  if (jobs.empty()) return 0;
  try {
    impl_->memcpy_(jobs, inject_fault);
    return 0;
  } catch (const cuda::Error& f) {
    impl_->sync_all();
    return int(f.code);
  }
}

}  // namespace gpo::backend
