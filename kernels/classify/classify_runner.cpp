#include "kernels/classify/classify_runner.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <cstring>
#include <stdexcept>
#include <thread>

#include "kernels/classify/acl.h"
#include "kernels/classify/classify_gpu.h"
#include "kernels/classify/classify_cpu.h"
#include "kernels/common/cuda_check.h"

namespace gpo::classify {
namespace {

using cuda::check;

constexpr uint32_t align4(uint32_t x) { return (x + 3) & ~3u; }

}  // namespace

struct GpuClassifier::Impl {
  std::shared_ptr<const RuleTables> tables;
  GpuClassifierOptions opt;
  acl::Index index;
  gpu::DeviceTables dev;
  std::vector<void*> allocations;  // device copies of the tables
  size_t table_bytes = 0;
  std::unique_ptr<match::gpu::DeviceMatcher> matcher;  // the automata in device memory
  CpuClassifier cpu;  // frames the kernel could not decide
  uint64_t cpu_retries = 0;
  int event_fd = -1;

  // One buffer set per slot. In the pinned input: [offsets n][lens n][flows n, padded to 4][frame bytes].
  struct Slot {
    cudaStream_t stream = nullptr;
    cudaEvent_t done = nullptr;
    uint8_t* h_in = nullptr;
    uint8_t* d_in = nullptr;
    size_t in_cap = 0;
    Verdict* h_out = nullptr;
    Verdict* d_out = nullptr;
    uint32_t n = 0;
    bool busy = false;
    std::vector<Frame> frames;  // for the CPU retry
  };
  Slot slots[kSlots];

  Impl(std::shared_ptr<const RuleTables> t, GpuClassifierOptions o) : tables(std::move(t)), opt(o), cpu(tables) {}

  template <typename T>
  const T* upload(const std::vector<T>& v) {
    if (v.empty()) return nullptr;
    void* p = nullptr;
    check(cudaMalloc(&p, v.size() * sizeof(T)), "cudaMalloc (tables)");
    allocations.push_back(p);
    check(cudaMemcpy(p, v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice), "copy tables");
    table_bytes += v.size() * sizeof(T);
    return static_cast<const T*>(p);
  }

  void ensure_capacity(Slot& s, size_t in_bytes) {
    if (in_bytes <= s.in_cap) return;
    size_t cap = std::max(in_bytes, s.in_cap * 2);
    if (s.h_in) cudaFreeHost(s.h_in);
    if (s.d_in) cudaFree(s.d_in);
    s.h_in = s.d_in = nullptr;
    s.in_cap = 0;
    check(cudaMallocHost(&s.h_in, cap), "cudaMallocHost (staging)");
    check(cudaMalloc(&s.d_in, cap), "cudaMalloc (frames)");
    s.in_cap = cap;
  }

  // Packs the frames into the slot's pinned input; returns the bytes to copy.
  size_t pack(Slot& s, std::span<const Frame> frames) {
    const uint32_t n = uint32_t(frames.size());
    const size_t head = size_t(2) * n * 4 + align4(n);
    size_t bytes = head;
    for (const Frame& f : frames) bytes += align4(f.len);
    bytes += 4;  // the scanner may read the word holding a frame's last byte
    ensure_capacity(s, bytes);
    auto* offsets = reinterpret_cast<uint32_t*>(s.h_in);
    auto* lens = offsets + n;
    auto* flows = reinterpret_cast<uint8_t*>(lens + n);
    size_t at = head;
    for (uint32_t i = 0; i < n; ++i) {
      if (at > UINT32_MAX) throw std::length_error("GPU classifier: batch larger than 4 GiB");
      offsets[i] = uint32_t(at);
      lens[i] = frames[i].len;
      flows[i] = frames[i].flow;
      at += align4(frames[i].len);
    }
    std::memset(s.h_in + at, 0, 4);
    // Big batches (1500-byte frames x 64K = 98 MB, or 64K small frames) are
    // copied by several threads: one core would cap the end-to-end rate.
    auto copy = [&](uint32_t from, uint32_t to) {
      for (uint32_t i = from; i < to; ++i)
        if (frames[i].len) std::memcpy(s.h_in + offsets[i], frames[i].data, frames[i].len);
    };
    const bool big = bytes >= (size_t(8) << 20) || n >= 16384;  // per-frame calls cost too at 64 B
    const unsigned threads = big ? std::min(8u, std::max(1u, std::thread::hardware_concurrency() / 2)) : 1;
    if (threads <= 1) {
      copy(0, n);
    } else {
      std::vector<std::thread> pool;
      for (unsigned t = 1; t < threads; ++t) pool.emplace_back(copy, uint32_t(uint64_t(n) * t / threads), uint32_t(uint64_t(n) * (t + 1) / threads));
      copy(0, uint32_t(n / threads));
      for (auto& th : pool) th.join();
    }
    return at + 4;
  }

