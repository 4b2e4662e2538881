// The CPU reference and CPU backend path for SHA-256: OpenSSL.
#include <openssl/evp.h>

#include <memory>
#include <stdexcept>

#include "kernels/sha256/sha256.h"

namespace gpo::sha256 {

void cpu_digest(std::span<const uint8_t> msg, uint8_t out[kDigestBytes]) {
  // The digest is fetched from the provider once (EVP_sha256() and EVP_Digest
  // fetch implicitly at every init), never freed (threads may still hash while
  // the process exits), and each thread keeps one context.
  struct CtxFree {
    void operator()(EVP_MD_CTX* c) const { EVP_MD_CTX_free(c); }
  };
  static const EVP_MD* const md = EVP_MD_fetch(nullptr, "SHA256", nullptr);
  thread_local std::unique_ptr<EVP_MD_CTX, CtxFree> ctx{EVP_MD_CTX_new()};
  unsigned int n = 0;
  if (!md || !ctx || EVP_DigestInit_ex2(ctx.get(), md, nullptr) != 1 ||
      (!msg.empty() && EVP_DigestUpdate(ctx.get(), msg.data(), msg.size()) != 1) ||
      EVP_DigestFinal_ex(ctx.get(), out, &n) != 1 || n != kDigestBytes)
    throw std::runtime_error("OpenSSL SHA-256 failed");
}

}  // namespace gpo::sha256
