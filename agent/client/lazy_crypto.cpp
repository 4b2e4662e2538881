// libcrypto, loaded at the first call that needs it rather than at start.
//
// libgpuoffload computes crypto jobs in the process (no agent, a job the
// agent refused, a size the plan keeps here) with the kernels' CPU
// references, which call OpenSSL's EVP API. Linked against libcrypto, every
// process the shim is preloaded into would load it at start: about 0.6 ms
// on a small machine, in programs (zstd, tar, mksquashfs) that never make a
// crypto call. These definitions stand in for the few EVP functions the
// references use; the first one called opens libcrypto.so.3 (the program's
// own copy when it has one: dlopen finds a loaded library by its soname).
// The version script keeps them local, so they never interpose the
// program's OpenSSL. Without libcrypto the calls fail as OpenSSL's do on
// error (null, 0), and the references report an invalid job.
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <cstring>

#include "lazy_lib.h"

namespace {

constexpr char kLibcrypto[] = "libcrypto.so.3";
void* libcrypto() { return gpo::lazy::library<kLibcrypto>(); }

}  // namespace

// The frees return nothing when libcrypto is missing: a context that was
// never made is all there is to free then.
GPO_LAZY(libcrypto, EVP_CIPHER*, EVP_CIPHER_fetch, (OSSL_LIB_CTX * lib, const char* alg, const char* props),
         (lib, alg, props), nullptr)
GPO_LAZY(libcrypto, EVP_CIPHER_CTX*, EVP_CIPHER_CTX_new, (void), (), nullptr)
GPO_LAZY(libcrypto, void, EVP_CIPHER_CTX_free, (EVP_CIPHER_CTX * c), (c), )
GPO_LAZY(libcrypto, int, EVP_CIPHER_CTX_get_params, (EVP_CIPHER_CTX * c, OSSL_PARAM params[]), (c, params), 0)
GPO_LAZY(libcrypto, int, EVP_CIPHER_CTX_set_params, (EVP_CIPHER_CTX * c, const OSSL_PARAM params[]), (c, params), 0)
GPO_LAZY(libcrypto, int, EVP_CipherInit_ex2,
         (EVP_CIPHER_CTX * c, const EVP_CIPHER* cipher, const unsigned char* key, const unsigned char* iv, int enc,
          const OSSL_PARAM params[]),
         (c, cipher, key, iv, enc, params), 0)
GPO_LAZY(libcrypto, int, EVP_CipherUpdate,
         (EVP_CIPHER_CTX * c, unsigned char* out, int* outl, const unsigned char* in, int inl), (c, out, outl, in, inl),
         0)
GPO_LAZY(libcrypto, int, EVP_CipherFinal_ex, (EVP_CIPHER_CTX * c, unsigned char* out, int* outl), (c, out, outl), 0)
GPO_LAZY(libcrypto, EVP_MD*, EVP_MD_fetch, (OSSL_LIB_CTX * lib, const char* alg, const char* props),
         (lib, alg, props), nullptr)
GPO_LAZY(libcrypto, EVP_MD_CTX*, EVP_MD_CTX_new, (void), (), nullptr)
GPO_LAZY(libcrypto, void, EVP_MD_CTX_free, (EVP_MD_CTX * c), (c), )
GPO_LAZY(libcrypto, int, EVP_DigestInit_ex2, (EVP_MD_CTX * c, const EVP_MD* md, const OSSL_PARAM params[]),
         (c, md, params), 0)
GPO_LAZY(libcrypto, int, EVP_DigestUpdate, (EVP_MD_CTX * c, const void* d, size_t n), (c, d, n), 0)
GPO_LAZY(libcrypto, int, EVP_DigestFinal_ex, (EVP_MD_CTX * c, unsigned char* md, unsigned int* n), (c, md, n), 0)

// Key bytes are wiped with or without libcrypto.
extern "C" void OPENSSL_cleanse(void* p, size_t n) {
  static auto* const f = gpo::lazy::resolve<decltype(OPENSSL_cleanse)>(libcrypto(), "OPENSSL_cleanse");
  if (f) f(p, n);
  else explicit_bzero(p, n);
}
