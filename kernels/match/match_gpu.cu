// The GPU matcher: DeviceMatcher (upload once, scan batches) and the batch
// kernel. The scan itself is scan_span() of match_gpu.h, the same code the
// unit tests run on the CPU.
//
// Batch kernel: one thread per (payload, chunk). Threads are payload-minor
// (thread t scans payload t % n, chunk t / n), so a warp walks 32 payloads at
// the same chunk index: similar lengths, little divergence. A block first
// copies the byte-class table and the first (breadth-first, so shallowest)
// rows of both automata into shared memory.
#include <cub/device/device_scan.cuh>
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <stdexcept>
#include <string>

#include "kernels/common/cuda_buffers.h"
#include "kernels/match/match_gpu.h"

namespace gpo::match::gpu {
namespace {

constexpr uint32_t kThreads = 256;
constexpr uint32_t kMinChunk = 64;

using cuda::check;

__global__ void __launch_bounds__(kThreads) k_scan(MatcherView m, const uint8_t* __restrict__ data,
                                                   const PayloadRef* __restrict__ payloads, uint32_t n,
                                                   uint32_t chunks, uint32_t chunk, uint32_t depth,
                                                   uint32_t* __restrict__ bits, uint32_t hot_e, uint32_t hot_f) {
  extern __shared__ uint32_t smem[];
  for (uint32_t i = threadIdx.x; i < 256; i += blockDim.x) smem[i] = m.classes[i];
  uint32_t* he = smem + 256;
  uint32_t* hf = he + hot_e;
  for (uint32_t i = threadIdx.x; i < hot_e; i += blockDim.x) he[i] = __ldg(m.exact.next + i);
  for (uint32_t i = threadIdx.x; i < hot_f; i += blockDim.x) hf[i] = __ldg(m.folded.next + i);
  __syncthreads();
  m.classes = smem;
  m.exact.hot = he;
  m.exact.hot_entries = hot_e;
  m.folded.hot = hf;
  m.folded.hot_entries = hot_f;

  const uint64_t t = uint64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (t >= uint64_t(n) * chunks) return;
  const uint32_t p = uint32_t(t % n), c = uint32_t(t / n);
  uint32_t* out = bits + size_t(p) * m.bitset_words();
  if (chunks == 1)  // the payload is this thread's alone: zero its bitset here (no memset pass)
    for (uint32_t w = 0; w < m.bitset_words(); ++w) out[w] = 0;
  const PayloadRef r = payloads[p];
  const uint32_t len = min(r.len, depth);
  const uint32_t begin = c * chunk;
  if (begin >= len) return;
  const uint32_t end = c + 1 == chunks ? len : begin + chunk;  // the last chunk takes any rest (max_len too small)
  scan_span(m, data + r.offset, len, begin, end, [out](uint32_t id) { set_hit(out, id); });
}

// Hit lists from bitsets: counts (one per payload, and a trailing 0 so the
// exclusive scan's last entry is the total), then the ids in increasing order.
__global__ void k_count(const uint32_t* __restrict__ bits, uint32_t n, uint32_t words, uint32_t* __restrict__ counts) {
  const uint32_t p = blockIdx.x * blockDim.x + threadIdx.x;
  if (p > n) return;
  uint32_t c = 0;
  if (p < n)
    for (uint32_t w = 0; w < words; ++w) c += __popc(bits[size_t(p) * words + w]);
  counts[p] = c;
}

__global__ void k_write_ids(const uint32_t* __restrict__ bits, uint32_t n, uint32_t words,
                            const uint32_t* __restrict__ offsets, uint32_t* __restrict__ ids) {
  const uint32_t p = blockIdx.x * blockDim.x + threadIdx.x;
  if (p >= n) return;
  uint32_t at = offsets[p];
  for (uint32_t w = 0; w < words; ++w) {
    uint32_t x = bits[size_t(p) * words + w];
    while (x) {
      const uint32_t b = __ffs(x) - 1;
      ids[at++] = w * 32 + b;
      x &= x - 1;
    }
  }
}

}  // namespace

bool gpu_usable(std::string* why) { return cuda::device_count(why) > 0; }

struct DeviceMatcher::Impl {
  int device = 0;
  int sms = 1;
  cudaStream_t stream = nullptr;
  cudaEvent_t ev0 = nullptr, ev1 = nullptr;
  MatcherImage image;
  MatcherView dview;
  cuda::DevBuf<uint32_t> tables;  // everything of the image, one allocation
  size_t table_bytes = 0;
  uint32_t hot_bytes = 0;  // shared-memory rows: off (on an H100: 1.2-3x faster without; L1 does better)
  cuda::DevBuf<uint8_t> d_data;
  cuda::DevBuf<PayloadRef> d_payloads;
  cuda::DevBuf<uint32_t> d_bits;
  cuda::PinnedBuf<uint8_t> h_data;
  cuda::PinnedBuf<PayloadRef> h_payloads;
  cuda::PinnedBuf<uint32_t> h_bits;
  cuda::DevBuf<uint32_t> d_counts, d_offsets, d_ids;
  cuda::DevBuf<uint8_t> d_cub;
  cuda::PinnedBuf<uint32_t> h_offsets, h_ids;

