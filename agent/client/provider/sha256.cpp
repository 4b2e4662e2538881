// SHA-256: the default provider's, always. A digest context is one stream
// and each block depends on the one before, so no update of it can be sent
// anywhere to run faster (the GPU wins on batches of independent messages,
// which a context never holds). It is here so that `openssl.cnf` can prefer
// this provider without splitting a program's algorithms between two, and
// so that `gpuoffload-agent exec` counts its calls (docs/provider.md).
//
// Its contexts are the default provider's own: the table hands out the
// default's functions, and only those that receive our provider context
// (newctx, the one-shot digest, the parameter tables) pass through a line of
// ours, as does each update while the process counts its calls. No wrapper
// is allocated per context, so a small digest costs what it costs there.
#include "provider/provider.h"

namespace gpo::provider {
namespace {

int path_of(size_t n) { return n < g_floor ? GPO_PATH_CPU_SMALL : GPO_PATH_CPU_STREAM; }

void* sha_newctx(void* provctx) {
  auto* pc = static_cast<ProvCtx*>(provctx);
  return pc->sha256.newctx(pc->sha256.provctx);
}

// Counting: each update straight into libgpuoffload's per-thread counts (no
// tally held by a context that may be freed without a final).
int sha_update_counted(void* vctx, const unsigned char* in, size_t inl) {
  gpo_account(GPO_SHA256, path_of(inl), 1, inl, 0);
  return g_sha256->dupdate(vctx, in, inl);
}

int sha_digest(void* provctx, const unsigned char* in, size_t inl, unsigned char* out, size_t* outl, size_t outsz) {
  auto* pc = static_cast<ProvCtx*>(provctx);
  if (g_counting) gpo_account(GPO_SHA256, path_of(inl), 1, inl, 0);
  return pc->sha256.ddigest(pc->sha256.provctx, in, inl, out, outl, outsz);
}

int sha_get_params(OSSL_PARAM params[]) { return g_sha256->dget_params(params); }
const OSSL_PARAM* sha_gettable_params(void* provctx) {
  auto* pc = static_cast<ProvCtx*>(provctx);
  return pc->sha256.dgettable_params(pc->sha256.provctx);
}
const OSSL_PARAM* sha_gettable_ctx_params(void* vctx, void* provctx) {
  auto* pc = static_cast<ProvCtx*>(provctx);
  return pc->sha256.dgettable_ctx_params(vctx, pc->sha256.provctx);
}
const OSSL_PARAM* sha_settable_ctx_params(void* vctx, void* provctx) {
  auto* pc = static_cast<ProvCtx*>(provctx);
  return pc->sha256.dsettable_ctx_params(vctx, pc->sha256.provctx);
}

template <typename F>
OSSL_DISPATCH entry(int id, F* f) {
  return {id, reinterpret_cast<void (*)()>(f)};
}

}  // namespace

const OSSL_DISPATCH* sha256_dispatch(const Inner& in, bool counting) {
  // The default provider's functions are the same code in every library
  // context, so the first instance's serve all (as get_params does).
  static OSSL_DISPATCH table[16];
  int n = 0;
  table[n++] = entry(OSSL_FUNC_DIGEST_NEWCTX, sha_newctx);
  table[n++] = entry(OSSL_FUNC_DIGEST_FREECTX, in.freectx);
  if (in.dupctx) table[n++] = entry(OSSL_FUNC_DIGEST_DUPCTX, in.dupctx);
  if (in.dinit_digest) table[n++] = entry(OSSL_FUNC_DIGEST_INIT, in.dinit_digest);
  if (in.dupdate)
    table[n++] = counting ? entry(OSSL_FUNC_DIGEST_UPDATE, sha_update_counted) : entry(OSSL_FUNC_DIGEST_UPDATE, in.dupdate);
  if (in.dfinal) table[n++] = entry(OSSL_FUNC_DIGEST_FINAL, in.dfinal);
  if (in.ddigest) table[n++] = entry(OSSL_FUNC_DIGEST_DIGEST, sha_digest);
  if (in.dget_params) table[n++] = entry(OSSL_FUNC_DIGEST_GET_PARAMS, sha_get_params);
  if (in.dgettable_params) table[n++] = entry(OSSL_FUNC_DIGEST_GETTABLE_PARAMS, sha_gettable_params);
  if (in.dget_ctx_params) table[n++] = entry(OSSL_FUNC_DIGEST_GET_CTX_PARAMS, in.dget_ctx_params);
  if (in.dset_ctx_params) table[n++] = entry(OSSL_FUNC_DIGEST_SET_CTX_PARAMS, in.dset_ctx_params);
  if (in.dgettable_ctx_params) table[n++] = entry(OSSL_FUNC_DIGEST_GETTABLE_CTX_PARAMS, sha_gettable_ctx_params);
  if (in.dsettable_ctx_params) table[n++] = entry(OSSL_FUNC_DIGEST_SETTABLE_CTX_PARAMS, sha_settable_ctx_params);
  table[n] = {0, nullptr};
  return table;
}

}  // namespace gpo::provider
