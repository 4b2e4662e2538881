#include "backend/ops.h"

#include "kernels/aes/aes.h"
#include "kernels/sha256/sha256.h"
#include "kernels/zstd/zstd.h"

namespace gpo::backend {
namespace {

Status cpu_aes(Job& j) {
  aes::Job a;
  a.mode = j.op == OpId::aes256_ctr ? aes::Mode::ctr : aes::Mode::gcm;
  a.dir = j.op == OpId::aes256_gcm_decrypt ? aes::Dir::decrypt : aes::Dir::encrypt;
  a.key = j.key.data();
  a.iv = j.iv.data();
  a.aad = j.aad;
  a.in = j.in;
  a.out = j.out.data();
  a.tag = j.tag.data();
  switch (aes::cpu_run(a)) {
    case aes::Result::ok: return Status::ok;
    case aes::Result::auth_failed: return Status::auth_failed;
    default: return Status::invalid;
  }
}

// CTR bytes [lo, hi): the same cipher started lo / 16 blocks further on.
Status cpu_ctr_range(Job& j, uint64_t lo, std::span<const uint8_t> bytes, uint64_t*) {
  uint8_t ctr[aes::kCtrIvBytes];
  aes::ctr_add(j.iv.data(), lo / aes::kBlockBytes, ctr);
  aes::Job a;
  a.mode = aes::Mode::ctr;
  a.key = j.key.data();
  a.iv = ctr;
  a.in = bytes;
  a.out = j.out.data() + lo;
  return aes::cpu_run(a) == aes::Result::ok ? Status::ok : Status::invalid;
}

Status cpu_sha(Job& j) {
  sha256::cpu_digest(j.in, j.out.data());
  return Status::ok;
}

Status cpu_zstd(Job& j) {
  bool err = false;
  j.out_len = j.op == OpId::zstd_compress ? zstd::cpu_compress(j.in, j.out, j.level, &err)
                                          : zstd::cpu_decompress(j.in, j.out, &err);
  return err ? Status::invalid : Status::ok;
}

}  // namespace

const OpImpl aes256_gcm_encrypt_impl{.cpu = cpu_aes, .input_snapshot = false};
const OpImpl aes256_gcm_decrypt_impl{.cpu = cpu_aes, .input_snapshot = false};
// CTR splits at block boundaries (ctr_add). GCM does not: its tag is a GHASH
// over the whole message, and OpenSSL has no API to join partial GHASHes.
const OpImpl aes256_ctr_impl{
    .cpu = cpu_aes, .split_align = aes::kBlockBytes, .cpu_range = cpu_ctr_range, .input_snapshot = false};
const OpImpl sha256_impl{.gpu_sequential = true, .cpu = cpu_sha, .input_snapshot = false};
// Compress: on a CUDA backend, levels <= 3 are matched and entropy-coded on
// the GPU (kernels/zstd stages 1 + 2, blocks of one job in parallel), higher
// levels run libzstd on the CPU. Decompress: the CPU.
const OpImpl zstd_compress_impl{.cpu = cpu_zstd};
const OpImpl zstd_decompress_impl{.gpu_sequential = true, .cpu = cpu_zstd};

std::span<const OpInfo> ops() {
  static const OpInfo registry[] = {
#define GPO_OP_INFO_(NAME, id, ident, name, family, gpu) {ident##_impl, OpId::ident, name, Family::family, gpu != 0},
      GPO_OPS(GPO_OP_INFO_)
#undef GPO_OP_INFO_
  };
  return registry;
}

const OpInfo* find_op(OpId id) {
  for (const auto& o : ops())
    if (o.id == id) return &o;
  return nullptr;
}

const OpInfo* find_op(std::string_view name) {
  for (const auto& o : ops())
    if (o.name == name) return &o;
  return nullptr;
}

Status validate_job(const Job& j) {
  const JobSizes s{uint32_t(j.op), j.in.size(), j.out.size(), j.key.size(), j.iv.size(), j.aad.size(),
                   partially_overlap(j.out.data(), j.out.size(), j.in.data(), j.in.size())};
  return check_sizes(s) ? Status::invalid : Status::ok;
}

Status run_on_cpu(Job& job) {
  const OpInfo* op = find_op(job.op);
  if (!op) return job.status = Status::invalid;
  if (validate_job(job) != Status::ok) return job.status = Status::invalid;
  return job.status = op->cpu(job);
}

const char* status_name(Status s) {
  switch (s) {
    case Status::pending: return "pending";
    case Status::ok: return "ok";
    case Status::auth_failed: return "auth_failed";
    case Status::invalid: return "invalid";
    case Status::failed: return "failed";
  }
  return "?";
}

}  // namespace gpo::backend