  ~Impl() {
    if (ev0) cudaEventDestroy(ev0);
    if (ev1) cudaEventDestroy(ev1);
    if (stream) cudaStreamDestroy(stream);
  }

  // Copies the image's arrays into one device allocation and points dview there.
  void upload() {
    const MatcherImage::Automaton* autos[2] = {&image.exact, &image.folded};
    size_t words = image.classes.size();
    for (auto* a : autos) words += a->next.size() + a->out_first.size() + a->out_ids.size();
    tables.get(words);
    table_bytes = words * sizeof(uint32_t);
    size_t at = 0;
    auto put = [&](const std::vector<uint32_t>& v) {
      const uint32_t* d = tables.data() + at;
      check(cudaMemcpy(tables.data() + at, v.data(), v.size() * sizeof(uint32_t), cudaMemcpyHostToDevice), "upload");
      at += v.size();
      return d;
    };
    dview = image.view();
    dview.classes = put(image.classes);
    AutomatonView* views[2] = {&dview.exact, &dview.folded};
    for (int i = 0; i < 2; ++i) {
      views[i]->next = put(autos[i]->next);
      views[i]->out_first = put(autos[i]->out_first);
      views[i]->out_ids = put(autos[i]->out_ids);
      views[i]->hot = nullptr;
      views[i]->hot_entries = 0;
    }
  }

