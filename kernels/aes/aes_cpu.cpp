// The CPU reference and CPU backend path for AES-256-CTR/GCM: OpenSSL EVP.
//
// Per-job costs matter as much as the cipher at 4 KiB (a job is about 0.4 us
// of AES-GCM on one core): the ciphers are fetched from the provider once
// (EVP_aes_256_gcm() would fetch implicitly at every init), each thread keeps
// one context per mode, and a job under the same key as the thread's previous
// job of that mode only sets the new IV (no key schedule, no GHASH tables).
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include <cstring>

#include "kernels/aes/aes.h"

namespace gpo::aes {
namespace {

// Fetched once per process and never freed: threads of the process may still
// run jobs while it exits. Null if the provider has no such cipher.
const EVP_CIPHER* cipher(Mode m) {
  static const EVP_CIPHER* const gcm = EVP_CIPHER_fetch(nullptr, "AES-256-GCM", nullptr);
  static const EVP_CIPHER* const ctr = EVP_CIPHER_fetch(nullptr, "AES-256-CTR", nullptr);
  return m == Mode::gcm ? gcm : ctr;
}

// One context per mode and thread, with the key it was last initialised
// with. valid is cleared on any error, so the next job starts from scratch.
struct ThreadCtx {
  EVP_CIPHER_CTX* ctx = EVP_CIPHER_CTX_new();
  uint8_t key[kKeyBytes] = {};
  int enc = -1;
  bool valid = false;
  ~ThreadCtx() {
    OPENSSL_cleanse(key, sizeof key);
    EVP_CIPHER_CTX_free(ctx);
  }
  // Initialises for a job: the full init when the key or direction changed,
  // else the IV alone.
  bool init(Mode m, const uint8_t* k, const uint8_t* iv, int e) {
    if (!ctx) return false;
    const bool same = valid && enc == e && std::memcmp(key, k, kKeyBytes) == 0;
    valid = false;
    if (same ? EVP_CipherInit_ex2(ctx, nullptr, nullptr, iv, e, nullptr) != 1
             : EVP_CipherInit_ex2(ctx, cipher(m), k, iv, e, nullptr) != 1)
      return false;
    std::memcpy(key, k, kKeyBytes);
    enc = e;
    valid = true;
    return true;
  }
};

ThreadCtx& thread_ctx(Mode m) {
  thread_local ThreadCtx gcm, ctr;
  return m == Mode::gcm ? gcm : ctr;
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

Result run(ThreadCtx& t, const Job& job) {
  const int enc = job.dir == Dir::encrypt ? 1 : 0;
  // The GCM cipher's default IV length is 12 bytes (kGcmIvBytes): no ctrl needed.
  if (!t.init(job.mode, job.key, job.iv, enc)) return Result::invalid;
  EVP_CIPHER_CTX* c = t.ctx;
  if (job.mode == Mode::ctr) return update(c, job.out, job.in.data(), job.in.size()) ? Result::ok : Result::invalid;
  if (!job.aad.empty() && !update(c, nullptr, job.aad.data(), job.aad.size())) return Result::invalid;
  if (!update(c, job.out, job.in.data(), job.in.size())) return Result::invalid;
  // The job's tag as a parameter of the provider's context, read (decrypt)
  // or written (encrypt) in place: EVP_CIPHER_CTX_ctrl would build the same
  // parameter and look it up again (about 2% of a 4 KiB job). Spelled out
  // rather than OSSL_PARAM_construct_*(): those are libcrypto calls that
  // libgpuoffload does not bind lazily (lazy_crypto.cpp).
  OSSL_PARAM tag_param[] = {
      {OSSL_CIPHER_PARAM_AEAD_TAG, OSSL_PARAM_OCTET_STRING, job.tag, kTagBytes, OSSL_PARAM_UNMODIFIED}, OSSL_PARAM_END};
  if (!enc && EVP_CIPHER_CTX_set_params(c, tag_param) != 1) return Result::invalid;
  uint8_t tail[kBlockBytes];
  int outl = 0;
  if (EVP_CipherFinal_ex(c, tail, &outl) != 1) return enc ? Result::invalid : Result::auth_failed;
  if (enc && EVP_CIPHER_CTX_get_params(c, tag_param) != 1) return Result::invalid;
  return Result::ok;
}

}  // namespace

Result cpu_run(const Job& job) {
  if (!job.key || !job.iv || (job.in.size() && !job.out)) return Result::invalid;
  if (job.mode == Mode::gcm && !job.tag) return Result::invalid;
  if (!cipher(job.mode)) return Result::invalid;
  ThreadCtx& t = thread_ctx(job.mode);
  const Result r = run(t, job);
  // A failed tag check leaves the context usable; anything else may not have.
  if (r == Result::invalid) t.valid = false;
  // Unauthenticated plaintext is not an answer: callers get zeros, as from
  // the agent (the library clears the caller's buffer on that path too).
  if (r == Result::auth_failed && !job.in.empty()) std::memset(job.out, 0, job.in.size());
  return r;
}

void ctr_add(const uint8_t iv[kCtrIvBytes], uint64_t blocks, uint8_t out[kCtrIvBytes]) {
  unsigned carry = 0;
  for (int i = int(kCtrIvBytes) - 1; i >= 0; --i) {
    const unsigned add = i >= int(kCtrIvBytes) - 8 ? unsigned(blocks >> (8 * (kCtrIvBytes - 1 - size_t(i)))) & 0xff : 0;
    const unsigned s = unsigned(iv[i]) + add + carry;
    out[i] = uint8_t(s);
    carry = s >> 8;
  }
}

}  // namespace gpo::aes
