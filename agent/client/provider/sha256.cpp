// SHA-256: the default provider's, always. A digest context is one stream
// and each block depends on the one before, so no update of it can be sent
// anywhere to run faster (the GPU wins on batches of independent messages,
// which a context never holds). It is here so that `openssl.cnf` can prefer
// this provider without splitting a program's algorithms between two, and
// so that `gpuoffload-agent exec` counts its calls (docs/provider.md). A
// process that counts nothing gets the default provider's contexts as they
// are: a small digest then costs what it costs there.
#include "provider/provider.h"

namespace gpo::provider {
namespace {

struct ShaCtx {
  ProvCtx* pc = nullptr;
  void* in = nullptr;
  Tally tally;
  unsigned finals = 0;
  const Inner& a() const { return pc->sha256; }
};

void* sha_newctx(void* provctx) {
  auto* pc = static_cast<ProvCtx*>(provctx);
  void* in = pc->sha256.newctx(pc->sha256.provctx);
  if (!in) return nullptr;
  auto* c = new ShaCtx;  // default-initialised: the tally's counters are zeroed at its first add
  c->pc = pc;
  c->in = in;
  return c;
}

void sha_freectx(void* vctx) {
  auto* c = static_cast<ShaCtx*>(vctx);
  if (!c) return;
  c->tally.flush(GPO_SHA256);
  c->a().freectx(c->in);
  delete c;
}

void* sha_dupctx(void* vctx) {
  auto* c = static_cast<ShaCtx*>(vctx);
  void* in = c->a().dupctx(c->in);
  if (!in) return nullptr;
  auto* d = new ShaCtx(*c);
  d->tally = Tally{};
  d->in = in;
  return d;
}

int sha_init(void* vctx, const OSSL_PARAM params[]) {
  auto* c = static_cast<ShaCtx*>(vctx);
  return c->a().dinit_digest(c->in, params);
}

int sha_update(void* vctx, const unsigned char* in, size_t inl) {
  auto* c = static_cast<ShaCtx*>(vctx);
  c->tally.add(inl < g_floor ? GPO_PATH_CPU_SMALL : GPO_PATH_CPU_STREAM, inl);
  return c->a().dupdate(c->in, in, inl);
}

int sha_final(void* vctx, unsigned char* out, size_t* outl, size_t outsz) {
  auto* c = static_cast<ShaCtx*>(vctx);
  if (++c->finals >= 64) {  // handed over every 64 digests, and at free
    c->tally.flush(GPO_SHA256);
    c->finals = 0;
  }
  return c->a().dfinal(c->in, out, outl, outsz);
}

int sha_digest(void* provctx, const unsigned char* in, size_t inl, unsigned char* out, size_t* outl, size_t outsz) {
  auto* pc = static_cast<ProvCtx*>(provctx);
  if (accounting()) gpo_account(GPO_SHA256, inl < g_floor ? GPO_PATH_CPU_SMALL : GPO_PATH_CPU_STREAM, 1, inl, 0);
  return pc->sha256.ddigest(pc->sha256.provctx, in, inl, out, outl, outsz);
}

int sha_get_params(OSSL_PARAM params[]) { return g_sha256->dget_params(params); }
const OSSL_PARAM* sha_gettable_params(void* provctx) {
  auto* pc = static_cast<ProvCtx*>(provctx);
  return pc->sha256.dgettable_params(pc->sha256.provctx);
}
int sha_get_ctx_params(void* vctx, OSSL_PARAM params[]) {
  auto* c = static_cast<ShaCtx*>(vctx);
  return c->a().dget_ctx_params(c->in, params);
}
int sha_set_ctx_params(void* vctx, const OSSL_PARAM params[]) {
  auto* c = static_cast<ShaCtx*>(vctx);
  return c->a().dset_ctx_params(c->in, params);
}
const OSSL_PARAM* sha_gettable_ctx_params(void* vctx, void* provctx) {
  auto* pc = static_cast<ProvCtx*>(provctx);
  return pc->sha256.dgettable_ctx_params(vctx ? static_cast<ShaCtx*>(vctx)->in : nullptr, pc->sha256.provctx);
}
const OSSL_PARAM* sha_settable_ctx_params(void* vctx, void* provctx) {
  auto* pc = static_cast<ProvCtx*>(provctx);
  return pc->sha256.dsettable_ctx_params(vctx ? static_cast<ShaCtx*>(vctx)->in : nullptr, pc->sha256.provctx);
}

// Without counting, a context is the default provider's own: only the calls
// that get our provider context need a word of ours.
void* direct_newctx(void* provctx) {
  auto* pc = static_cast<ProvCtx*>(provctx);
  return pc->sha256.newctx(pc->sha256.provctx);
}
int direct_digest(void* provctx, const unsigned char* in, size_t inl, unsigned char* out, size_t* outl,
                  size_t outsz) {
  auto* pc = static_cast<ProvCtx*>(provctx);
  return pc->sha256.ddigest(pc->sha256.provctx, in, inl, out, outl, outsz);
}
const OSSL_PARAM* direct_gettable_ctx_params(void* vctx, void* provctx) {
  auto* pc = static_cast<ProvCtx*>(provctx);
  return pc->sha256.dgettable_ctx_params(vctx, pc->sha256.provctx);
}
const OSSL_PARAM* direct_settable_ctx_params(void* vctx, void* provctx) {
  auto* pc = static_cast<ProvCtx*>(provctx);
  return pc->sha256.dsettable_ctx_params(vctx, pc->sha256.provctx);
}

template <typename F>
OSSL_DISPATCH entry(int id, F* f) {
  return {id, reinterpret_cast<void (*)()>(f)};
}

}  // namespace

const OSSL_DISPATCH* sha256_dispatch(const Inner& in, bool counting) {
  static OSSL_DISPATCH table[16];
  int n = 0;
  if (!counting) {
    // The default provider's functions are the same code in every library
    // context, so the first instance's serve all (as get_params does).
    table[n++] = entry(OSSL_FUNC_DIGEST_NEWCTX, direct_newctx);
    table[n++] = entry(OSSL_FUNC_DIGEST_FREECTX, in.freectx);
    if (in.dupctx) table[n++] = entry(OSSL_FUNC_DIGEST_DUPCTX, in.dupctx);
    if (in.dinit_digest) table[n++] = entry(OSSL_FUNC_DIGEST_INIT, in.dinit_digest);
    if (in.dupdate) table[n++] = entry(OSSL_FUNC_DIGEST_UPDATE, in.dupdate);
    if (in.dfinal) table[n++] = entry(OSSL_FUNC_DIGEST_FINAL, in.dfinal);
    if (in.ddigest) table[n++] = entry(OSSL_FUNC_DIGEST_DIGEST, direct_digest);
    if (in.dget_params) table[n++] = entry(OSSL_FUNC_DIGEST_GET_PARAMS, sha_get_params);
    if (in.dgettable_params) table[n++] = entry(OSSL_FUNC_DIGEST_GETTABLE_PARAMS, sha_gettable_params);
    if (in.dget_ctx_params) table[n++] = entry(OSSL_FUNC_DIGEST_GET_CTX_PARAMS, in.dget_ctx_params);
    if (in.dset_ctx_params) table[n++] = entry(OSSL_FUNC_DIGEST_SET_CTX_PARAMS, in.dset_ctx_params);
    if (in.dgettable_ctx_params) table[n++] = entry(OSSL_FUNC_DIGEST_GETTABLE_CTX_PARAMS, direct_gettable_ctx_params);
    if (in.dsettable_ctx_params) table[n++] = entry(OSSL_FUNC_DIGEST_SETTABLE_CTX_PARAMS, direct_settable_ctx_params);
    table[n] = {0, nullptr};
    return table;
  }
  table[n++] = entry(OSSL_FUNC_DIGEST_NEWCTX, sha_newctx);
  table[n++] = entry(OSSL_FUNC_DIGEST_FREECTX, sha_freectx);
  if (in.dupctx) table[n++] = entry(OSSL_FUNC_DIGEST_DUPCTX, sha_dupctx);
  if (in.dinit_digest) table[n++] = entry(OSSL_FUNC_DIGEST_INIT, sha_init);
  if (in.dupdate) table[n++] = entry(OSSL_FUNC_DIGEST_UPDATE, sha_update);
  if (in.dfinal) table[n++] = entry(OSSL_FUNC_DIGEST_FINAL, sha_final);
  if (in.ddigest) table[n++] = entry(OSSL_FUNC_DIGEST_DIGEST, sha_digest);
  if (in.dget_params) table[n++] = entry(OSSL_FUNC_DIGEST_GET_PARAMS, sha_get_params);
  if (in.dgettable_params) table[n++] = entry(OSSL_FUNC_DIGEST_GETTABLE_PARAMS, sha_gettable_params);
  if (in.dget_ctx_params) table[n++] = entry(OSSL_FUNC_DIGEST_GET_CTX_PARAMS, sha_get_ctx_params);
  if (in.dset_ctx_params) table[n++] = entry(OSSL_FUNC_DIGEST_SET_CTX_PARAMS, sha_set_ctx_params);
  if (in.dgettable_ctx_params) table[n++] = entry(OSSL_FUNC_DIGEST_GETTABLE_CTX_PARAMS, sha_gettable_ctx_params);
  if (in.dsettable_ctx_params) table[n++] = entry(OSSL_FUNC_DIGEST_SETTABLE_CTX_PARAMS, sha_settable_ctx_params);
  table[n] = {0, nullptr};
  return table;
}

}  // namespace gpo::provider
