// The CPU reference and CPU backend path for AES-256-CTR/GCM: OpenSSL EVP.
#include <openssl/evp.h>

#include <climits>
#include <cstring>
#include <memory>

#include "aes/aes.h"

namespace gpo::aes {
namespace {

struct CtxFree {
  void operator()(EVP_CIPHER_CTX* c) const { EVP_CIPHER_CTX_free(c); }
};
using Ctx = std::unique_ptr<EVP_CIPHER_CTX, CtxFree>;

// One context per thread, reset per job: allocation per job costs more than
// AES-GCM of a 4 KiB job on one core.
EVP_CIPHER_CTX* thread_ctx() {
  thread_local Ctx ctx{EVP_CIPHER_CTX_new()};
  EVP_CIPHER_CTX_reset(ctx.get());
  return ctx.get();
}

// EVP takes int lengths: feed large buffers in pieces.
bool update(EVP_CIPHER_CTX* c, uint8_t* out, const uint8_t* in, size_t len) {
  constexpr size_t kStep = size_t{1} << 30;
  while (len > 0) {
    int n = static_cast<int>(len < kStep ? len : kStep);
    int outl = 0;
    if (EVP_CipherUpdate(c, out, &outl, in, n) != 1) return false;
    if (out) out += outl;
    in += n;
    len -= static_cast<size_t>(n);
  }
  return true;
}

}  // namespace

Result cpu_run(const Job& job) {
  if (!job.key || !job.iv || (job.in.size() && !job.out)) return Result::invalid;
  EVP_CIPHER_CTX* c = thread_ctx();
  const int enc = job.dir == Dir::encrypt ? 1 : 0;
  if (job.mode == Mode::ctr) {
    if (EVP_CipherInit_ex(c, EVP_aes_256_ctr(), nullptr, job.key, job.iv, enc) != 1) return Result::invalid;
    if (!update(c, job.out, job.in.data(), job.in.size())) return Result::invalid;
    return Result::ok;
  }
  if (!job.tag) return Result::invalid;
  if (EVP_CipherInit_ex(c, EVP_aes_256_gcm(), nullptr, nullptr, nullptr, enc) != 1) return Result::invalid;
  if (EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_IVLEN, static_cast<int>(kGcmIvBytes), nullptr) != 1) return Result::invalid;
  if (EVP_CipherInit_ex(c, nullptr, nullptr, job.key, job.iv, enc) != 1) return Result::invalid;
  if (!job.aad.empty() && !update(c, nullptr, job.aad.data(), job.aad.size())) return Result::invalid;
  if (!update(c, job.out, job.in.data(), job.in.size())) return Result::invalid;
  if (!enc) {
    // EVP wants a non-const tag buffer even when it only reads it.
    uint8_t tag[kTagBytes];
    std::memcpy(tag, job.tag, kTagBytes);
    if (EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, static_cast<int>(kTagBytes), tag) != 1) return Result::invalid;
  }
  uint8_t tail[kBlockBytes];
  int outl = 0;
  if (EVP_CipherFinal_ex(c, tail, &outl) != 1) return enc ? Result::invalid : Result::auth_failed;
  if (enc && EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, static_cast<int>(kTagBytes), job.tag) != 1)
    return Result::invalid;
  return Result::ok;
}

}  // namespace gpo::aes
