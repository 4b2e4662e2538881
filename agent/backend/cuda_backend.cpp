#include "backend/cuda_backend.h"

#include <cuda_runtime.h>
#include <pthread.h>
#include <time.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <stdexcept>

#include "kernels/aes/aes.h"
#include "kernels/common/copy_plan.h"
#include "kernels/common/cuda_buffers.h"
#include "backend/ops.h"
#include "backend/cuda_crc32_memcpy.h"
#include "backend/cuda_zstd.h"
#include "kernels/sha256/sha256.h"
#include "util/log.h"

namespace gpo::backend {
namespace {

using CudaError = cuda::Error;
using cuda::check;

using cuda::align_up;
using cuda::CopyPlan;
using cuda::piece_target;
using cuda::DeviceLayout;

uint64_t thread_cpu_ns() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return uint64_t(ts.tv_sec) * 1000000000u + uint64_t(ts.tv_nsec);
}

// GPO_BACKEND_TRACE=1: one line per batch with where its host time went.
struct Trace {
  bool on = std::getenv("GPO_BACKEND_TRACE") != nullptr;
  std::chrono::steady_clock::time_point t0 = std::chrono::steady_clock::now();
  std::string line;
  void mark(const char* what) {
    if (!on) return;
    auto now = std::chrono::steady_clock::now();
    line += fmt::format(" {} {:.0f}us", what, std::chrono::duration<double, std::micro>(now - t0).count());
    t0 = now;
  }
  void print(const char* op, size_t n) {
    if (on) fmt::print(stderr, "trace {} jobs={}:{}\n", op, n, line);
  }
};

}  // namespace

struct CudaBackend::Impl {
  static constexpr int kStreams = 4;
  cudaStream_t ctl = nullptr;
  cudaStream_t streams[kStreams] = {};
  cudaEvent_t ev_setup = nullptr;
  cudaEvent_t ev_done[kStreams] = {};
  // Grow-only: a batch reuses the last one's buffers.
  cuda::DevBuf<uint8_t> d_in, d_out, d_ws, d_aux;
  cuda::PinnedBuf<uint8_t> h_meta, h_aux, h_res, h_stage_in, h_stage_out;
  DeviceLayout in_m, out_m;
  CopyPlan cp;
  std::unique_ptr<CudaCrc32Memcpy> crc32_memcpy;  // crc32, memcpy (cuda_crc32_memcpy.cpp), made on first use
  std::unique_ptr<CudaZstd> zstd;    // zstd_compress at level <= 3 (cuda_zstd.cpp), made on first use

