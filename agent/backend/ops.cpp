#include "backend/ops.h"

#include <vector>

#include "kernels/aes/aes.h"
#include "kernels/sha256/sha256.h"
#include "kernels/zstd/zstd.h"

namespace gpo::backend {
namespace {

std::vector<OpInfo>& table() {
  static std::vector<OpInfo> t;
  return t;
}

Status validate_aes(const Job& j) {
  const bool gcm = j.op != OpId::aes256_ctr;
  if (j.key.size() != aes::kKeyBytes) return Status::invalid;
  if (j.iv.size() != (gcm ? aes::kGcmIvBytes : aes::kCtrIvBytes)) return Status::invalid;
  if (j.out.size() != j.in.size()) return Status::invalid;
  if (!gcm && !j.aad.empty()) return Status::invalid;
  if (j.aad.size() > 0xffffffffu) return Status::invalid;
  return Status::ok;
}

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

Status validate_sha(const Job& j) {
  return j.out.size() == sha256::kDigestBytes ? Status::ok : Status::invalid;
}

Status cpu_sha(Job& j) {
  sha256::cpu_digest(j.in, j.out.data());
  return Status::ok;
}

Status validate_zstd(const Job& j) {
  return j.key.empty() && j.iv.empty() && j.aad.empty() ? Status::ok : Status::invalid;
}

Status cpu_zstd(Job& j) {
  bool err = false;
  j.out_len = j.op == OpId::zstd_compress ? zstd::cpu_compress(j.in, j.out, j.level, &err)
                                          : zstd::cpu_decompress(j.in, j.out, &err);
  return err ? Status::invalid : Status::ok;
}

}  // namespace

void register_op(OpInfo info) { table().push_back(info); }

void register_crypto_ops() {
  register_op({OpId::aes256_gcm_encrypt, "aes-256-gcm-encrypt", Family::aes, true, false, validate_aes, cpu_aes});
  register_op({OpId::aes256_gcm_decrypt, "aes-256-gcm-decrypt", Family::aes, true, false, validate_aes, cpu_aes});
  // CTR splits at block boundaries (ctr_add). GCM does not: its tag is a GHASH
  // over the whole message, and OpenSSL has no API to join partial GHASHes.
  register_op({OpId::aes256_ctr, "aes-256-ctr", Family::aes, true, false, validate_aes, cpu_aes, aes::kBlockBytes,
               cpu_ctr_range});
  register_op({OpId::sha256, "sha256", Family::sha256, true, true, validate_sha, cpu_sha});
}

void register_zstd_ops() {
  // Compress: on a CUDA backend, levels <= 3 are matched and entropy-coded on
  // the GPU (kernels/zstd stages 1 + 2, blocks of one job in parallel), higher
  // levels run libzstd on the CPU. Decompress: the CPU.
  register_op({OpId::zstd_compress, "zstd-compress", Family::zstd, true, false, validate_zstd, cpu_zstd});
  register_op({OpId::zstd_decompress, "zstd-decompress", Family::zstd, false, true, validate_zstd, cpu_zstd});
}

std::span<const OpInfo> ops() {
  static const bool once = [] {
    register_crypto_ops();
    register_zstd_ops();
    register_tier2_ops();
    // Later op families register here.
    return true;
  }();
  (void)once;
  return table();
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

Status run_on_cpu(Job& job) {
  const OpInfo* op = find_op(job.op);
  if (!op) return job.status = Status::invalid;
  if (op->validate(job) != Status::ok) return job.status = Status::invalid;
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