  // Shared-memory rows: the budget goes to the active automata, each at most its table.
  void hot_split(uint32_t& he, uint32_t& hf) const {
    const uint32_t budget = hot_bytes / 4;
    const uint32_t ne = image.exact.active ? uint32_t(image.exact.next.size()) : 0;
    const uint32_t nf = image.folded.active ? uint32_t(image.folded.next.size()) : 0;
    if (ne == 0 || nf == 0) {
      he = std::min(ne, budget);
      hf = std::min(nf, budget - he);
      return;
    }
    he = std::min(ne, budget / 2);
    hf = std::min(nf, budget - he);
    he = std::min(ne, budget - hf);
  }
};

DeviceMatcher::DeviceMatcher(const Matcher& m, int device) : impl_(std::make_unique<Impl>()) {
  impl_->device = device;
  check(cudaSetDevice(device), "cudaSetDevice");
  check(cudaDeviceGetAttribute(&impl_->sms, cudaDevAttrMultiProcessorCount, device), "device attributes");
  check(cudaStreamCreateWithFlags(&impl_->stream, cudaStreamNonBlocking), "cudaStreamCreate");
  check(cudaEventCreate(&impl_->ev0), "cudaEventCreate");
  check(cudaEventCreate(&impl_->ev1), "cudaEventCreate");
  impl_->image = build_image(m);
  impl_->upload();
  check(cudaFuncSetAttribute(k_scan, cudaFuncAttributeMaxDynamicSharedMemorySize, 96 * 1024), "smem attribute");
}

DeviceMatcher::~DeviceMatcher() = default;

const MatcherView& DeviceMatcher::view() const { return impl_->dview; }
size_t DeviceMatcher::device_bytes() const { return impl_->table_bytes; }
void DeviceMatcher::set_hot_bytes(uint32_t bytes) { impl_->hot_bytes = std::min<uint32_t>(bytes, 64 * 1024); }

int DeviceMatcher::enqueue_scan(const uint8_t* d_data, const PayloadRef* d_payloads, uint32_t n, uint32_t max_len,
                                uint32_t depth, uint32_t* d_bits, void* stream) {
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  const MatcherView& m = impl_->dview;
  const size_t words = size_t(n) * m.bitset_words();
  if (n == 0 || words == 0) return 0;
  // Chunks: enough threads to fill the GPU (2048 per SM), but a chunk at
  // least 4x the overlap so re-read bytes stay a small share.
  const uint32_t eff = std::max<uint32_t>(1, std::min(max_len, depth));
  const uint64_t target = uint64_t(impl_->sms) * 2048;
  const uint32_t overlap = m.max_pattern_len > 0 ? m.max_pattern_len - 1 : 0;
  uint64_t chunk = (uint64_t(eff) * n + target - 1) / target;
  chunk = std::max<uint64_t>({chunk, kMinChunk, 4ull * overlap});
  chunk = (chunk + 3) & ~uint64_t(3);
  const uint32_t chunks = chunk >= eff ? 1 : uint32_t((eff + chunk - 1) / chunk);
  if (chunks > 1) {  // threads of one payload share its bitset: zero it first
    const cudaError_t e = cudaMemsetAsync(d_bits, 0, words * sizeof(uint32_t), s);
    if (e != cudaSuccess) return int(e);
  }
  uint32_t he = 0, hf = 0;
  impl_->hot_split(he, hf);
  const size_t smem = (256 + size_t(he) + hf) * sizeof(uint32_t);
  const uint64_t threads = uint64_t(n) * chunks;
  const uint32_t blocks = uint32_t((threads + kThreads - 1) / kThreads);
  k_scan<<<blocks, kThreads, smem, s>>>(m, d_data, d_payloads, n, chunks, uint32_t(chunk), depth, d_bits, he, hf);
  return int(cudaGetLastError());
}

void DeviceMatcher::scan(std::span<const uint8_t> data, std::span<const PayloadRef> payloads, uint32_t depth,
                         std::vector<uint32_t>& bits, ScanTiming* timing) {
  Impl& I = *impl_;
  check(cudaSetDevice(I.device), "cudaSetDevice");
  const uint32_t n = uint32_t(payloads.size());
  const size_t words = size_t(n) * bitset_words();
  bits.assign(words, 0);
  if (n == 0 || words == 0) return;
  uint32_t max_len = 0;
  for (const PayloadRef& p : payloads) {
    if (size_t(p.offset) + p.len > data.size()) throw std::out_of_range("match gpu: payload outside the data buffer");
    max_len = std::max(max_len, p.len);
  }
  const auto t0 = std::chrono::steady_clock::now();
  I.d_data.get(data.size());
  I.d_payloads.get(n);
  I.d_bits.get(words);
  I.h_data.get(data.size());
  I.h_payloads.get(n);
  I.h_bits.get(words);
  // Through pinned staging buffers: the copies then run at PCIe speed.
  // Callers that wrote into pinned_input() skip the host copy.
  if (data.data() != I.h_data.data()) std::memcpy(I.h_data.data(), data.data(), data.size());
  std::memcpy(I.h_payloads.data(), payloads.data(), n * sizeof(PayloadRef));
  check(cudaMemcpyAsync(I.d_data.data(), I.h_data.data(), data.size(), cudaMemcpyHostToDevice, I.stream), "copy in");
  check(cudaMemcpyAsync(I.d_payloads.data(), I.h_payloads.data(), n * sizeof(PayloadRef), cudaMemcpyHostToDevice, I.stream),
        "copy in");
  check(cudaEventRecord(I.ev0, I.stream), "cudaEventRecord");
  check(cudaError_t(enqueue_scan(I.d_data.data(), I.d_payloads.data(), n, max_len, depth, I.d_bits.data(), I.stream)), "scan kernel");
  check(cudaEventRecord(I.ev1, I.stream), "cudaEventRecord");
  check(cudaMemcpyAsync(I.h_bits.data(), I.d_bits.data(), words * sizeof(uint32_t), cudaMemcpyDeviceToHost, I.stream), "copy out");
  check(cudaStreamSynchronize(I.stream), "scan");
  std::memcpy(bits.data(), I.h_bits.data(), words * sizeof(uint32_t));
  if (timing) {
    float k = 0;
    cudaEventElapsedTime(&k, I.ev0, I.ev1);
    timing->kernel_ms = k;
    timing->total_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  }
}

void DeviceMatcher::scan_lists(std::span<const uint8_t> data, std::span<const PayloadRef> payloads, uint32_t depth,
                               std::vector<uint32_t>& offsets, std::vector<uint32_t>& ids, ScanTiming* timing) {
  Impl& I = *impl_;
  check(cudaSetDevice(I.device), "cudaSetDevice");
  const auto t0 = std::chrono::steady_clock::now();
  const uint32_t n = uint32_t(payloads.size());
  const uint32_t words = bitset_words();
  offsets.assign(size_t(n) + 1, 0);
  ids.clear();
  if (n == 0 || words == 0) return;
  uint32_t max_len = 0;
  for (const PayloadRef& p : payloads) {
    if (size_t(p.offset) + p.len > data.size()) throw std::out_of_range("match gpu: payload outside the data buffer");
    max_len = std::max(max_len, p.len);
  }
  I.d_data.get(data.size());
  I.d_payloads.get(n);
  I.d_bits.get(size_t(n) * words);
  I.h_data.get(data.size());
  I.h_payloads.get(n);
  I.d_counts.get(size_t(n) + 1);
  I.d_offsets.get(size_t(n) + 1);
  I.h_offsets.get(size_t(n) + 1);
  size_t tmp = 0;
  check(cub::DeviceScan::ExclusiveSum(nullptr, tmp, I.d_counts.data(), I.d_offsets.data(), n + 1, I.stream), "scan size");
  I.d_cub.get(tmp);
  if (data.data() != I.h_data.data()) std::memcpy(I.h_data.data(), data.data(), data.size());
  std::memcpy(I.h_payloads.data(), payloads.data(), n * sizeof(PayloadRef));
  check(cudaMemcpyAsync(I.d_data.data(), I.h_data.data(), data.size(), cudaMemcpyHostToDevice, I.stream), "copy in");
  check(cudaMemcpyAsync(I.d_payloads.data(), I.h_payloads.data(), n * sizeof(PayloadRef), cudaMemcpyHostToDevice, I.stream),
        "copy in");
  check(cudaEventRecord(I.ev0, I.stream), "cudaEventRecord");
  check(cudaError_t(enqueue_scan(I.d_data.data(), I.d_payloads.data(), n, max_len, depth, I.d_bits.data(), I.stream)), "scan kernel");
  check(cudaEventRecord(I.ev1, I.stream), "cudaEventRecord");
  const uint32_t blocks = (n + 1 + kThreads - 1) / kThreads;
  k_count<<<blocks, kThreads, 0, I.stream>>>(I.d_bits.data(), n, words, I.d_counts.data());
  check(cub::DeviceScan::ExclusiveSum(I.d_cub.data(), tmp, I.d_counts.data(), I.d_offsets.data(), n + 1, I.stream), "scan");
  check(cudaMemcpyAsync(I.h_offsets.data(), I.d_offsets.data(), (size_t(n) + 1) * 4, cudaMemcpyDeviceToHost, I.stream), "copy out");
  check(cudaStreamSynchronize(I.stream), "hit counts");
  const uint32_t total = I.h_offsets.data()[n];
  std::memcpy(offsets.data(), I.h_offsets.data(), (size_t(n) + 1) * 4);
  if (total > 0) {
    I.d_ids.get(total);
    I.h_ids.get(total);
    k_write_ids<<<(n + kThreads - 1) / kThreads, kThreads, 0, I.stream>>>(I.d_bits.data(), n, words, I.d_offsets.data(),
                                                                          I.d_ids.data());
    check(cudaGetLastError(), "hit lists");
    check(cudaMemcpyAsync(I.h_ids.data(), I.d_ids.data(), size_t(total) * 4, cudaMemcpyDeviceToHost, I.stream), "copy out");
    check(cudaStreamSynchronize(I.stream), "hit lists");
    ids.assign(I.h_ids.data(), I.h_ids.data() + total);
  }
  if (timing) {
    float k = 0;
    cudaEventElapsedTime(&k, I.ev0, I.ev1);
    timing->kernel_ms = k;
    timing->total_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  }
}

uint8_t* DeviceMatcher::pinned_input(size_t bytes) {
  check(cudaSetDevice(impl_->device), "cudaSetDevice");
  impl_->h_data.get(bytes);
  return impl_->h_data.data();
}

}  // namespace gpo::match::gpu
