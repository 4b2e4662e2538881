// gpuoffload.so, an OpenSSL 3 provider: AES-256-GCM, AES-256-CTR and SHA-256
// with the default provider's results, large updates through the agent
// (docs/provider.md). This file: the entry point, the private library
// context that holds the default provider, the algorithm table, and the
// helpers the algorithm files share.
#include <openssl/crypto.h>
#include <openssl/provider.h>
#include <strings.h>

#include <cstdlib>
#include <cstring>
#include <string>

#include "provider/provider.h"

namespace gpo::provider {

const Inner* g_gcm = nullptr;
const Inner* g_ctr = nullptr;
const Inner* g_sha256 = nullptr;
size_t g_floor = 65536;
bool g_counting = false;
thread_local bool t_offloading = false;

namespace {

bool name_matches(const char* names, const char* want) {
  const size_t n = std::strlen(want);
  for (const char* p = names; *p;) {
    const char* end = std::strchr(p, ':');
    const size_t len = end ? size_t(end - p) : std::strlen(p);
    if (len == n && strncasecmp(p, want, n) == 0) return true;
    if (!end) break;
    p = end + 1;
  }
  return false;
}

// Takes the default provider's implementation of `name` for operation `op`.
bool load_inner(OSSL_PROVIDER* def, int op, const char* name, Inner& in) {
  int no_cache = 0;
  const OSSL_ALGORITHM* algs = OSSL_PROVIDER_query_operation(def, op, &no_cache);
  const OSSL_DISPATCH* d = nullptr;
  for (const OSSL_ALGORITHM* a = algs; a && a->algorithm_names; ++a)
    if (name_matches(a->algorithm_names, name)) {
      d = a->implementation;
      break;
    }
  if (!d) return false;
  in.provctx = OSSL_PROVIDER_get0_provider_ctx(def);
  for (; d->function_id; ++d) {
    auto f = d->function;
    if (op == OSSL_OP_CIPHER) {
      switch (d->function_id) {
        case OSSL_FUNC_CIPHER_NEWCTX: in.newctx = OSSL_FUNC_cipher_newctx(d); break;
        case OSSL_FUNC_CIPHER_FREECTX: in.freectx = OSSL_FUNC_cipher_freectx(d); break;
        case OSSL_FUNC_CIPHER_DUPCTX: in.dupctx = OSSL_FUNC_cipher_dupctx(d); break;
        case OSSL_FUNC_CIPHER_ENCRYPT_INIT: in.einit = OSSL_FUNC_cipher_encrypt_init(d); break;
        case OSSL_FUNC_CIPHER_DECRYPT_INIT: in.dinit = OSSL_FUNC_cipher_decrypt_init(d); break;
        case OSSL_FUNC_CIPHER_UPDATE: in.update = OSSL_FUNC_cipher_update(d); break;
        case OSSL_FUNC_CIPHER_FINAL: in.final = OSSL_FUNC_cipher_final(d); break;
        case OSSL_FUNC_CIPHER_CIPHER: in.cipher = OSSL_FUNC_cipher_cipher(d); break;
        case OSSL_FUNC_CIPHER_GET_PARAMS: in.get_params = OSSL_FUNC_cipher_get_params(d); break;
        case OSSL_FUNC_CIPHER_GET_CTX_PARAMS: in.get_ctx_params = OSSL_FUNC_cipher_get_ctx_params(d); break;
        case OSSL_FUNC_CIPHER_SET_CTX_PARAMS: in.set_ctx_params = OSSL_FUNC_cipher_set_ctx_params(d); break;
        case OSSL_FUNC_CIPHER_GETTABLE_PARAMS: in.gettable_params = OSSL_FUNC_cipher_gettable_params(d); break;
        case OSSL_FUNC_CIPHER_GETTABLE_CTX_PARAMS:
          in.gettable_ctx_params = OSSL_FUNC_cipher_gettable_ctx_params(d);
          break;
        case OSSL_FUNC_CIPHER_SETTABLE_CTX_PARAMS:
          in.settable_ctx_params = OSSL_FUNC_cipher_settable_ctx_params(d);
          break;
      }
    } else {
      switch (d->function_id) {
        case OSSL_FUNC_DIGEST_NEWCTX: in.newctx = reinterpret_cast<OSSL_FUNC_cipher_newctx_fn*>(f); break;
        case OSSL_FUNC_DIGEST_FREECTX: in.freectx = reinterpret_cast<OSSL_FUNC_cipher_freectx_fn*>(f); break;
        case OSSL_FUNC_DIGEST_DUPCTX: in.dupctx = reinterpret_cast<OSSL_FUNC_cipher_dupctx_fn*>(f); break;
        case OSSL_FUNC_DIGEST_INIT: in.dinit_digest = OSSL_FUNC_digest_init(d); break;
        case OSSL_FUNC_DIGEST_UPDATE: in.dupdate = OSSL_FUNC_digest_update(d); break;
        case OSSL_FUNC_DIGEST_FINAL: in.dfinal = OSSL_FUNC_digest_final(d); break;
        case OSSL_FUNC_DIGEST_DIGEST: in.ddigest = OSSL_FUNC_digest_digest(d); break;
        case OSSL_FUNC_DIGEST_GET_PARAMS: in.dget_params = OSSL_FUNC_digest_get_params(d); break;
        case OSSL_FUNC_DIGEST_GET_CTX_PARAMS: in.dget_ctx_params = OSSL_FUNC_digest_get_ctx_params(d); break;
        case OSSL_FUNC_DIGEST_SET_CTX_PARAMS: in.dset_ctx_params = OSSL_FUNC_digest_set_ctx_params(d); break;
        case OSSL_FUNC_DIGEST_GETTABLE_PARAMS: in.dgettable_params = OSSL_FUNC_digest_gettable_params(d); break;
        case OSSL_FUNC_DIGEST_GETTABLE_CTX_PARAMS:
          in.dgettable_ctx_params = OSSL_FUNC_digest_gettable_ctx_params(d);
          break;
        case OSSL_FUNC_DIGEST_SETTABLE_CTX_PARAMS:
          in.dsettable_ctx_params = OSSL_FUNC_digest_settable_ctx_params(d);
          break;
      }
    }
  }
  OSSL_PROVIDER_unquery_operation(def, op, algs);
  return in.newctx && in.freectx;
}

// --- the provider's own functions ---------------------------------------------

const OSSL_PARAM kProvParams[] = {OSSL_PARAM_utf8_ptr(OSSL_PROV_PARAM_NAME, nullptr, 0),
                                  OSSL_PARAM_utf8_ptr(OSSL_PROV_PARAM_VERSION, nullptr, 0),
                                  OSSL_PARAM_utf8_ptr(OSSL_PROV_PARAM_BUILDINFO, nullptr, 0),
                                  OSSL_PARAM_int(OSSL_PROV_PARAM_STATUS, nullptr), OSSL_PARAM_END};

const OSSL_PARAM* prov_gettable_params(void*) { return kProvParams; }

int prov_get_params(void*, OSSL_PARAM params[]) {
  OSSL_PARAM* p;
  if ((p = OSSL_PARAM_locate(params, OSSL_PROV_PARAM_NAME)) && !OSSL_PARAM_set_utf8_ptr(p, "gpuoffload")) return 0;
  if ((p = OSSL_PARAM_locate(params, OSSL_PROV_PARAM_VERSION)) && !OSSL_PARAM_set_utf8_ptr(p, GPO_PROVIDER_VERSION))
    return 0;
  if ((p = OSSL_PARAM_locate(params, OSSL_PROV_PARAM_BUILDINFO)) &&
      !OSSL_PARAM_set_utf8_ptr(p, "gpuoffload " GPO_PROVIDER_VERSION " (wraps the default provider; offload via libgpuoffload)"))
    return 0;
  if ((p = OSSL_PARAM_locate(params, OSSL_PROV_PARAM_STATUS)) && !OSSL_PARAM_set_int(p, 1)) return 0;
  return 1;
}

OSSL_ALGORITHM g_ciphers[3];
OSSL_ALGORITHM g_digests[2];

const OSSL_ALGORITHM* prov_query(void*, int op, int* no_cache) {
  *no_cache = 0;
  if (op == OSSL_OP_CIPHER) return g_ciphers;
  if (op == OSSL_OP_DIGEST) return g_digests;
  return nullptr;
}

void prov_teardown(void* vctx) {
  auto* pc = static_cast<ProvCtx*>(vctx);
  // g_* are copies (their context-free functions are libcrypto's code), so every
  // instance, the first one too, is freed whole: loading and unloading the
  // provider again and again leaks nothing.
  if (pc->def) OSSL_PROVIDER_unload(pc->def);
  if (pc->libctx) OSSL_LIB_CTX_free(pc->libctx);
  delete pc;
}

const OSSL_DISPATCH kProvDispatch[] = {
    {OSSL_FUNC_PROVIDER_TEARDOWN, reinterpret_cast<void (*)()>(prov_teardown)},
    {OSSL_FUNC_PROVIDER_GETTABLE_PARAMS, reinterpret_cast<void (*)()>(prov_gettable_params)},
    {OSSL_FUNC_PROVIDER_GET_PARAMS, reinterpret_cast<void (*)()>(prov_get_params)},
    {OSSL_FUNC_PROVIDER_QUERY_OPERATION, reinterpret_cast<void (*)()>(prov_query)},
    {0, nullptr}};

size_t env_size(const char* name, size_t def) {
  const char* v = secure_getenv(name);  // a setuid program takes no threshold from its caller
  if (!v || !*v) return def;
  char* end = nullptr;
  unsigned long long x = strtoull(v, &end, 10);
  return end && !*end ? size_t(x) : def;
}

}  // namespace

// --- shared helpers --------------------------------------------------------------

int route(int op, size_t n, size_t* hi) {
  if (n < g_floor) return GPO_PATH_CPU_SMALL;
  size_t lo = 0, top = 0;
  gpo_offload_range(op, &lo, &top);
  if (lo == SIZE_MAX) return gpo_offload_reason(op);
  if (n < lo) return GPO_PATH_CPU_SMALL;
  if (hi) *hi = top;
  return GPO_PATH_OFFLOAD;
}

void Tally::flush(int op) {
  if (!any) return;  // nothing added, or the process does not count (g_counting)
  for (int p = 0; p < GPO_PATH_COUNT; ++p)
    if (calls[p]) gpo_account(op, p, calls[p], bytes[p], ns[p]);
  any = false;
}

int get_params_except(const Inner& in, void* ictx, OSSL_PARAM params[], const char* skip) {
  std::vector<OSSL_PARAM> rest;
  std::vector<OSSL_PARAM*> orig;
  for (OSSL_PARAM* p = params; p && p->key; ++p)
    if (std::strcmp(p->key, skip) != 0) {
      rest.push_back(*p);
      orig.push_back(p);
    }
  if (rest.empty()) return 1;
  rest.push_back(OSSL_PARAM_construct_end());
  int r = in.get_ctx_params(ictx, rest.data());
  for (size_t i = 0; i < orig.size(); ++i) orig[i]->return_size = rest[i].return_size;
  return r;
}

void* inner_keyed(const Inner& alg, const uint8_t* key, const uint8_t* iv, size_t ivlen) {
  void* c = alg.newctx(alg.provctx);
  if (!c) return nullptr;
  if (!alg.einit(c, key, 32, iv, ivlen, nullptr)) {
    alg.freectx(c);
    return nullptr;
  }
  return c;
}

}  // namespace gpo::provider

