// Slab layouts and job descriptors from a hostile client: whatever
// check_layout() and check_job() (agent/ipc/slab_validate.h, the agent's and
// the client library's one definition) accept must be safe to run. An
// accepted job is built as the agent builds it (to_backend_job) over a heap
// slab of exactly the registered size and run on the CPU backend, so ASan
// sees any byte read or written outside the slab; the reported output length
// must fit the output.
//
// Input: FuzzHeader (layout, doorbell), then the 128-byte descriptor, then
// the slab's bytes (repeated to fill it). Jobs run on the calling thread.
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "backend/cpu_backend.h"
#include "ipc/slab_job.h"
#include "ipc/slab_validate.h"

namespace {

struct FuzzHeader {
  uint32_t slab_size;  // 4 KiB + this modulo 60 KiB
  uint32_t njobs;
  uint32_t job_off;
  uint32_t data_off;
  uint32_t ring_op;    // the doorbell; ring_same != 0: the descriptor's own op and length
  uint32_t ring_same;
  uint64_t ring_len;
};
static_assert(sizeof(FuzzHeader) == 32);

// The CPU backend's job path (private input included) on the calling thread:
// one job of at most 64 KiB is one chunk, which run_jobs() runs itself.
gpo::backend::CpuBackend& cpu() {
  static gpo::backend::CpuBackend be(1);
  return be;
}

}  // namespace

// OpenSSL's and libzstd's per-thread state comes into being at a thread's
// first job: do that here, once for every op, so that the leak check libFuzzer runs after
// an input does not take it for that input's leak.
extern "C" int LLVMFuzzerInitialize(int*, char***) {
  uint8_t key[32] = {}, iv[16] = {}, in[64] = {}, out[4096];
  for (gpo::backend::OpId op : gpo::backend::kOpIds) {
    const gpo::backend::OpParams params = gpo::backend::op_params(op);
    gpo::backend::Job j;
    j.op = op;
    j.in = in;
    j.out = {out, size_t(gpo::backend::fixed_out_bytes(op, sizeof in).value_or(sizeof out))};
    j.key = {key, params.key_bytes};
    j.iv = {iv, params.iv_bytes};
    gpo::backend::Job* p = &j;
    cpu().run_jobs({&p, 1});
  }
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < sizeof(FuzzHeader) + sizeof(gpo_job)) return 0;
  FuzzHeader h;
  gpo_job d;
  std::memcpy(&h, data, sizeof h);
  std::memcpy(&d, data + sizeof h, sizeof d);
  const uint8_t* fill = data + sizeof h + sizeof d;
  const size_t fill_len = size - sizeof h - sizeof d;

  gpo::ipc::SlabLayout l{4096 + h.slab_size % (60 << 10), h.njobs, h.job_off, h.data_off};
  if (gpo::ipc::check_layout(l)) return 0;
  // What an accepted layout promises.
  if (l.job_off < sizeof(gpo_slab_header) || l.job_off + uint64_t(l.njobs) * sizeof(gpo_job) > l.data_off ||
      l.data_off > l.size)
    std::abort();
  const uint32_t op = h.ring_same ? d.op : h.ring_op;
  const uint64_t len = h.ring_same ? d.in_len : h.ring_len;
  if (gpo::ipc::check_job(l, d, op, len, gpo::ipc::JobLimits{})) return 0;
  // What an accepted descriptor promises.
  auto inside = [&](uint64_t off, uint64_t n) { return off >= l.data_off && off <= l.size && n <= l.size - off; };
  if (!inside(d.in_off, d.in_len) || !inside(d.out_off, d.out_cap) || !inside(d.aad_off, d.aad_len)) std::abort();

  // The slab: exactly its size on the heap, so ASan sees a byte past it.
  std::unique_ptr<uint8_t[]> slab(new uint8_t[l.size]);
  for (uint64_t i = 0; i < l.size; ++i) slab[i] = fill_len ? fill[i % fill_len] : uint8_t(i);
  gpo::backend::Job j = gpo::ipc::to_backend_job(slab.get(), d);
  gpo::backend::Job* p = &j;
  cpu().run_jobs({&p, 1});
  if (j.status == gpo::backend::Status::pending) std::abort();  // every job is answered
  if (j.status == gpo::backend::Status::ok && gpo::ipc::reported_out_len(j) > d.out_cap &&
      j.op != gpo::backend::OpId::aes256_gcm_encrypt && j.op != gpo::backend::OpId::aes256_gcm_decrypt &&
      j.op != gpo::backend::OpId::aes256_ctr && j.op != gpo::backend::OpId::memcpy)
    std::abort();
  return 0;
}
