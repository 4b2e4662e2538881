#include "backend/cuda_backend.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <cstring>
#include <stdexcept>

#include "aes/aes.h"
#include "backend/ops.h"
#include "sha256/sha256.h"
#include "util/log.h"

namespace gpo::backend {
namespace {

struct CudaError : std::runtime_error {
  cudaError_t code;
  CudaError(cudaError_t c, const char* what)
      : std::runtime_error(fmt::format("{} ({}: {})", what, cudaGetErrorName(c), cudaGetErrorString(c))), code(c) {}
};

void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw CudaError(e, what);
}
void check(int e, const char* what) { check(static_cast<cudaError_t>(e), what); }

uint64_t align_up(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }

// Grow-only device and pinned host buffers: a batch reuses the last one's.
struct DevBuf {
  void* p = nullptr;
  size_t cap = 0;
  uint8_t* get(size_t n) {
    if (n > cap) {
      if (p) cudaFree(p);
      p = nullptr;
      cap = 0;
      check(cudaMalloc(&p, std::max<size_t>(n, 1)), "cudaMalloc");
      cap = n;
    }
    return static_cast<uint8_t*>(p);
  }
  ~DevBuf() {
    if (p) cudaFree(p);
  }
};
struct HostBuf {
  void* p = nullptr;
  size_t cap = 0;
  uint8_t* get(size_t n) {
    if (n > cap) {
      if (p) cudaFreeHost(p);
      p = nullptr;
      cap = 0;
      check(cudaMallocHost(&p, std::max<size_t>(n, 1)), "cudaMallocHost");
      cap = n;
    }
    return static_cast<uint8_t*>(p);
  }
  ~HostBuf() {
    if (p) cudaFreeHost(p);
  }
};

// Host buffers laid out on the device so that buffers adjacent in host memory
// (jobs packed in a client slab) stay adjacent: one copy moves many jobs.
struct Mirror {
  struct Range {
    const uint8_t* host;
    uint64_t dev;  // offset in the device buffer
    uint64_t len;
    bool staged;   // not pinned (or must not be written early): goes through pinned staging
  };
  std::vector<Range> ranges;
  std::vector<uint32_t> range_of;  // per buffer; kNone for empty buffers
  std::vector<uint64_t> dev;       // per buffer: device offset
  uint64_t total = 0;
  static constexpr uint32_t kNone = ~0u;

  // max_gap: bytes between two buffers that one copy may carry along
  // (harmless for inputs; 0 for outputs, whose gaps must not be overwritten).
  void build(const std::vector<std::span<const uint8_t>>& bufs, uint64_t max_gap) {
    ranges.clear();
    range_of.assign(bufs.size(), kNone);
    dev.assign(bufs.size(), 0);
    total = 0;
    const uint8_t* prev_end = nullptr;
    for (size_t i = 0; i < bufs.size(); ++i) {
      const auto& b = bufs[i];
      if (b.empty()) continue;
      if (prev_end && b.data() >= prev_end && uint64_t(b.data() - prev_end) <= max_gap) {
        Range& r = ranges.back();
        dev[i] = r.dev + uint64_t(b.data() - r.host);
        r.len = uint64_t(b.data() + b.size() - r.host);
        total = r.dev + r.len;
      } else {
        // Keep the host address modulo 256 so 16-byte aligned host data is aligned on the device.
        const uint64_t d = align_up(total, 256) + (reinterpret_cast<uintptr_t>(b.data()) & 255);
        ranges.push_back({b.data(), d, b.size(), false});
        dev[i] = d;
        total = d + b.size();
      }
      range_of[i] = uint32_t(ranges.size() - 1);
      prev_end = b.data() + b.size();
    }
  }
  void mark_unpinned() {
    for (auto& r : ranges) {
      cudaPointerAttributes a{};
      if (cudaPointerGetAttributes(&a, r.host) != cudaSuccess || a.type != cudaMemoryTypeHost) r.staged = true;
      cudaGetLastError();  // a failed query is not an error here
    }
  }
};

// Copies per piece: runs of (buffer, byte interval) merged within one range.
struct CopyPlan {
  struct Copy {
    uint32_t range;
    uint64_t lo, hi;  // device offsets
  };
  std::vector<Copy> copies;
  void clear() { copies.clear(); }
  void add(const Mirror& m, size_t buf, uint64_t lo, uint64_t hi) {
    if (hi <= lo || m.range_of[buf] == Mirror::kNone) return;
    const uint32_t r = m.range_of[buf];
    const uint64_t dlo = m.dev[buf] + lo, dhi = m.dev[buf] + hi;
    if (!copies.empty() && copies.back().range == r && dlo >= copies.back().lo) {
      copies.back().hi = std::max(copies.back().hi, dhi);
      return;
    }
    copies.push_back({r, dlo, dhi});
  }
};

}  // namespace

