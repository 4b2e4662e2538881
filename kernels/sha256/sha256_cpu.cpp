// The CPU reference and CPU backend path for SHA-256: OpenSSL.
#include <openssl/evp.h>

#include <memory>
#include <stdexcept>

#include "sha256/sha256.h"

namespace gpo::sha256 {

void cpu_digest(std::span<const uint8_t> msg, uint8_t out[kDigestBytes]) {
  // EVP_Digest fetches the implementation per call; one context per thread
  // with the method fetched once avoids that cost on 4 KiB messages.
  struct Free {
    void operator()(EVP_MD_CTX* c) const { EVP_MD_CTX_free(c); }
  };
  thread_local std::unique_ptr<EVP_MD_CTX, Free> ctx{EVP_MD_CTX_new()};
  static const EVP_MD* md = EVP_sha256();
  unsigned int n = 0;
  if (!ctx || EVP_DigestInit_ex(ctx.get(), md, nullptr) != 1 ||
      (!msg.empty() && EVP_DigestUpdate(ctx.get(), msg.data(), msg.size()) != 1) ||
      EVP_DigestFinal_ex(ctx.get(), out, &n) != 1 || n != kDigestBytes)
    throw std::runtime_error("OpenSSL SHA-256 failed");
}

}  // namespace gpo::sha256
