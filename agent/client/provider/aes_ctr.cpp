// AES-256-CTR: the default provider's, with the whole blocks of a large
// update sent to the agent as CTR jobs at the stream's counter position
// (docs/provider.md). A partial block at either end stays on the default
// context, which is moved past the offloaded blocks (its counter block
// re-set), so the stream continues exactly: the counter is the initial block
// plus the blocks before, over all 128 bits, as OpenSSL counts it.
#include <openssl/crypto.h>
#include <openssl/params.h>

#include <algorithm>
#include <cstring>

#include "provider/provider.h"

namespace gpo::provider {
namespace {

struct CtrCtx {
  ProvCtx* pc = nullptr;
  void* in = nullptr;  // the default provider's AES-256-CTR context
  int enc = 1;
  Tally tally;
  uint8_t key[32] = {};
  bool key_set = false;
  uint8_t iv[16] = {};  // the initial counter block as given
  bool iv_set = false;
  bool moved = false;   // `in` re-set past offloaded blocks: the IV parameter is answered here
  uint64_t pos = 0;     // bytes since the IV
  unsigned finals = 0;  // messages since the tally was last handed over

  const Inner& a() const { return pc->ctr; }
};

// cb = iv + blocks, a 128-bit big-endian sum.
void add_blocks(const uint8_t iv[16], uint64_t blocks, uint8_t cb[16]) {
  unsigned carry = 0;
  for (int i = 15; i >= 0; --i) {
    const unsigned add = i >= 8 ? unsigned(blocks >> (8 * (15 - i))) & 0xff : 0;
    const unsigned s = iv[i] + add + carry;
    cb[i] = uint8_t(s);
    carry = s >> 8;
  }
}

// Whole blocks through the agent in jobs of at most hi bytes, then `in` set to
// the next block. False only if the library refused a request (it never
// should); the caller then finishes on the CPU from the same position.
bool offload_blocks(CtrCtx& c, const uint8_t*& in, uint8_t*& out, size_t& n, size_t hi) {
  const size_t step = std::max<size_t>(16, hi & ~size_t(15));
  Offloading guard;
  while (n >= 16) {
    const size_t p = std::min(n & ~size_t(15), step);
    uint8_t cb[16];
    add_blocks(c.iv, c.pos / 16, cb);
    gpo_request r{GPO_AES256_CTR, in, p, out, p, c.key, cb, 16, nullptr, 0, nullptr, 0, 0};
    if (gpo_run(&r, nullptr) != GPO_OK) break;
    c.pos += p, in += p, out += p, n -= p;
    c.moved = true;
  }
  uint8_t cb[16];
  add_blocks(c.iv, c.pos / 16, cb);
  return c.enc ? c.a().einit(c.in, nullptr, 0, cb, 16, nullptr) : c.a().dinit(c.in, nullptr, 0, cb, 16, nullptr);
}

void* ctr_newctx(void* provctx) {
  auto* pc = static_cast<ProvCtx*>(provctx);
  void* in = pc->ctr.newctx(pc->ctr.provctx);
  if (!in) return nullptr;
  auto* c = new CtrCtx();
  c->pc = pc;
  c->in = in;
  return c;
}

void ctr_freectx(void* vctx) {
  auto* c = static_cast<CtrCtx*>(vctx);
  if (!c) return;
  c->tally.flush(GPO_AES256_CTR);
  if (c->in) c->a().freectx(c->in);
  OPENSSL_cleanse(c->key, sizeof c->key);
  delete c;
}

void* ctr_dupctx(void* vctx) {
  auto* c = static_cast<CtrCtx*>(vctx);
  void* in = c->a().dupctx(c->in);
  if (!in) return nullptr;
  auto* d = new CtrCtx(*c);
  d->tally = Tally{};
  d->in = in;
  return d;
}

int ctr_init(void* vctx, const unsigned char* key, size_t keylen, const unsigned char* iv, size_t ivlen,
             const OSSL_PARAM params[], int enc) {
  auto* c = static_cast<CtrCtx*>(vctx);
  const int r = enc ? c->a().einit(c->in, key, keylen, iv, ivlen, params) : c->a().dinit(c->in, key, keylen, iv, ivlen, params);
  if (!r) return 0;
  c->enc = enc;
  if (key) {
    std::memcpy(c->key, key, std::min(keylen, sizeof c->key));
    c->key_set = keylen == sizeof c->key;
  }
  if (iv) {
    c->iv_set = ivlen == sizeof c->iv;
    if (c->iv_set) std::memcpy(c->iv, iv, 16);
    c->pos = 0;
    c->moved = false;
  } else {
    // The default drops the rest of a partial keystream block (num = 0) and
    // keeps counting from the next counter block.
    c->pos = (c->pos + 15) / 16 * 16;
  }
  return 1;
}

int ctr_einit(void* v, const unsigned char* k, size_t kl, const unsigned char* iv, size_t il, const OSSL_PARAM p[]) {
  return ctr_init(v, k, kl, iv, il, p, 1);
}
int ctr_dinit(void* v, const unsigned char* k, size_t kl, const unsigned char* iv, size_t il, const OSSL_PARAM p[]) {
  return ctr_init(v, k, kl, iv, il, p, 0);
}

int ctr_update(void* vctx, unsigned char* out, size_t* outl, size_t outsize, const unsigned char* in, size_t inl) {
  auto* c = static_cast<CtrCtx*>(vctx);
  size_t hi = 0;
  int path = GPO_PATH_CPU_SMALL;
  if (inl >= g_floor && out && !t_offloading && outsize >= inl) {
    path = c->key_set && c->iv_set ? route(GPO_AES256_CTR, inl, &hi) : GPO_PATH_CPU_PARAMS;
  }
  if (path != GPO_PATH_OFFLOAD) {
    const int r = c->a().update(c->in, out, outl, outsize, in, inl);
    if (r) {
      c->pos += inl;
      c->tally.add(path, inl);
    }
    return r;
  }
  const uint64_t t0 = now_ns();
  const size_t total = inl;
  size_t ol = 0;
  const size_t head = std::min(inl, size_t((16 - c->pos % 16) % 16));
  if (head && !c->a().update(c->in, out, &ol, head, in, head)) return 0;
  c->pos += head, in += head, out += head, inl -= head;
  if (!offload_blocks(*c, in, out, inl, hi)) return 0;
  if (inl && !c->a().update(c->in, out, &ol, inl, in, inl)) return 0;
  c->pos += inl;
  c->tally.add(GPO_PATH_OFFLOAD, total, now_ns() - t0);
  *outl = total;
  return 1;
}

int ctr_final(void* vctx, unsigned char* out, size_t* outl, size_t outsize) {
  auto* c = static_cast<CtrCtx*>(vctx);
  if (++c->finals >= 64) {  // handed over every 64 messages, and at free
    c->tally.flush(GPO_AES256_CTR);
    c->finals = 0;
  }
  return c->a().final(c->in, out, outl, outsize);
}

int ctr_cipher(void* vctx, unsigned char* out, size_t* outl, size_t outsize, const unsigned char* in, size_t inl) {
  auto* c = static_cast<CtrCtx*>(vctx);
  if (in && out && inl >= g_floor) return ctr_update(vctx, out, outl, outsize, in, inl);
  const int r = c->a().cipher(c->in, out, outl, outsize, in, inl);
  if (r && in) c->pos += inl;
  return r;
}

int ctr_get_ctx_params(void* vctx, OSSL_PARAM params[]) {
  auto* c = static_cast<CtrCtx*>(vctx);
  OSSL_PARAM* p = c->moved ? OSSL_PARAM_locate(params, OSSL_CIPHER_PARAM_IV) : nullptr;
  if (!p) return c->a().get_ctx_params(c->in, params);
  // `in` now holds a later counter block as its "original" IV; the caller's is here.
  if (!OSSL_PARAM_set_octet_string(p, c->iv, sizeof c->iv) && !OSSL_PARAM_set_octet_ptr(p, &c->iv, sizeof c->iv)) {
    ERR_raise(ERR_LIB_PROV, PROV_R_FAILED_TO_SET_PARAMETER);
    return 0;
  }
  return get_params_except(c->a(), c->in, params, OSSL_CIPHER_PARAM_IV);
}

int ctr_set_ctx_params(void* vctx, const OSSL_PARAM params[]) {
  auto* c = static_cast<CtrCtx*>(vctx);
  return c->a().set_ctx_params(c->in, params);
}

int ctr_get_params(OSSL_PARAM params[]) { return g_ctr->get_params(params); }
const OSSL_PARAM* ctr_gettable_params(void* provctx) {
  auto* pc = static_cast<ProvCtx*>(provctx);
  return pc->ctr.gettable_params(pc->ctr.provctx);
}
const OSSL_PARAM* ctr_gettable_ctx_params(void* vctx, void* provctx) {
  auto* pc = static_cast<ProvCtx*>(provctx);
  return pc->ctr.gettable_ctx_params(vctx ? static_cast<CtrCtx*>(vctx)->in : nullptr, pc->ctr.provctx);
}
const OSSL_PARAM* ctr_settable_ctx_params(void* vctx, void* provctx) {
  auto* pc = static_cast<ProvCtx*>(provctx);
  return pc->ctr.settable_ctx_params(vctx ? static_cast<CtrCtx*>(vctx)->in : nullptr, pc->ctr.provctx);
}

template <typename F>
OSSL_DISPATCH entry(int id, F* f) {
  return {id, reinterpret_cast<void (*)()>(f)};
}

}  // namespace

const OSSL_DISPATCH* ctr_dispatch(const Inner& in) {
  static OSSL_DISPATCH table[16];
  int n = 0;
  table[n++] = entry(OSSL_FUNC_CIPHER_NEWCTX, ctr_newctx);
  table[n++] = entry(OSSL_FUNC_CIPHER_FREECTX, ctr_freectx);
  if (in.dupctx) table[n++] = entry(OSSL_FUNC_CIPHER_DUPCTX, ctr_dupctx);
  table[n++] = entry(OSSL_FUNC_CIPHER_ENCRYPT_INIT, ctr_einit);
  table[n++] = entry(OSSL_FUNC_CIPHER_DECRYPT_INIT, ctr_dinit);
  table[n++] = entry(OSSL_FUNC_CIPHER_UPDATE, ctr_update);
  table[n++] = entry(OSSL_FUNC_CIPHER_FINAL, ctr_final);
  if (in.cipher) table[n++] = entry(OSSL_FUNC_CIPHER_CIPHER, ctr_cipher);
  table[n++] = entry(OSSL_FUNC_CIPHER_GET_PARAMS, ctr_get_params);
  table[n++] = entry(OSSL_FUNC_CIPHER_GET_CTX_PARAMS, ctr_get_ctx_params);
  table[n++] = entry(OSSL_FUNC_CIPHER_SET_CTX_PARAMS, ctr_set_ctx_params);
  table[n++] = entry(OSSL_FUNC_CIPHER_GETTABLE_PARAMS, ctr_gettable_params);
  table[n++] = entry(OSSL_FUNC_CIPHER_GETTABLE_CTX_PARAMS, ctr_gettable_ctx_params);
  table[n++] = entry(OSSL_FUNC_CIPHER_SETTABLE_CTX_PARAMS, ctr_settable_ctx_params);
  table[n] = {0, nullptr};
  return table;
}

}  // namespace gpo::provider