  void launch(Slot& s, uint32_t n) {
    auto* offsets = reinterpret_cast<const uint32_t*>(s.d_in);
    auto* flows = reinterpret_cast<const uint8_t*>(offsets + 2 * size_t(n));
    gpu::launch_classify(dev, s.d_in, offsets, offsets + n, flows, n, s.d_out, kMaxHits, s.stream);
  }
};

int GpuClassifier::device_count(std::string* why) { return cuda::device_count(why); }

GpuClassifier::GpuClassifier(std::shared_ptr<const RuleTables> tables, GpuClassifierOptions opt)
    : impl_(std::make_unique<Impl>(std::move(tables), opt)) {
  Impl& m = *impl_;
  if (m.opt.max_batch == 0) m.opt.max_batch = 1;
  check(cudaSetDevice(m.opt.device), "cudaSetDevice");
  const RuleTables& t = *m.tables;
  m.index = acl::build(t);
  acl::View v = m.index.view();
  acl::View d = v;
  d.slot_rule = m.upload(m.index.slot_rule);
  for (int f = 0; f < acl::kNumFields; ++f) {
    const acl::FieldIndex& fi = m.index.f[f];
    d.f[f].starts32 = m.upload(fi.starts32);
    d.f[f].starts128 = m.upload(fi.starts128);
    d.f[f].hint16 = m.upload(fi.hint16);
    d.f[f].direct = m.upload(fi.direct);
    d.f[f].class_of = m.upload(fi.class_of);
    d.f[f].words = m.upload(fi.words);
    d.f[f].summary = m.upload(fi.summary);
  }
  m.dev.acl = d;
  m.dev.rules.rules = m.upload(t.rules);
  m.dev.rules.contents = m.upload(t.contents);
  m.dev.rules.content_bytes = m.upload(t.content_bytes);
  m.dev.rules.default_action = t.default_action;
  m.dev.rules.inspect_depth = t.inspect_depth;
  m.matcher = std::make_unique<match::gpu::DeviceMatcher>(t.matcher, m.opt.device);
  m.dev.matcher = m.matcher->view();
  m.dev.inspect_depth = t.inspect_depth;
  for (Impl::Slot& s : m.slots) {
    check(cudaStreamCreateWithFlags(&s.stream, cudaStreamNonBlocking), "cudaStreamCreate");
    check(cudaEventCreateWithFlags(&s.done, cudaEventDisableTiming), "cudaEventCreate");
    check(cudaMallocHost(&s.h_out, size_t(m.opt.max_batch) * sizeof(Verdict)), "cudaMallocHost (verdicts)");
    check(cudaMalloc(&s.d_out, size_t(m.opt.max_batch) * sizeof(Verdict)), "cudaMalloc (verdicts)");
  }
  m.event_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (m.event_fd < 0) throw std::runtime_error(std::string("GPU classifier: eventfd: ") + std::strerror(errno));
}

GpuClassifier::~GpuClassifier() {
  Impl& m = *impl_;
  for (Impl::Slot& s : m.slots) {
    if (s.stream) cudaStreamSynchronize(s.stream);
    if (s.done) cudaEventDestroy(s.done);
    if (s.stream) cudaStreamDestroy(s.stream);
    if (s.h_in) cudaFreeHost(s.h_in);
    if (s.d_in) cudaFree(s.d_in);
    if (s.h_out) cudaFreeHost(s.h_out);
    if (s.d_out) cudaFree(s.d_out);
  }
  for (void* p : m.allocations) cudaFree(p);
  if (m.event_fd >= 0) close(m.event_fd);
}

namespace {
void CUDART_CB signal_done(void* fd) {
  uint64_t one = 1;
  [[maybe_unused]] ssize_t r = write(int(reinterpret_cast<intptr_t>(fd)), &one, sizeof one);
}
}  // namespace

int GpuClassifier::submit(std::span<const Frame> frames) {
  Impl& m = *impl_;
  if (frames.size() > m.opt.max_batch)
    throw std::invalid_argument("GPU classifier: batch of " + std::to_string(frames.size()) + " frames > max_batch " +
                                std::to_string(m.opt.max_batch));
  int ticket = -1;
  for (int i = 0; i < kSlots; ++i)
    if (!m.slots[i].busy) {
      ticket = i;
      break;
    }
  if (ticket < 0) return -1;
  Impl::Slot& s = m.slots[ticket];
  const uint32_t n = uint32_t(frames.size());
  size_t bytes = m.pack(s, frames);
  s.n = n;
  s.frames.assign(frames.begin(), frames.end());
  s.busy = true;
  check(cudaMemcpyAsync(s.d_in, s.h_in, bytes, cudaMemcpyHostToDevice, s.stream), "copy frames in");
  m.launch(s, n);
  check(cudaGetLastError(), "kernel launch");
  check(cudaMemcpyAsync(s.h_out, s.d_out, size_t(n) * sizeof(Verdict), cudaMemcpyDeviceToHost, s.stream),
        "copy verdicts out");
  check(cudaEventRecord(s.done, s.stream), "cudaEventRecord");
  check(cudaLaunchHostFunc(s.stream, signal_done, reinterpret_cast<void*>(intptr_t(m.event_fd))),
        "cudaLaunchHostFunc");
  return ticket;
}

bool GpuClassifier::ready(int ticket) const {
  const Impl::Slot& s = impl_->slots[ticket];
  if (!s.busy) return true;
  // An error also counts as ready: collect() reports it.
  return cudaEventQuery(s.done) != cudaErrorNotReady;
}

void GpuClassifier::collect(int ticket, std::span<Verdict> out) {
  Impl& m = *impl_;
  Impl::Slot& s = m.slots[ticket];
  if (!s.busy) throw std::logic_error("GPU classifier: collect() of a ticket not in flight");
  if (out.size() != s.n) throw std::invalid_argument("GPU classifier: collect: out.size() != batch size");
  s.busy = false;
  check(cudaEventSynchronize(s.done), "batch");
  std::memcpy(out.data(), s.h_out, size_t(s.n) * sizeof(Verdict));
  for (uint32_t i = 0; i < s.n; ++i)
    if (out[i].action == gpu::kActionRetryOnCpu) {
      out[i] = m.cpu.classify_one(s.frames[i]);
      ++m.cpu_retries;
    }
}

void GpuClassifier::classify(std::span<const Frame> frames, std::span<Verdict> out) {
  if (out.size() != frames.size()) throw std::invalid_argument("classify: out.size() != frames.size()");
  const uint32_t max = impl_->opt.max_batch;
  for (size_t at = 0; at < frames.size(); at += max) {
    size_t n = std::min<size_t>(max, frames.size() - at);
    int t = submit(frames.subspan(at, n));
    if (t < 0) throw std::logic_error("GPU classifier: classify() while asynchronous batches are in flight");
    collect(t, out.subspan(at, n));
  }
}

int GpuClassifier::completion_fd() const { return impl_->event_fd; }
uint32_t GpuClassifier::max_batch() const { return impl_->opt.max_batch; }

int GpuClassifier::in_flight() const {
  int n = 0;
  for (const Impl::Slot& s : impl_->slots) n += s.busy;
  return n;
}

double GpuClassifier::time_kernel(std::span<const Frame> frames, int iters) {
  Impl& m = *impl_;
  Impl::Slot& s = m.slots[0];
  if (s.busy) throw std::logic_error("GPU classifier: time_kernel() while batches are in flight");
  if (frames.size() > m.opt.max_batch) throw std::invalid_argument("GPU classifier: time_kernel: batch > max_batch");
  const uint32_t n = uint32_t(frames.size());
  size_t bytes = m.pack(s, frames);
  check(cudaMemcpy(s.d_in, s.h_in, bytes, cudaMemcpyHostToDevice), "copy frames in");
  cudaEvent_t a, b;
  check(cudaEventCreate(&a), "cudaEventCreate");
  check(cudaEventCreate(&b), "cudaEventCreate");
  m.launch(s, n);  // warm-up
  check(cudaEventRecord(a, s.stream), "cudaEventRecord");
  for (int i = 0; i < iters; ++i) m.launch(s, n);
  check(cudaEventRecord(b, s.stream), "cudaEventRecord");
  check(cudaEventSynchronize(b), "kernel");
  check(cudaGetLastError(), "kernel");
  float ms = 0;
  cudaEventElapsedTime(&ms, a, b);
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  return double(ms) / 1e3 / std::max(iters, 1);
}

uint64_t GpuClassifier::cpu_retries() const { return impl_->cpu_retries; }

size_t GpuClassifier::device_bytes() const { return impl_->table_bytes + impl_->matcher->device_bytes(); }
size_t GpuClassifier::acl_bytes() const { return impl_->index.bytes(); }

}  // namespace gpo::classify