struct CudaBackend::Impl {
  static constexpr int kStreams = 4;
  cudaStream_t ctl = nullptr;
  cudaStream_t streams[kStreams] = {};
  cudaEvent_t ev_setup = nullptr;
  cudaEvent_t ev_done[kStreams] = {};
  DevBuf d_in, d_out, d_ws, d_aux;
  HostBuf h_meta, h_aux, h_res, h_stage_in, h_stage_out;
  Mirror in_m, out_m;
  CopyPlan cp;

  Impl() {
    check(cudaStreamCreateWithFlags(&ctl, cudaStreamNonBlocking), "cudaStreamCreate");
    for (auto& s : streams) check(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), "cudaStreamCreate");
    check(cudaEventCreateWithFlags(&ev_setup, cudaEventDisableTiming), "cudaEventCreate");
    for (auto& e : ev_done) check(cudaEventCreateWithFlags(&e, cudaEventDisableTiming), "cudaEventCreate");
  }
  ~Impl() {
    for (auto& e : ev_done) cudaEventDestroy(e);
    cudaEventDestroy(ev_setup);
    for (auto& s : streams) cudaStreamDestroy(s);
    cudaStreamDestroy(ctl);
  }

  // Lays out inputs and outputs; stages unpinned inputs into pinned memory.
  void layout(const std::vector<std::span<const uint8_t>>& ins, const std::vector<std::span<const uint8_t>>& outs,
              bool outputs_may_alias) {
    in_m.build(ins, 4096);
    in_m.mark_unpinned();
    if (!outs.empty()) {
      out_m.build(outs, 0);
      out_m.mark_unpinned();
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
    if (any_in_staged) {
      uint8_t* st = h_stage_in.get(in_m.total);
      for (auto& r : in_m.ranges)
        if (r.staged) std::memcpy(st + r.dev, r.host, r.len);
    }
  }

  void copy_in(uint8_t* dev_base, cudaStream_t s) {
    for (auto& c : cp.copies) {
      const auto& r = in_m.ranges[c.range];
      const void* src = r.staged ? static_cast<const void*>(h_stage_in.p ? static_cast<uint8_t*>(h_stage_in.p) + c.lo : nullptr)
                                 : static_cast<const void*>(r.host + (c.lo - r.dev));
      check(cudaMemcpyAsync(dev_base + c.lo, src, c.hi - c.lo, cudaMemcpyHostToDevice, s), "copy to device");
    }
  }
  void copy_out(const uint8_t* dev_base, cudaStream_t s) {
    for (auto& c : cp.copies) {
      const auto& r = out_m.ranges[c.range];
      void* dst = r.staged ? static_cast<void*>(static_cast<uint8_t*>(h_stage_out.p) + c.lo)
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
      if (r.staged) std::memcpy(const_cast<uint8_t*>(r.host), static_cast<uint8_t*>(h_stage_out.p) + r.dev, r.len);
  }

  static uint64_t piece_target(uint64_t total) {
    return std::clamp<uint64_t>(total / 16, uint64_t{1} << 20, uint64_t{16} << 20);
  }

  void run_aes(std::vector<Job*>& jobs, bool inject_fault) {
    const uint32_t n = uint32_t(jobs.size());
    std::vector<std::span<const uint8_t>> ins(n), outs(n);
    uint64_t aux_total = 0;
    for (uint32_t i = 0; i < n; ++i) {
      ins[i] = jobs[i]->in;
      outs[i] = jobs[i]->out;
      aux_total = align_up(aux_total, 16) + jobs[i]->aad.size();
    }
    layout(ins, outs, true);
    prepare_out_staging();
    uint8_t* din = d_in.get(in_m.total);
    uint8_t* dout = d_out.get(out_m.total);
    uint8_t* daux = d_aux.get(aux_total);
    uint8_t* haux = h_aux.get(aux_total);

    std::vector<aes::gpu::DevJob> dj(n);
    uint64_t aux_off = 0;
    for (uint32_t i = 0; i < n; ++i) {
      const Job& j = *jobs[i];
      auto& d = dj[i];
      d.mode = uint8_t(j.op == OpId::aes256_ctr ? aes::Mode::ctr : aes::Mode::gcm);
      d.dir = uint8_t(j.op == OpId::aes256_gcm_decrypt ? aes::Dir::decrypt : aes::Dir::encrypt);
      d.len = j.in.size();
      d.in = reinterpret_cast<uint64_t>(din + in_m.dev[i]);
      d.out = reinterpret_cast<uint64_t>(dout + out_m.dev[i]);
      std::memcpy(d.key, j.key.data(), aes::kKeyBytes);
      std::memcpy(d.iv, j.iv.data(), j.iv.size());
      std::memcpy(d.tag, j.tag.data(), aes::kTagBytes);
      aux_off = align_up(aux_off, 16);
      if (!j.aad.empty()) std::memcpy(haux + aux_off, j.aad.data(), j.aad.size());
      d.aad = reinterpret_cast<uint64_t>(daux + aux_off);
      d.aad_len = uint32_t(j.aad.size());
      aux_off += j.aad.size();
    }
    const std::vector<uint32_t> seg_job = aes::gpu::plan(dj);
    const uint32_t nsegs = uint32_t(seg_job.size());
    auto* dws = d_ws.get(aes::gpu::workspace_bytes(n, nsegs));
    const aes::gpu::Workspace ws = aes::gpu::carve(dws, n, nsegs);
    // The job table and segment map sit at the start of the workspace: one copy.
    const size_t meta_bytes = size_t(reinterpret_cast<uint8_t*>(ws.seg_job) - dws) + nsegs * sizeof(uint32_t);
    uint8_t* hmeta = h_meta.get(meta_bytes);
    std::memcpy(hmeta, dj.data(), n * sizeof(aes::gpu::DevJob));
    std::memcpy(hmeta + (reinterpret_cast<uint8_t*>(ws.seg_job) - dws), seg_job.data(), nsegs * sizeof(uint32_t));

    check(cudaMemcpyAsync(dws, hmeta, meta_bytes, cudaMemcpyHostToDevice, ctl), "copy job table");
    if (aux_total) check(cudaMemcpyAsync(daux, haux, aux_total, cudaMemcpyHostToDevice, ctl), "copy aad");
    check(aes::gpu::enqueue_setup(ws, ctl), "aes setup kernel");
    check(cudaEventRecord(ev_setup, ctl), "cudaEventRecord");

    // Pieces: consecutive segments worth about piece_target() bytes of data.
    const uint64_t target = piece_target(in_m.total);
    uint32_t seg = 0, piece = 0;
    while (seg < nsegs) {
      uint32_t end = seg;
      uint64_t bytes = 0;
      while (end < nsegs && (bytes < target || end == seg)) {
        const auto& d = dj[seg_job[end]];
        // Whole jobs at once when small: segments of a job are taken together
        // unless the job alone exceeds the target.
        const uint32_t local = end - d.first_seg;
        const uint32_t take = d.len <= target ? d.nseg - local : 1;
        const auto br = aes::gpu::segment_bytes(d, local, local + take);
        bytes += br.hi - br.lo + 64;
        end += take;
      }
      cudaStream_t s = streams[piece % kStreams];
      cp.clear();
      for (uint32_t g = seg; g < end;) {
        const uint32_t j = seg_job[g];
        const auto& d = dj[j];
        const uint32_t lo = g - d.first_seg, hi = std::min(end - d.first_seg, d.nseg);
        const auto br = aes::gpu::segment_bytes(d, lo, hi);
        cp.add(in_m, j, br.lo, br.hi);
        g = d.first_seg + hi;
      }
      copy_in(din, s);
      if (inject_fault && piece == 0)
        check(cudaMemcpyAsync(nullptr, din, 1, cudaMemcpyDeviceToHost, s), "copy to host (injected fault)");
      check(cudaStreamWaitEvent(s, ev_setup, 0), "cudaStreamWaitEvent");
      check(aes::gpu::enqueue_segments(ws, seg, end, s), "aes segment kernel");
      cp.clear();
      for (uint32_t g = seg; g < end;) {
        const uint32_t j = seg_job[g];
        const auto& d = dj[j];
        const uint32_t lo = g - d.first_seg, hi = std::min(end - d.first_seg, d.nseg);
        const auto br = aes::gpu::segment_bytes(d, lo, hi);
        cp.add(out_m, j, br.lo, br.hi);
        g = d.first_seg + hi;
      }
      copy_out(dout, s);
      seg = end;
      ++piece;
    }
    for (int i = 0; i < kStreams; ++i) {
      check(cudaEventRecord(ev_done[i], streams[i]), "cudaEventRecord");
      check(cudaStreamWaitEvent(ctl, ev_done[i], 0), "cudaStreamWaitEvent");
    }
    check(aes::gpu::enqueue_finalize(ws, ctl), "aes finalize kernel");
    const size_t res_bytes = size_t(ws.results - ws.tags) + n;
    uint8_t* hres = h_res.get(res_bytes);
    check(cudaMemcpyAsync(hres, ws.tags, res_bytes, cudaMemcpyDeviceToHost, ctl), "copy tags");
    check(cudaStreamSynchronize(ctl), "aes batch");
    finish_out_staging();
    const uint8_t* results = hres + (ws.results - ws.tags);
    for (uint32_t i = 0; i < n; ++i) {
      Job& j = *jobs[i];
      if (j.op == OpId::aes256_gcm_encrypt) std::memcpy(j.tag.data(), hres + 16 * size_t(i), 16);
      j.status = results[i] == uint8_t(aes::Result::ok) ? Status::ok : Status::auth_failed;
    }
  }

  void run_sha(std::vector<Job*>& jobs, bool inject_fault) {
    const uint32_t n = uint32_t(jobs.size());
    std::vector<std::span<const uint8_t>> ins(n);
    for (uint32_t i = 0; i < n; ++i) ins[i] = jobs[i]->in;
    layout(ins, {}, false);
    uint8_t* din = d_in.get(in_m.total);
    const size_t msgs_bytes = align_up(n * sizeof(sha256::gpu::DevMsg), 256);
    uint8_t* dws = d_ws.get(msgs_bytes + size_t(n) * sha256::kDigestBytes);
    auto* hmsgs = reinterpret_cast<sha256::gpu::DevMsg*>(h_meta.get(n * sizeof(sha256::gpu::DevMsg)));
    for (uint32_t i = 0; i < n; ++i) hmsgs[i] = {reinterpret_cast<uint64_t>(din + in_m.dev[i]), jobs[i]->in.size()};
    auto* dmsgs = reinterpret_cast<sha256::gpu::DevMsg*>(dws);
    uint8_t* ddig = dws + msgs_bytes;
    uint8_t* hdig = h_res.get(size_t(n) * sha256::kDigestBytes);
    check(cudaMemcpyAsync(dmsgs, hmsgs, n * sizeof(sha256::gpu::DevMsg), cudaMemcpyHostToDevice, ctl), "copy messages");
    check(cudaEventRecord(ev_setup, ctl), "cudaEventRecord");
    const uint64_t target = piece_target(in_m.total);
    uint32_t m = 0, piece = 0;
    while (m < n) {
      uint32_t end = m;
      uint64_t bytes = 0;
      while (end < n && (bytes < target || end == m)) bytes += jobs[end++]->in.size() + 64;
      cudaStream_t s = streams[piece % kStreams];
      cp.clear();
      for (uint32_t i = m; i < end; ++i) cp.add(in_m, i, 0, jobs[i]->in.size());
      copy_in(din, s);
      if (inject_fault && piece == 0)
        check(cudaMemcpyAsync(nullptr, din, 1, cudaMemcpyDeviceToHost, s), "copy to host (injected fault)");
      check(cudaStreamWaitEvent(s, ev_setup, 0), "cudaStreamWaitEvent");
      check(sha256::gpu::enqueue_digests(dmsgs + m, end - m, ddig + size_t(m) * 32, s), "sha256 kernel");
      check(cudaMemcpyAsync(hdig + size_t(m) * 32, ddig + size_t(m) * 32, size_t(end - m) * 32, cudaMemcpyDeviceToHost, s),
            "copy digests");
      m = end;
      ++piece;
    }
    for (int i = 0; i < kStreams; ++i) {
      check(cudaEventRecord(ev_done[i], streams[i]), "cudaEventRecord");
      check(cudaStreamWaitEvent(ctl, ev_done[i], 0), "cudaStreamWaitEvent");
    }
    check(cudaStreamSynchronize(ctl), "sha256 batch");
    for (uint32_t i = 0; i < n; ++i) {
      std::memcpy(jobs[i]->out.data(), hdig + size_t(i) * 32, 32);
      jobs[i]->status = Status::ok;
    }
  }
};

CudaBackend::CudaBackend(int device, std::shared_ptr<CpuBackend> cpu) : device_(device), cpu_(std::move(cpu)) {
  check(cudaSetDevice(device_), "cudaSetDevice");
  impl_ = std::make_unique<Impl>();
  worker_ = std::thread([this] { worker(); });
}

CudaBackend::~CudaBackend() {
  {
    std::lock_guard lk(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  worker_.join();
  cudaSetDevice(device_);
  impl_.reset();
}

std::string CudaBackend::name() const { return fmt::format("cuda:{}", device_); }

bool CudaBackend::register_memory(void* p, size_t len) {
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
    std::pair<Batch*, Completion> item;
    {
      std::unique_lock lk(mu_);
      cv_.wait(lk, [&] { return stop_ || !queue_.empty(); });
      if (queue_.empty()) return;
      item = std::move(queue_.front());
      queue_.pop_front();
    }
    run_batch(*item.first);
    item.second(*item.first);
  }
}

void CudaBackend::run_batch(Batch& b) {
  std::vector<Job*> aes_jobs, sha_jobs, cpu_jobs;
  uint64_t bytes = 0;
  for (auto& j : b.jobs) {
    bytes += j.in.size();
    const OpInfo* op = find_op(j.op);
    if (!op || op->validate(j) != Status::ok) {
      j.status = Status::invalid;
      continue;
    }
    if (broken_ || !op->gpu || (op->gpu_sequential && j.in.size() > kShaGpuMaxBytes))
      cpu_jobs.push_back(&j);
    else if (op->family == Family::aes)
      aes_jobs.push_back(&j);
    else
      sha_jobs.push_back(&j);
  }
  const bool fault = inject_fault_.exchange(false);
  uint64_t errors = 0, retried = 0;
  auto gpu_part = [&](std::vector<Job*>& jobs, auto fn) {
    if (jobs.empty()) return;
    try {
      fn(jobs);
    } catch (const CudaError& e) {
      errors++;
      retried += jobs.size();
      log::warn("{}: {}; re-running {} jobs on the CPU", name(), e.what(), jobs.size());
      // A sticky error (the context is unusable) sends all later work to the CPU.
      cudaGetLastError();
      if (cudaStreamSynchronize(impl_->ctl) != cudaSuccess || cudaGetLastError() != cudaSuccess) {
        broken_ = true;
        log::error("{}: the device is unusable after this error; serving on the CPU backend from now on", name());
      } else {
        for (auto* s : impl_->streams) cudaStreamSynchronize(s);  // nothing of this batch still in flight
      }
      for (auto* j : jobs) j->status = Status::pending;
      cpu_->run_jobs(jobs);
    } catch (const std::exception& e) {
      errors++;
      retried += jobs.size();
      log::warn("{}: {}; re-running {} jobs on the CPU", name(), e.what(), jobs.size());
      cpu_->run_jobs(jobs);
    }
  };
  gpu_part(aes_jobs, [&](std::vector<Job*>& j) { impl_->run_aes(j, fault); });
  gpu_part(sha_jobs, [&](std::vector<Job*>& j) { impl_->run_sha(j, fault); });
  cpu_->run_jobs(cpu_jobs);
  b.ran_on = retried ? "cpu-retry" : (aes_jobs.empty() && sha_jobs.empty() && !cpu_jobs.empty() ? "cpu" : name());
  std::lock_guard lk(stats_mu_);
  stats_.batches++;
  stats_.jobs += b.jobs.size();
  stats_.bytes += bytes;
  stats_.gpu_errors += errors;
  stats_.cpu_retries += retried;
}

}  // namespace gpo::backend