using namespace gpo::provider;

extern "C" __attribute__((visibility("default"))) int OSSL_provider_init(const OSSL_CORE_HANDLE* handle,
                                                                         const OSSL_DISPATCH*,
                                                                         const OSSL_DISPATCH** out, void** provctx) {
  auto* pc = new ProvCtx();
  pc->handle = handle;
  // A library context of our own with the default provider in it: the
  // application may have loaded only this provider (`-provider gpuoffload`),
  // and what we wrap must never be ourselves.
  pc->libctx = OSSL_LIB_CTX_new();
  pc->def = pc->libctx ? OSSL_PROVIDER_load(pc->libctx, "default") : nullptr;
  if (!pc->def || !load_inner(pc->def, OSSL_OP_CIPHER, "AES-256-GCM", pc->gcm) ||
      !load_inner(pc->def, OSSL_OP_CIPHER, "AES-256-CTR", pc->ctr) ||
      !load_inner(pc->def, OSSL_OP_CIPHER, "AES-256-ECB", pc->ecb) ||
      !load_inner(pc->def, OSSL_OP_DIGEST, "SHA2-256", pc->sha256)) {
    if (pc->def) OSSL_PROVIDER_unload(pc->def);
    if (pc->libctx) OSSL_LIB_CTX_free(pc->libctx);
    delete pc;
    return 0;
  }
  if (!g_gcm) {
    // Copies, not pointers into pc: only their context-free get_params are used
    // through g_*, and they must outlive this instance.
    static Inner gcm_fns, ctr_fns, sha256_fns;
    gcm_fns = pc->gcm, ctr_fns = pc->ctr, sha256_fns = pc->sha256;
    g_gcm = &gcm_fns;
    g_ctr = &ctr_fns;
    g_sha256 = &sha256_fns;
    g_counting = accounting();
    g_floor = env_size("GPO_OFFLOAD_MIN_BYTES", 65536);
    if (g_floor == 0) g_floor = 1;
    // Same names as the default provider, so EVP_aes_256_gcm() and friends
    // (implicit fetches by short name) find these too.
    g_ciphers[0] = {"AES-256-GCM:id-aes256-GCM:2.16.840.1.101.3.4.1.46", "provider=gpuoffload",
                    gcm_dispatch(pc->gcm), "AES-256-GCM, large updates offloaded"};
    g_ciphers[1] = {"AES-256-CTR", "provider=gpuoffload", ctr_dispatch(pc->ctr), "AES-256-CTR, large updates offloaded"};
    g_ciphers[2] = {nullptr, nullptr, nullptr, nullptr};
    g_digests[0] = {"SHA2-256:SHA-256:SHA256:2.16.840.1.101.3.4.2.1", "provider=gpuoffload",
                    sha256_dispatch(pc->sha256, g_counting), "SHA-256 (a stream is sequential: the CPU's)"};
    g_digests[1] = {nullptr, nullptr, nullptr, nullptr};
  }
  *out = kProvDispatch;
  *provctx = pc;
  return 1;
}