  Impl() {
    check(cudaStreamCreateWithFlags(&ctl, cudaStreamNonBlocking), "cudaStreamCreate");
    for (auto& s : streams) check(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), "cudaStreamCreate");
    check(cudaEventCreateWithFlags(&ev_setup, cudaEventDisableTiming), "cudaEventCreate");
    for (auto& e : ev_done) check(cudaEventCreateWithFlags(&e, cudaEventDisableTiming), "cudaEventCreate");
  }
  ~Impl() {
    for (auto& e : piece_events) cudaEventDestroy(e);
    for (auto& e : ev_done) cudaEventDestroy(e);
    cudaEventDestroy(ev_setup);
    for (auto& s : streams) cudaStreamDestroy(s);
    cudaStreamDestroy(ctl);
  }

  // Lays out inputs and outputs; stages unpinned inputs into pinned memory.
  void layout(const std::vector<std::span<const uint8_t>>& ins, const std::vector<std::span<const uint8_t>>& outs,
              bool outputs_may_alias) {
    in_m.build(ins, 4096, cuda::is_pinned);
    if (!outs.empty()) {
      out_m.build(outs, 0, cuda::is_pinned);
      // An output over its own input (in place) is written back only after the
      // whole batch succeeded, so a CPU retry still finds the input intact.
      if (outputs_may_alias)
        for (size_t i = 0; i < outs.size(); ++i) {
          if (outs[i].empty() || ins[i].empty()) continue;
          const auto* ob = outs[i].data();
          const auto* ib = ins[i].data();
          if (ob < ib + ins[i].size() && ib < ob + outs[i].size()) out_m.ranges[out_m.range_of[i]].staged = true;
        }
    }
    bool any_in_staged = false;
    for (auto& r : in_m.ranges) any_in_staged |= r.staged;
    if (any_in_staged) h_stage_in.get(in_m.total);
  }

  void copy_in(uint8_t* dev_base, cudaStream_t s) {  // unpinned ranges through pinned staging
    cp.copy_in(in_m, h_stage_in.data(), [&](uint64_t off, const void* src, uint64_t len) {
      check(cudaMemcpyAsync(dev_base + off, src, len, cudaMemcpyHostToDevice, s), "copy to device");
    });
  }
  void copy_out(const uint8_t* dev_base, cudaStream_t s) {
    for (auto& c : cp.copies) {
      const auto& r = out_m.ranges[c.range];
      void* dst = r.staged ? static_cast<void*>(h_stage_out.data() + c.lo)
                           : static_cast<void*>(const_cast<uint8_t*>(r.host) + (c.lo - r.dev));
      check(cudaMemcpyAsync(dst, dev_base + c.lo, c.hi - c.lo, cudaMemcpyDeviceToHost, s), "copy to host");
    }
  }
  void prepare_out_staging() {
    bool any = false;
    for (auto& r : out_m.ranges) any |= r.staged;
    if (any) h_stage_out.get(out_m.total);
  }
  void finish_out_staging() {
    for (auto& r : out_m.ranges)
      if (r.staged) std::memcpy(const_cast<uint8_t*>(r.host), h_stage_out.data() + r.dev, r.len);
  }

  // AES jobs in pieces: each piece copies its part of the job table, sets up
  // its new jobs, copies its data in, runs its segments, copies its data out
  // and finalizes the jobs it completes, on one of kStreams streams, so host
  // preparation, copies and kernels of successive pieces overlap. A job longer
  // than a piece is split by segments over several pieces; the piece with its
  // last segment waits for the others and finalizes it.
  void run_aes(std::vector<Job*>& jobs, bool inject_fault) {
    Trace tr;
    const uint32_t n = uint32_t(jobs.size());
    std::vector<std::span<const uint8_t>> ins(n), outs(n);
    std::vector<uint64_t> aux_off(n + 1, 0);
    for (uint32_t i = 0; i < n; ++i) {
      ins[i] = jobs[i]->in;
      outs[i] = jobs[i]->out;
      aux_off[i] = align_up(i ? aux_off[i - 1] + jobs[i - 1]->aad.size() : 0, 16);
    }
    const uint64_t aux_total = n ? aux_off[n - 1] + jobs[n - 1]->aad.size() : 0;
    layout(ins, outs, true);
    prepare_out_staging();
    uint8_t* din = d_in.get(in_m.total);
    uint8_t* dout = d_out.get(out_m.total);
    uint8_t* daux = d_aux.get(aux_total);
    uint8_t* haux = h_aux.get(aux_total);

    // Segment counts first: they size the workspace.
    using aes::gpu::DevJob;
    std::vector<uint32_t> first_seg(n + 1, 0);
    for (uint32_t i = 0; i < n; ++i) {
      DevJob d;
      d.mode = uint8_t(jobs[i]->op == OpId::aes256_ctr ? aes::Mode::ctr : aes::Mode::gcm);
      d.len = jobs[i]->in.size();
      d.aad_len = uint32_t(jobs[i]->aad.size());
      first_seg[i + 1] = first_seg[i] + aes::gpu::segments_of(d);
    }
    const uint32_t nsegs = first_seg[n];
    auto* dws = d_ws.get(aes::gpu::workspace_bytes(n, nsegs));
    const aes::gpu::Workspace ws = aes::gpu::carve(dws, n, nsegs);
    uint8_t* hmeta = h_meta.get(n * sizeof(DevJob) + nsegs * sizeof(uint32_t));
    auto* hjobs = reinterpret_cast<DevJob*>(hmeta);
    auto* hseg = reinterpret_cast<uint32_t*>(hmeta + n * sizeof(DevJob));
    const size_t res_off = size_t(ws.results - ws.tags);
    uint8_t* hres = h_res.get(res_off + n);
    tr.mark("layout");

    auto fill = [&](uint32_t i) {
      const Job& j = *jobs[i];
      DevJob& d = hjobs[i];
      d = DevJob{};
      d.mode = uint8_t(j.op == OpId::aes256_ctr ? aes::Mode::ctr : aes::Mode::gcm);
      d.dir = uint8_t(j.op == OpId::aes256_gcm_decrypt ? aes::Dir::decrypt : aes::Dir::encrypt);
      d.len = j.in.size();
      d.in = reinterpret_cast<uint64_t>(din + in_m.dev[i]);
      d.out = reinterpret_cast<uint64_t>(dout + out_m.dev[i]);
      std::memcpy(d.key, j.key.data(), aes::kKeyBytes);
      std::memcpy(d.iv, j.iv.data(), j.iv.size());
      std::memcpy(d.tag, j.tag.data(), aes::kTagBytes);
      if (!j.aad.empty()) std::memcpy(haux + aux_off[i], j.aad.data(), j.aad.size());
      d.aad = reinterpret_cast<uint64_t>(daux + aux_off[i]);
      d.aad_len = uint32_t(j.aad.size());
      d.first_seg = first_seg[i];
      d.nseg = first_seg[i + 1] - first_seg[i];
      for (uint32_t g = d.first_seg; g < d.first_seg + d.nseg; ++g) hseg[g] = i;
    };

    struct Piece {
      uint32_t fin_lo, fin_hi;  // jobs this piece finalizes
    };
    std::vector<Piece> pieces;
    // Enqueues one piece: new jobs [ja, jb) (table, AAD, setup), segments
    // [sa, sb), finalize jobs [fa, fb). wait_from: first earlier piece whose
    // segments the finalized jobs also need.
    auto enqueue_piece = [&](uint32_t ja, uint32_t jb, uint32_t sa, uint32_t sb, uint32_t fa, uint32_t fb,
                             size_t wait_from, cudaEvent_t wait_setup) {
      const size_t p = pieces.size();
      cudaStream_t s = streams[p % kStreams];
      if (jb > ja) {
        check(cudaMemcpyAsync(ws.jobs + ja, hjobs + ja, (jb - ja) * sizeof(DevJob), cudaMemcpyHostToDevice, s),
              "copy job table");
        const uint64_t alo = aux_off[ja], ahi = aux_off[jb - 1] + jobs[jb - 1]->aad.size();
        if (ahi > alo) check(cudaMemcpyAsync(daux + alo, haux + alo, ahi - alo, cudaMemcpyHostToDevice, s), "copy aad");
      }
      if (sb > sa)
        check(cudaMemcpyAsync(ws.seg_job + sa, hseg + sa, (sb - sa) * sizeof(uint32_t), cudaMemcpyHostToDevice, s),
              "copy segment map");
      if (wait_setup) check(cudaStreamWaitEvent(s, wait_setup, 0), "cudaStreamWaitEvent");
      check(aes::gpu::enqueue_setup(ws, ja, jb, sa, sb, s), "aes setup kernel");
      if (jb > ja) check(cudaEventRecord(ev_setup, s), "cudaEventRecord");
      cp.clear();
      for (uint32_t g = sa; g < sb;) {
        const DevJob& d = hjobs[hseg[g]];
        const uint32_t lo = g - d.first_seg, hi = std::min(sb - d.first_seg, d.nseg);
        const auto br = aes::gpu::segment_bytes(d, lo, hi);
        cp.add(in_m, hseg[g], br.lo, br.hi);
        g = d.first_seg + hi;
      }
      copy_in(din, s);
      if (inject_fault && p == 0)
        check(cudaMemcpyAsync(nullptr, din, 1, cudaMemcpyDeviceToHost, s), "copy to host (injected fault)");
      check(aes::gpu::enqueue_segments(ws, sa, sb, s), "aes segment kernel");
      cp.clear();
      for (uint32_t g = sa; g < sb;) {
        const DevJob& d = hjobs[hseg[g]];
        const uint32_t lo = g - d.first_seg, hi = std::min(sb - d.first_seg, d.nseg);
        const auto br = aes::gpu::segment_bytes(d, lo, hi);
        cp.add(out_m, hseg[g], br.lo, br.hi);
        g = d.first_seg + hi;
      }
      copy_out(dout, s);
      for (size_t q = wait_from; q < p; ++q) check(cudaStreamWaitEvent(s, piece_event(q), 0), "cudaStreamWaitEvent");
      check(aes::gpu::enqueue_finalize(ws, fa, fb, s), "aes finalize kernel");
      if (fb > fa) {
        check(cudaMemcpyAsync(hres + 16 * size_t(fa), ws.tags + 16 * size_t(fa), 16 * size_t(fb - fa),
                              cudaMemcpyDeviceToHost, s), "copy tags");
        check(cudaMemcpyAsync(hres + res_off + fa, ws.results + fa, fb - fa, cudaMemcpyDeviceToHost, s),
              "copy results");
      }
      check(cudaEventRecord(piece_event(p), s), "cudaEventRecord");
      pieces.push_back({fa, fb});
    };

    const uint64_t target = piece_target(in_m.total);
    const uint32_t big_segs = uint32_t(std::max<uint64_t>(1, target / (aes::gpu::kSegBlocks * 16)));
    uint32_t pend = 0;  // first job not yet enqueued
    uint64_t bytes = 0;
    for (uint32_t i = 0; i < n; ++i) {
      fill(i);
      const uint64_t len = jobs[i]->in.size();
      if (len > target) {
        // Small jobs before it go first, then the large job in slices of segments.
        if (i > pend) enqueue_piece(pend, i, first_seg[pend], first_seg[i], pend, i, pieces.size(), nullptr);
        const size_t first_piece = pieces.size();
        for (uint32_t g = first_seg[i]; g < first_seg[i + 1]; g += big_segs) {
          const uint32_t ge = std::min(first_seg[i + 1], g + big_segs);
          const bool first = g == first_seg[i], last = ge == first_seg[i + 1];
          enqueue_piece(first ? i : i, first ? i + 1 : i, g, ge, last ? i : i, last ? i + 1 : i,
                        last ? first_piece : pieces.size(), first ? nullptr : ev_setup);
        }
        pend = i + 1;
        bytes = 0;
        continue;
      }
      bytes += len + 64;
      if (bytes >= target) {
        enqueue_piece(pend, i + 1, first_seg[pend], first_seg[i + 1], pend, i + 1, pieces.size(), nullptr);
        pend = i + 1;
        bytes = 0;
      }
    }
    if (pend < n) enqueue_piece(pend, n, first_seg[pend], first_seg[n], pend, n, pieces.size(), nullptr);
    tr.mark("fill+enqueue");

    for (size_t p = 0; p < pieces.size(); ++p) {
      check(cudaEventSynchronize(piece_events[p]), "aes batch");
      for (uint32_t i = pieces[p].fin_lo; i < pieces[p].fin_hi; ++i) {
        Job& j = *jobs[i];
        if (j.op == OpId::aes256_gcm_encrypt) std::memcpy(j.tag.data(), hres + 16 * size_t(i), 16);
        j.status = hres[res_off + i] == uint8_t(aes::Result::ok) ? Status::ok : Status::auth_failed;
      }
    }
    tr.mark("gpu-wait+results");
    finish_out_staging();
    tr.print("aes", n);
  }

  // Events that mark the end of each piece, so results of early pieces are
  // read back while later pieces still run.
  std::vector<cudaEvent_t> piece_events;
  cudaEvent_t piece_event(size_t p) {
    while (piece_events.size() <= p) {
      cudaEvent_t e;
      check(cudaEventCreateWithFlags(&e, cudaEventDisableTiming), "cudaEventCreate");
      piece_events.push_back(e);
    }
    return piece_events[p];
  }

  // Messages are independent: each piece fills its own descriptors, copies them
  // with its data, hashes, and copies its digests back, so the host work of one
  // piece overlaps the copies and kernels of the others.
  void run_sha(std::vector<Job*>& jobs, uint64_t in_bytes, bool inject_fault) {
    Trace tr;
    const uint32_t n = uint32_t(jobs.size());
    // Laid out piece by piece (below), into a buffer sized for the worst case.
    // Each buffer adds at most 256 bytes of alignment and 256 of gap (max_gap below).
    const uint64_t bound = in_bytes + 512 * uint64_t(n) + 256;
    uint8_t* din = d_in.get(bound);
    in_m.reset(n);
    bool staging = false;
    const size_t msgs_bytes = align_up(n * sizeof(sha256::gpu::DevMsg), 256);
    uint8_t* dws = d_ws.get(msgs_bytes + size_t(n) * sha256::kDigestBytes);
    auto* hmsgs = reinterpret_cast<sha256::gpu::DevMsg*>(h_meta.get(n * sizeof(sha256::gpu::DevMsg)));
    auto* dmsgs = reinterpret_cast<sha256::gpu::DevMsg*>(dws);
    uint8_t* ddig = dws + msgs_bytes;
    uint8_t* hdig = h_res.get(size_t(n) * sha256::kDigestBytes);
    const uint64_t target = piece_target(in_bytes);
    std::vector<uint32_t> piece_end;
    uint32_t m = 0;
    while (m < n) {
      uint32_t end = m;
      uint64_t bytes = 0;
      while (end < n && (bytes < target || end == m)) bytes += jobs[end++]->in.size() + 64;
      const size_t p = piece_end.size();
      cudaStream_t s = streams[p % kStreams];
      for (uint32_t i = m; i < end; ++i) {
        const size_t ranges_before = in_m.ranges.size();
        in_m.add(i, jobs[i]->in, 256, cuda::is_pinned);
        if (in_m.ranges.size() != ranges_before && in_m.ranges.back().staged && !staging) {
          h_stage_in.get(bound);
          staging = true;
        }
        hmsgs[i] = {reinterpret_cast<uint64_t>(din + in_m.dev[i]), jobs[i]->in.size()};
      }
      check(cudaMemcpyAsync(dmsgs + m, hmsgs + m, (end - m) * sizeof(sha256::gpu::DevMsg), cudaMemcpyHostToDevice, s),
            "copy messages");
      cp.clear();
      for (uint32_t i = m; i < end; ++i) cp.add(in_m, i, 0, jobs[i]->in.size());
      copy_in(din, s);
      if (inject_fault && p == 0)
        check(cudaMemcpyAsync(nullptr, din, 1, cudaMemcpyDeviceToHost, s), "copy to host (injected fault)");
      check(sha256::gpu::enqueue_digests(dmsgs + m, end - m, ddig + size_t(m) * 32, s), "sha256 kernel");
      check(cudaMemcpyAsync(hdig + size_t(m) * 32, ddig + size_t(m) * 32, size_t(end - m) * 32, cudaMemcpyDeviceToHost, s),
            "copy digests");
      check(cudaEventRecord(piece_event(p), s), "cudaEventRecord");
      piece_end.push_back(end);
      m = end;
    }
    tr.mark("enqueue");
    m = 0;
    for (size_t p = 0; p < piece_end.size(); ++p) {
      check(cudaEventSynchronize(piece_events[p]), "sha256 batch");
      for (uint32_t i = m; i < piece_end[p]; ++i) {
        std::memcpy(jobs[i]->out.data(), hdig + size_t(i) * 32, 32);
        jobs[i]->status = Status::ok;
      }
      m = piece_end[p];
    }
    tr.mark("gpu-wait+results");
    tr.print("sha256", n);
  }
};

