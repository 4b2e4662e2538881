// The gpuoffload OpenSSL 3 provider: what its algorithm files share
// (docs/provider.md).
//
// Each algorithm wraps the default provider's implementation of the same
// algorithm, taken from a private library context and called through its
// dispatch functions directly (not through EVP): a call that stays on the CPU
// costs one indirect call and a size check more than the default provider,
// and every parameter, error and corner case is the default provider's own.
// Only the bulk of large updates takes another path: through libgpuoffload's
// public API (gpo_submit / gpo_wait), to the agent.
#pragma once
#include <openssl/core.h>
#include <openssl/core_dispatch.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/params.h>
#include <openssl/proverr.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "gpuoffload.h"

namespace gpo::provider {

// One algorithm of the default provider: its provider context and dispatch
// functions, by OSSL_FUNC_* id (a cipher's and a digest's ids both fit).
struct Inner {
  void* provctx = nullptr;
  OSSL_FUNC_cipher_newctx_fn* newctx = nullptr;  // digest_newctx has the same shape
  OSSL_FUNC_cipher_freectx_fn* freectx = nullptr;
  OSSL_FUNC_cipher_dupctx_fn* dupctx = nullptr;
  OSSL_FUNC_cipher_encrypt_init_fn* einit = nullptr;
  OSSL_FUNC_cipher_decrypt_init_fn* dinit = nullptr;
  OSSL_FUNC_cipher_update_fn* update = nullptr;
  OSSL_FUNC_cipher_final_fn* final = nullptr;
  OSSL_FUNC_cipher_cipher_fn* cipher = nullptr;
  OSSL_FUNC_cipher_get_params_fn* get_params = nullptr;
  OSSL_FUNC_cipher_get_ctx_params_fn* get_ctx_params = nullptr;
  OSSL_FUNC_cipher_set_ctx_params_fn* set_ctx_params = nullptr;
  OSSL_FUNC_cipher_gettable_params_fn* gettable_params = nullptr;
  OSSL_FUNC_cipher_gettable_ctx_params_fn* gettable_ctx_params = nullptr;
  OSSL_FUNC_cipher_settable_ctx_params_fn* settable_ctx_params = nullptr;
  // Digests.
  OSSL_FUNC_digest_init_fn* dinit_digest = nullptr;
  OSSL_FUNC_digest_update_fn* dupdate = nullptr;
  OSSL_FUNC_digest_final_fn* dfinal = nullptr;
  OSSL_FUNC_digest_digest_fn* ddigest = nullptr;
  OSSL_FUNC_digest_get_params_fn* dget_params = nullptr;
  OSSL_FUNC_digest_get_ctx_params_fn* dget_ctx_params = nullptr;
  OSSL_FUNC_digest_set_ctx_params_fn* dset_ctx_params = nullptr;
  OSSL_FUNC_digest_gettable_params_fn* dgettable_params = nullptr;
  OSSL_FUNC_digest_gettable_ctx_params_fn* dgettable_ctx_params = nullptr;
  OSSL_FUNC_digest_settable_ctx_params_fn* dsettable_ctx_params = nullptr;
};

// The provider context: the private library context with the default
// provider loaded, and the algorithms taken from it.
struct ProvCtx {
  const OSSL_CORE_HANDLE* handle = nullptr;
  OSSL_LIB_CTX* libctx = nullptr;
  OSSL_PROVIDER* def = nullptr;
  Inner gcm, ctr, ecb, sha256;
};

// Our dispatch tables, filled at init with the functions the inner algorithm
// has (a function the default provider lacks is not offered either).
const OSSL_DISPATCH* gcm_dispatch(const Inner& in);
const OSSL_DISPATCH* ctr_dispatch(const Inner& in);
// counting: the process counts its calls (g_counting); SHA-256's contexts
// are the default provider's own either way, its updates counted when asked.
const OSSL_DISPATCH* sha256_dispatch(const Inner& in, bool counting);

// Inner functions without a context (get_params) are the same for every
// provider instance: a copy of the first instance's table (only its
// context-free functions may be called through these).
extern const Inner* g_gcm;
extern const Inner* g_ctr;
extern const Inner* g_sha256;

// --- when to offload -----------------------------------------------------------

// Below this many bytes an update never leaves the process, decided without
// asking anyone (GPO_OFFLOAD_MIN_BYTES, default 64 KiB): the only cost small
// updates pay.
extern size_t g_floor;

// Calls that come back into the provider from inside an offload (the
// library's own CPU fallback computes with EVP, which may land here when the
// application prefers this provider) stay on the CPU.
extern thread_local bool t_offloading;
struct Offloading {
  Offloading() { t_offloading = true; }
  ~Offloading() { t_offloading = false; }
  Offloading(const Offloading&) = delete;
  Offloading& operator=(const Offloading&) = delete;
};

// Where an update of n bytes goes: GPO_PATH_OFFLOAD or the CPU path's reason.
// lo/hi: the client library's current range for op (hi bounds one job).
int route(int op, size_t n, size_t* hi);

// Whether this process counts its calls (`exec`: GPO_STATS_DIR;
// lazy_client.cpp), read once into g_counting at the provider's start: a
// process that does not pays nothing per update and never loads
// libgpuoffload to count.
bool accounting();
extern bool g_counting;

// Per-context counts while g_counting, handed to gpo_account at final and
// free (not per update: small updates pay no shared-memory traffic).
struct Tally {
  // Zeroed only once something was added: a context made and freed for one
  // small message pays no more than the flag.
  bool any = false;
  uint64_t calls[GPO_PATH_COUNT], bytes[GPO_PATH_COUNT], ns[GPO_PATH_COUNT];
  void add(int path, uint64_t n, uint64_t t = 0) {
    if (!g_counting) return;
    if (!any) clear();
    calls[path]++;
    bytes[path] += n;
    ns[path] += t;
  }
  void flush(int op);

 private:
  void clear() {
    any = true;
    for (int p = 0; p < GPO_PATH_COUNT; ++p) calls[p] = bytes[p] = ns[p] = 0;
  }
};

inline uint64_t now_ns() {
  return uint64_t(std::chrono::duration_cast<std::chrono::nanoseconds>(
                      std::chrono::steady_clock::now().time_since_epoch())
                      .count());
}

// Calls inner get/set_ctx_params with the entries named `skip` left out (the
// caller answers those itself); return sizes are copied back.
int get_params_except(const Inner& in, void* ictx, OSSL_PARAM params[], const char* skip);

// A new default-provider context of alg, keyed (einit) with key and iv (may be
// null). Null on failure.
void* inner_keyed(const Inner& alg, const uint8_t* key, const uint8_t* iv, size_t ivlen);

}  // namespace gpo::provider