CudaBackend::CudaBackend(int device, std::shared_ptr<CpuBackend> cpu) : device_(device), cpu_(std::move(cpu)) {
  check(cudaSetDevice(device_), "cudaSetDevice");
  impl_ = std::make_unique<Impl>();
  lazy_ = std::make_unique<LazyPinner>(
      [this](void* p, size_t len) {
        cudaSetDevice(device_);
        return register_memory(p, len, Pin::now);
      },
      [this](void* p) {
        cudaSetDevice(device_);
        if (cudaHostUnregister(p) != cudaSuccess) cudaGetLastError();
      });
  worker_ = std::thread([this] {
    pthread_setname_np(pthread_self(), "gpo-cuda");
    worker();
  });
}

CudaBackend::~CudaBackend() {
  {
    std::lock_guard lk(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  worker_.join();
  lazy_.reset();
  cudaSetDevice(device_);
  impl_.reset();
}

std::string CudaBackend::name() const { return fmt::format("cuda:{}", device_); }

bool CudaBackend::register_memory(void* p, size_t len, Pin when) {
  if (when == Pin::on_first_gpu_use) {
    lazy_->add(p, len);
    return true;
  }
  cudaSetDevice(device_);
  // Portable: the pinning holds for every device, so each GPU's backend can DMA it.
  cudaError_t e = cudaHostRegister(p, len, cudaHostRegisterPortable);
  if (e == cudaErrorHostMemoryAlreadyRegistered) {
    cudaGetLastError();
    return true;
  }
  if (e != cudaSuccess) {
    cudaGetLastError();
    log::warn("{}: cannot pin {} bytes for DMA ({}); jobs there go through staging buffers", name(), len,
              cudaGetErrorString(e));
    return false;
  }
  return true;
}

void CudaBackend::unregister_memory(void* p) {
  if (LazyPinner::State s; lazy_->state(p, &s)) {
    lazy_->remove(p);
    return;
  }
  cudaSetDevice(device_);
  if (cudaHostUnregister(p) != cudaSuccess) cudaGetLastError();
}

void CudaBackend::submit(Batch& batch, Completion done) {
  {
    std::lock_guard lk(mu_);
    queue_.emplace_back(&batch, std::move(done));
  }
  cv_.notify_all();
}

Stats CudaBackend::stats() const {
  std::lock_guard lk(stats_mu_);
  return stats_;
}

void CudaBackend::worker() {
  cudaSetDevice(device_);
  for (;;) {
    std::vector<std::pair<Batch*, Completion>> group;
    {
      std::unique_lock lk(mu_);
      cv_.wait(lk, [&] { return stop_ || !queue_.empty(); });
      if (queue_.empty()) return;
      // Batches that queued up while the last run was on the GPU run as one:
      // a batch is a unit of grouping, and the GPU wants large ones.
      size_t jobs = 0;
      uint64_t bytes = 0;
      while (!queue_.empty()) {
        const Batch& b = *queue_.front().first;
        uint64_t bb = 0;
        for (const auto& j : b.jobs) bb += j.in.size();
        if (!group.empty() && (jobs + b.jobs.size() > kMaxGroupJobs || bytes + bb > kMaxGroupBytes)) break;
        jobs += b.jobs.size();
        bytes += bb;
        group.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
    }
    run_group(group);
    for (auto& [b, done] : group) done(*b);
  }
}

void CudaBackend::run_group(std::vector<std::pair<Batch*, Completion>>& group) {
  const uint64_t t0 = thread_cpu_ns();
  const auto wall0 = std::chrono::steady_clock::now();
  // Per family the jobs and the batch (index in group) each came from.
  struct Part {
    std::vector<Job*> jobs;
    std::vector<uint32_t> owner;
    void add(Job* j, uint32_t o) {
      jobs.push_back(j);
      owner.push_back(o);
    }
  };
  Part aes_p, sha_p, crc_p, copy_p, zstd_p, cpu_p;
  std::vector<uint64_t> bytes(group.size(), 0);
  std::vector<uint8_t> on_gpu(group.size(), 0), retried_in(group.size(), 0);
  for (uint32_t g = 0; g < group.size(); ++g)
    for (auto& j : group[g].first->jobs) {
      bytes[g] += j.in.size();
      j.ran = Ran::not_yet;
      const OpInfo* op = find_op(j.op);
      if (!op || validate_job(j) != Status::ok) {
        j.status = Status::invalid;
        continue;
      }
      if (broken_ || !op->gpu || (op->gpu_sequential && j.in.size() > kShaGpuMaxBytes))
        cpu_p.add(&j, g);
      else if (op->family == Family::aes)
        aes_p.add(&j, g);
      else if (op->family == Family::crc32)
        crc_p.add(&j, g);
      else if (op->family == Family::memcpy)
        copy_p.add(&j, g);
      else if (op->family == Family::zstd)
        (CudaZstd::gpu_takes(j) ? zstd_p : cpu_p).add(&j, g);  // higher levels: libzstd at that level
      else
        sha_p.add(&j, g);
    }
  // Slabs the GPU reads and writes get pinned in the background once it has
  // moved their size through them: until then their copies are staged.
  {
    std::vector<LazyPinner::Use> uses;
    for (Part* p : {&aes_p, &sha_p, &crc_p, &copy_p, &zstd_p})
      for (Job* j : p->jobs) {
        uses.push_back({j->in.data(), j->in.size()});
        uses.push_back({j->out.data(), j->out.size()});
      }
    lazy_->used(uses);  // one lock for the run, not two per job
  }
  // The jobs for the CPU run on its pool while the GPU works on the rest.
  std::mutex cpu_mu;
  std::condition_variable cpu_cv;
  bool cpu_done = false;
  uint64_t cpu_ns = 0;
  cpu_->start_jobs(cpu_p.jobs, [&](uint64_t ns) {
    std::lock_guard lk(cpu_mu);
    cpu_ns += ns;
    cpu_done = true;
    cpu_cv.notify_all();
  });
  const bool fault = inject_fault_.exchange(false);
  uint64_t errors = 0, retried = 0, retry_ns = 0;
  // The GPU time of each batch: each part's wall time (the parts run one
  // after another) shared by input bytes within the part, so that a batch of
  // a slow op grouped with fast ones is not reported at the group's average.
  std::vector<double> part_ns(group.size(), 0);
  uint64_t parts_ns = 0;
  auto gpu_part = [&](Part& p, auto fn) {
    if (p.jobs.empty()) return;
    const auto part0 = std::chrono::steady_clock::now();
    struct Timed {
      Part& p;
      std::vector<double>& per_batch;
      uint64_t& all;
      std::chrono::steady_clock::time_point t0;
      ~Timed() {
        const double ns = std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - t0).count();
        all += uint64_t(ns);
        uint64_t bytes = 0;
        for (auto* j : p.jobs) bytes += j->in.size();
        for (size_t i = 0; i < p.jobs.size(); ++i)
          per_batch[p.owner[i]] += bytes ? ns * double(p.jobs[i]->in.size()) / double(bytes) : ns / double(p.jobs.size());
      }
    } timed{p, part_ns, parts_ns, part0};
    for (uint32_t o : p.owner) on_gpu[o] = 1;
    auto retry = [&](const char* what) {
      errors++;
      retried += p.jobs.size();
      for (uint32_t o : p.owner) retried_in[o] = 1;
      log::warn("{}: {}; re-running {} jobs on the CPU", name(), what, p.jobs.size());
      for (auto* j : p.jobs) {
        j->status = Status::pending;
        j->ran = Ran::not_yet;
      }
      // run_jobs counts this thread's share too, which t0 already covers.
      const uint64_t before = thread_cpu_ns();
      const uint64_t ns = cpu_->run_jobs(p.jobs);
      retry_ns += ns - std::min(ns, thread_cpu_ns() - before);
    };
    try {
      fn(p.jobs);
      for (auto* j : p.jobs) {
        if (j->ran == Ran::not_yet) j->ran = Ran::gpu;  // a job fn sent to the CPU says so itself
        // No unauthenticated plaintext, as from the CPU reference.
        if (j->status == Status::auth_failed && !j->out.empty()) std::memset(j->out.data(), 0, j->out.size());
      }
    } catch (const CudaError& e) {
      // A sticky error (the context is unusable) sends all later work to the CPU.
      cudaGetLastError();
      if (cudaStreamSynchronize(impl_->ctl) != cudaSuccess || cudaGetLastError() != cudaSuccess) {
        broken_ = true;
        log::error("{}: the device is unusable after this error; serving on the CPU backend from now on", name());
      } else {
        for (auto* st : impl_->streams) cudaStreamSynchronize(st);  // nothing of this batch still in flight
      }
      retry(e.what());
    } catch (const std::exception& e) {
      retry(e.what());
    }
  };
  gpu_part(aes_p, [&](std::vector<Job*>& j) { impl_->run_aes(j, fault); });
  gpu_part(sha_p, [&](std::vector<Job*>& j) {
    uint64_t in_bytes = 0;
    for (auto* x : j) in_bytes += x->in.size();
    impl_->run_sha(j, in_bytes, fault);
  });
  auto crc32_memcpy = [&]() -> CudaCrc32Memcpy& {
    if (!impl_->crc32_memcpy)
      impl_->crc32_memcpy =
          std::make_unique<CudaCrc32Memcpy>(reinterpret_cast<void* const*>(impl_->streams), Impl::kStreams);
    return *impl_->crc32_memcpy;
  };
  gpu_part(crc_p, [&](std::vector<Job*>& j) { check(crc32_memcpy().run_crc32(j, fault), "crc32 batch"); });
  gpu_part(copy_p, [&](std::vector<Job*>& j) { check(crc32_memcpy().run_memcpy(j, fault), "memcpy batch"); });
  gpu_part(zstd_p, [&](std::vector<Job*>& j) {
    if (!impl_->zstd) impl_->zstd = std::make_unique<CudaZstd>();
    impl_->zstd->run(j, fault);
  });
  {
    std::unique_lock lk(cpu_mu);
    cpu_cv.wait(lk, [&] { return cpu_done; });
  }
  // Host CPU time: this thread's (preparation, staging, waiting on the GPU)
  // and the pool's, shared out by input bytes.
  const uint64_t host_ns = thread_cpu_ns() - t0 + cpu_ns + retry_ns;
  const uint64_t wall_ns = uint64_t(std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - wall0).count());
  uint64_t all_bytes = 0, all_jobs = 0;
  for (uint32_t g = 0; g < group.size(); ++g) all_bytes += bytes[g], all_jobs += group[g].first->jobs.size();
  for (uint32_t g = 0; g < group.size(); ++g) {
    Batch& b = *group[g].first;
    b.ran_on = retried_in[g] ? "cpu-retry" : on_gpu[g] ? name() : "cpu";
    const double share = all_bytes ? double(bytes[g]) / double(all_bytes) : 1.0 / double(group.size());
    b.cpu_ns += uint64_t(double(host_ns) * share);
    // The rest of the run (preparation, the CPU's jobs of the group) by bytes.
    b.run_ns = uint64_t(part_ns[g] + double(wall_ns - std::min(wall_ns, parts_ns)) * share);
  }
  std::lock_guard lk(stats_mu_);
  stats_.batches += group.size();
  stats_.jobs += all_jobs;
  stats_.bytes += all_bytes;
  stats_.gpu_errors += errors;
  stats_.cpu_retries += retried;
  stats_.cpu_ns += host_ns;
}

}  // namespace gpo::backend
