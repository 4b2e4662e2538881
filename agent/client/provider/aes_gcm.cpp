// AES-256-GCM: the default provider's, with the bulk of large updates sent
// to the agent (docs/provider.md has the why and the math).
//
// A message starts on the default provider's context (`in`). At a large data
// update the message may switch to "split" mode for the rest of its life:
//   - the keystream of a large update comes from CTR jobs (counter J0+1+k),
//     small pieces from the default provider's AES-256-CTR;
//   - GHASH is linear: X' = X*H^n ^ G0(D), where G0(D) is the GHASH of D's n
//     blocks from zero. A GCM job over D as AAD (empty text, fixed IV') gives
//     t = E(K,J0') ^ (G0(D) ^ L_D)*H, so G0(D)*H = t ^ E(K,J0') ^ L_D*H; small
//     pieces are hashed the same way by a default-provider GCM context fed
//     whole blocks as AAD. The state is kept as W = X*H: no inverse of H.
//   - An encrypt whose first data update is large is one GCM job (its AAD
//     included): W = tag ^ E(K,J0) ^ L*H.
// The switch needs the GHASH state so far: zero when no data went through
// `in` yet; for encrypt, a copy of `in` finalised gives it (W = tag ^ E(K,J0)
// ^ L*H). A decrypt context cannot give its state away (its tag is checked,
// never shown), so a decrypt that began with small updates stays on `in`.
// 12-byte IVs only (J0 = IV || 1); TLS record mode and IV generation stay on
// `in` too.
#include <openssl/crypto.h>
#include <openssl/params.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "provider/gf128.h"
#include "provider/provider.h"

namespace gpo::provider {
namespace {

using gf128::U128;

constexpr size_t kAadKept = 64 << 10;                     // AAD recorded for a first-update GCM job
constexpr uint64_t kMaxText = (uint64_t(1) << 36) - 32;  // SP 800-38D: at most 2^39 - 256 bits
const uint8_t kZeroIv[12] = {};

struct Split {
  uint8_t iv[12] = {};
  uint8_t ekj0[16] = {};     // E(K, J0): the tag's mask
  U128 w;                    // GHASH state times H
  uint64_t alen = 0, clen = 0;
  uint8_t carry[16] = {};    // text bytes past the last whole block (GHASH input)
  size_t carry_n = 0;
  uint64_t run_blocks = 0;   // blocks hashed by the CPU run, not yet joined into w
  uint64_t ctr_pos = UINT64_MAX;  // where the CPU CTR context stands; UINT64_MAX: to be set
  bool aad_in_job = false;   // encrypt with no data yet: the first job's GCM hashes the AAD
  bool tag_ready = false;    // encrypt: final done, tag below
  bool finished = false;
  uint8_t tag[16] = {};
};

// The AAD of the current message, kept (up to kAadKept) for a first-update GCM
// job: inline for TLS-sized AAD, so recording costs a short copy.
class AadRecord {
 public:
  void clear() { n_ = 0, big_.clear(); }
  bool append(const uint8_t* p, size_t n) {
    if (n_ + n > kAadKept) return false;
    if (n_ + n <= sizeof small_) {
      std::memcpy(small_ + n_, p, n);
    } else {
      if (big_.empty()) big_.assign(small_, small_ + n_);
      big_.insert(big_.end(), p, p + n);
    }
    n_ += n;
    return true;
  }
  const uint8_t* data() const { return n_ <= sizeof small_ ? small_ : big_.data(); }
  size_t size() const { return n_; }

 private:
  uint8_t small_[64] = {};
  size_t n_ = 0;
  std::vector<uint8_t> big_;
};

struct GcmCtx {
  ProvCtx* pc = nullptr;
  void* in = nullptr;  // the default provider's AES-256-GCM context
  int enc = 1;
  Tally tally;
  // What `in` was told, for the split decision.
  uint8_t key[32] = {};
  bool key_set = false;
  uint64_t key_gen = 0;
  bool tls = false;           // TLS record mode / IV generation: the message is `in`'s
  size_t ivlen = 12;          // `in`'s IV length (GCM's default until told otherwise)
  bool inner_final = false;   // `in` finished its message; no IV since
  uint64_t alen = 0, inner_clen = 0;
  AadRecord aad;
  bool aad_kept = true;
  unsigned finals = 0;        // messages since the tally was last handed over
  uint8_t dec_tag[16] = {};
  size_t dec_taglen = 0;
  // Per key, on first need: H, E(K, J0'), powers of H, and CPU contexts.
  uint64_t derived_gen = 0;
  U128 h;
  uint8_t ekj0p[16] = {};
  gf128::Powers pw;
  void* ecb = nullptr;
  void* ctr = nullptr;
  uint64_t ctr_gen = 0;
  void* ghash = nullptr;
  uint64_t ghash_gen = 0;
  bool split = false;
  Split s;

  int op() const { return enc ? GPO_AES256_GCM_ENCRYPT : GPO_AES256_GCM_DECRYPT; }
  const Inner& g() const { return pc->gcm; }
};

void free_inner(const Inner& alg, void*& c) {
  if (c) alg.freectx(c);
  c = nullptr;
}

// --- per-key values ------------------------------------------------------------

bool ecb_blocks(GcmCtx& c, const uint8_t* in, uint8_t* out, size_t n) {
  size_t ol = 0;
  return c.pc->ecb.update(c.ecb, out, &ol, n, in, n) && ol == n;
}

bool derive(GcmCtx& c) {
  if (c.derived_gen == c.key_gen) return true;
  free_inner(c.pc->ecb, c.ecb);
  c.ecb = inner_keyed(c.pc->ecb, c.key, nullptr, 0);
  if (!c.ecb) return false;
  uint8_t in[32] = {}, out[32];
  in[31] = 1;  // J0' = 0^96 || 1
  if (!ecb_blocks(c, in, out, 32)) return false;
  c.h = gf128::load(out);
  std::memcpy(c.ekj0p, out + 16, 16);
  c.pw.reset(c.h);
  c.derived_gen = c.key_gen;
  return true;
}

bool get_iv(GcmCtx& c, uint8_t iv[12]) {
  size_t ivlen = 0;
  OSSL_PARAM q[] = {OSSL_PARAM_construct_size_t(OSSL_CIPHER_PARAM_IVLEN, &ivlen), OSSL_PARAM_construct_end()};
  if (!c.g().get_ctx_params(c.in, q) || ivlen != 12) return false;
  OSSL_PARAM p[] = {OSSL_PARAM_construct_octet_string(OSSL_CIPHER_PARAM_IV, iv, 12), OSSL_PARAM_construct_end()};
  return c.g().get_ctx_params(c.in, p) == 1;
}

void counter_block(const Split& s, uint8_t cb[16]) {
  std::memcpy(cb, s.iv, 12);
  const uint32_t n = uint32_t(2 + s.clen / 16);  // J0 + 1 is the first text block
  cb[12] = uint8_t(n >> 24), cb[13] = uint8_t(n >> 16), cb[14] = uint8_t(n >> 8), cb[15] = uint8_t(n);
}

// --- the CPU side of a split message -----------------------------------------

bool ghash_blocks(GcmCtx& c, const uint8_t* p, size_t n) {
  if (!n) return true;
  if (c.s.run_blocks == 0) {
    if (!c.ghash || c.ghash_gen != c.key_gen) {
      free_inner(c.g(), c.ghash);
      c.ghash = inner_keyed(c.g(), c.key, kZeroIv, 12);
      c.ghash_gen = c.key_gen;
      if (!c.ghash) return false;
    } else if (!c.g().einit(c.ghash, nullptr, 0, kZeroIv, 12, nullptr)) {
      return false;
    }
  }
  size_t ol = 0;
  if (!c.g().update(c.ghash, nullptr, &ol, n, p, n)) return false;  // out == NULL: AAD
  c.s.run_blocks += n / 16;
  return true;
}

// W = W * H^n ^ G0(D)*H, from a tag t over D (n blocks) as AAD with IV'.
void join(GcmCtx& c, const uint8_t t[16], uint64_t blocks) {
  const U128 g = gf128::load(t) ^ gf128::load(c.ekj0p) ^ gf128::mul(gf128::length_block(blocks * 16, 0), c.h);
  c.s.w = gf128::mul(c.s.w, c.pw.pow(blocks)) ^ g;
}

bool flush_run(GcmCtx& c) {
  if (c.s.run_blocks == 0) return true;
  uint8_t t[16], tmp[16];
  size_t ol = 0;
  OSSL_PARAM p[] = {OSSL_PARAM_construct_octet_string(OSSL_CIPHER_PARAM_AEAD_TAG, t, 16), OSSL_PARAM_construct_end()};
  if (!c.g().final(c.ghash, tmp, &ol, sizeof tmp) || !c.g().get_ctx_params(c.ghash, p)) return false;
  join(c, t, c.s.run_blocks);
  c.s.run_blocks = 0;
  return true;
}

bool ghash_feed(GcmCtx& c, const uint8_t* p, size_t n) {
  Split& s = c.s;
  if (s.carry_n) {
    const size_t k = std::min(n, 16 - s.carry_n);
    std::memcpy(s.carry + s.carry_n, p, k);
    s.carry_n += k, p += k, n -= k;
    if (s.carry_n < 16) return true;
    s.carry_n = 0;
    if (!ghash_blocks(c, s.carry, 16)) return false;
  }
  const size_t whole = n & ~size_t(15);
  if (!ghash_blocks(c, p, whole)) return false;
  std::memcpy(s.carry, p + whole, n - whole);
  s.carry_n = n - whole;
  return true;
}

// The AAD, zero-padded, as the first blocks of the CPU run (when no GCM job takes it).
bool aad_to_run(GcmCtx& c) {
  if (!c.s.aad_in_job) return true;
  c.s.aad_in_job = false;
  const size_t whole = c.aad.size() & ~size_t(15);
  if (!ghash_blocks(c, c.aad.data(), whole)) return false;
  if (whole == c.aad.size()) return true;
  uint8_t last[16] = {};
  std::memcpy(last, c.aad.data() + whole, c.aad.size() - whole);
  return ghash_blocks(c, last, 16);
}

bool cpu_ctr(GcmCtx& c, const uint8_t* in, uint8_t* out, size_t n) {
  Split& s = c.s;
  if (s.ctr_pos != s.clen) {  // after a job (or at the start): always a block boundary
    uint8_t cb[16];
    counter_block(s, cb);
    if (!c.ctr || c.ctr_gen != c.key_gen) {
      free_inner(c.pc->ctr, c.ctr);
      c.ctr = inner_keyed(c.pc->ctr, c.key, cb, 16);
      c.ctr_gen = c.key_gen;
      if (!c.ctr) return false;
    } else if (!c.pc->ctr.einit(c.ctr, nullptr, 0, cb, 16, nullptr)) {
      return false;
    }
    s.ctr_pos = s.clen;
  }
  size_t ol = 0;
  if (!c.pc->ctr.update(c.ctr, out, &ol, n, in, n)) return false;
  s.ctr_pos += n;
  return true;
}

// n text bytes on the CPU. Decrypt hashes the ciphertext before it may be
// overwritten (in place); encrypt hashes what it wrote.
bool cpu_piece(GcmCtx& c, const uint8_t* in, uint8_t* out, size_t n) {
  if (!n) return true;
  if (!aad_to_run(c)) return false;
  if (!c.enc && !ghash_feed(c, in, n)) return false;
  if (!cpu_ctr(c, in, out, n)) return false;
  if (c.enc && !ghash_feed(c, out, n)) return false;
  c.s.clen += n;
  return true;
}

// --- the offloaded side ----------------------------------------------------------

gpo_request ctr_request(const Split& s, const uint8_t* key, const uint8_t* in, uint8_t* out, size_t n, uint8_t cb[16]) {
  counter_block(s, cb);
  return gpo_request{GPO_AES256_CTR, in, n, out, n, key, cb, 16, nullptr, 0, nullptr, 0, 0};
}

gpo_request ghash_request(const uint8_t* key, const uint8_t* text, size_t n, uint8_t tag[16]) {
  return gpo_request{GPO_AES256_GCM_ENCRYPT, nullptr, 0, nullptr, 0, key, kZeroIv, 12, text, n, tag, 0, 0};
}

// n bytes (a multiple of 16, at a block boundary) through the agent, in jobs of
// at most hi bytes. A request the library refuses outright (it never should)
// is done on the CPU instead: the message stays right either way.
bool offload_pieces(GcmCtx& c, const uint8_t* in, uint8_t* out, size_t n, size_t hi) {
  Split& s = c.s;
  // hi bounds one job's input with its output beside it in the slab; a
  // decrypt has two jobs out at once (CTR: in + out, GHASH: in), the first
  // GCM job carries the AAD too.
  const size_t one = c.enc ? hi : hi / 3 * 2;
  Offloading guard;
  while (n) {
    size_t room = s.aad_in_job && c.enc ? (one > c.aad.size() + 4096 ? one - c.aad.size() - 4096 : 0)
                                          : (one > 256 ? one - 256 : 0);
    const size_t p = std::min(n, std::max<size_t>(16, room & ~size_t(15)));
    if (s.aad_in_job && c.enc) {
      // First data of an encrypt: one GCM job, AAD and all.
      uint8_t tag[16];
      gpo_request r{GPO_AES256_GCM_ENCRYPT, in, p, out, p, c.key, s.iv, 12, c.aad.data(), c.aad.size(), tag, 0, 0};
      if (gpo_run(&r, nullptr) != GPO_OK) return false;
      s.aad_in_job = false;
      s.w = gf128::load(tag) ^ gf128::load(s.ekj0) ^ gf128::mul(gf128::length_block(s.alen, p), c.h);
    } else {
      if (!aad_to_run(c) || !flush_run(c)) return false;
      uint8_t cb[16], tag[16];
      gpo_request cr = ctr_request(s, c.key, in, out, p, cb);
      if (c.enc) {
        if (gpo_run(&cr, nullptr) != GPO_OK) return false;
        gpo_request gr = ghash_request(c.key, out, p, tag);
        if (gpo_run(&gr, nullptr) != GPO_OK) return false;
      } else {
        // Both read the ciphertext: in flight together (the library copies
        // the input at submit, so in place is safe).
        gpo_request gr = ghash_request(c.key, in, p, tag);
        gpo_handle *hg = nullptr, *hc = nullptr;
        if (gpo_submit(&gr, &hg) != GPO_OK) return false;
        const int rc = gpo_submit(&cr, &hc);
        const int rg = gpo_wait(hg, nullptr);
        if (rc != GPO_OK || gpo_wait(hc, nullptr) != GPO_OK || rg != GPO_OK) return false;
      }
      join(c, tag, p / 16);
    }
    s.clen += p;
    s.ctr_pos = UINT64_MAX;
    in += p, out += p, n -= p;
  }
  return true;
}

// --- the split message's update and final --------------------------------------

int split_update(GcmCtx& c, uint8_t* out, size_t* outl, size_t outsize, const uint8_t* in, size_t inl) {
  Split& s = c.s;
  *outl = 0;
  if (s.finished || !out) {  // after final, or AAD after text: the default provider refuses both
    ERR_raise(ERR_LIB_PROV, PROV_R_CIPHER_OPERATION_FAILED);
    return 0;
  }
  if (inl == 0) return 1;
  if (outsize < inl) {
    ERR_raise(ERR_LIB_PROV, PROV_R_OUTPUT_BUFFER_TOO_SMALL);
    return 0;
  }
  if (s.clen + inl > kMaxText) {
    ERR_raise(ERR_LIB_PROV, PROV_R_CIPHER_OPERATION_FAILED);
    return 0;
  }
  const uint64_t t0 = now_ns();
  const size_t total = inl;
  const size_t head = std::min(inl, size_t((16 - s.clen % 16) % 16));
  bool ok = cpu_piece(c, in, out, head);
  in += head, out += head, inl -= head;
  const size_t body = inl & ~size_t(15);
  size_t hi = 0;
  const int path = t_offloading ? GPO_PATH_CPU_SMALL : route(c.op(), body, &hi);
  if (ok && path == GPO_PATH_OFFLOAD && hi >= 16) {
    ok = offload_pieces(c, in, out, body, hi);
  } else if (ok) {
    ok = cpu_piece(c, in, out, body);
  }
  if (ok) ok = cpu_piece(c, in + body, out + body, inl - body);
  if (!ok) {
    ERR_raise(ERR_LIB_PROV, PROV_R_CIPHER_OPERATION_FAILED);
    return 0;
  }
  c.tally.add(path == GPO_PATH_OFFLOAD && hi >= 16 ? GPO_PATH_OFFLOAD : path, total,
              path == GPO_PATH_OFFLOAD ? now_ns() - t0 : 0);
  *outl = total;
  return 1;
}

int split_final(GcmCtx& c, size_t* outl) {
  Split& s = c.s;
  *outl = 0;
  if (s.finished) return 0;
  if (!c.enc && c.dec_taglen == 0) {
    ERR_raise(ERR_LIB_PROV, PROV_R_TAG_NOT_SET);
    return 0;
  }
  bool ok = aad_to_run(c);  // a message with no text at all (never split, but cheap to be right)
  if (ok && s.carry_n) {
    uint8_t last[16] = {};
    std::memcpy(last, s.carry, s.carry_n);
    s.carry_n = 0;
    ok = ghash_blocks(c, last, 16);
  }
  if (!ok || !flush_run(c)) return 0;
  const U128 tag = gf128::load(s.ekj0) ^ s.w ^ gf128::mul(gf128::length_block(s.alen, s.clen), c.h);
  s.finished = true;
  c.tally.flush(c.op());
  if (c.enc) {
    gf128::store(tag, s.tag);
    s.tag_ready = true;
    return 1;
  }
  uint8_t t[16];
  gf128::store(tag, t);
  return CRYPTO_memcmp(t, c.dec_tag, c.dec_taglen) == 0 ? 1 : 0;
}

// Moves a message from `in` to split mode before a large data update. False:
// it stays on `in`. *done: bytes of the update `in` processed on the way (the
// encrypt case aligns `in` to a block boundary first).
bool start_split(GcmCtx& c, const uint8_t*& in, uint8_t*& out, size_t& inl, size_t* done) {
  *done = 0;
  uint8_t iv[12];
  if (!get_iv(c, iv)) {
    // No IV given: the default makes one up at the first text of an encrypt.
    // Let it, on one block, then read the IV and the state back as below.
    size_t ol = 0;
    if (!c.enc || c.inner_clen != 0 || inl < 32 || !c.g().update(c.in, out, &ol, 16, in, 16)) return false;
    in += 16, out += 16, inl -= 16, *done = 16;
    c.inner_clen = 16;
    if (!get_iv(c, iv)) return false;
  }
  if (!derive(c)) return false;
  Split s;
  std::memcpy(s.iv, iv, 12);
  uint8_t j0[16] = {};
  std::memcpy(j0, iv, 12);
  j0[15] = 1;
  if (!ecb_blocks(c, j0, s.ekj0, 16)) return false;
  s.alen = c.alen;
  if (c.inner_clen == 0) {
    s.aad_in_job = true;  // encrypt: in the first job; decrypt: first blocks of the CPU run
    c.s = s;
    if (!c.enc && !aad_to_run(c)) return false;
    c.split = true;
    return true;
  }
  // Encrypt with text already through `in`: align, then read its state.
  const size_t head = std::min(inl, size_t((16 - c.inner_clen % 16) % 16));
  if (head) {
    size_t ol = 0;
    if (!c.g().update(c.in, out, &ol, head, in, head)) return false;
    in += head, out += head, inl -= head, *done += head;
    c.inner_clen += head;
    if (c.inner_clen % 16) return false;  // the whole update fit in the partial block
  }
  void* dup = c.g().dupctx(c.in);
  if (!dup) return false;
  uint8_t t[16], tmp[16];
  size_t ol = 0;
  OSSL_PARAM p[] = {OSSL_PARAM_construct_octet_string(OSSL_CIPHER_PARAM_AEAD_TAG, t, 16), OSSL_PARAM_construct_end()};
  const bool got = c.g().final(dup, tmp, &ol, sizeof tmp) && c.g().get_ctx_params(dup, p);
  c.g().freectx(dup);
  if (!got) return false;
  s.clen = c.inner_clen;
  s.w = gf128::load(t) ^ gf128::load(s.ekj0) ^ gf128::mul(gf128::length_block(s.alen, s.clen), c.h);
  c.s = s;
  c.split = true;
  return true;
}

// Could this message move to split mode now? (Cheap: checked on large updates only.)
bool splittable(const GcmCtx& c) {
  if (!c.key_set || c.tls || c.inner_final) return false;
  return c.inner_clen == 0 ? c.aad_kept : c.enc != 0;
}

// --- dispatch functions ----------------------------------------------------------

void* gcm_newctx(void* provctx) {
  auto* pc = static_cast<ProvCtx*>(provctx);
  void* in = pc->gcm.newctx(pc->gcm.provctx);
  if (!in) return nullptr;
  auto* c = new GcmCtx();
  c->pc = pc;
  c->in = in;
  return c;
}

void gcm_freectx(void* vctx) {
  auto* c = static_cast<GcmCtx*>(vctx);
  if (!c) return;
  c->tally.flush(c->op());
  free_inner(c->g(), c->in);
  free_inner(c->pc->ecb, c->ecb);
  free_inner(c->pc->ctr, c->ctr);
  free_inner(c->g(), c->ghash);
  OPENSSL_cleanse(c->key, sizeof c->key);
  delete c;
}

void* gcm_dupctx(void* vctx) {
  auto* c = static_cast<GcmCtx*>(vctx);
  auto* d = new GcmCtx(*c);
  d->tally = Tally{};
  d->in = c->g().dupctx(c->in);
  d->ecb = c->ecb ? c->pc->ecb.dupctx(c->ecb) : nullptr;
  d->ctr = c->ctr ? c->pc->ctr.dupctx(c->ctr) : nullptr;
  d->ghash = c->ghash ? c->g().dupctx(c->ghash) : nullptr;
  if (!d->in || (c->ecb && !d->ecb) || (c->ctr && !d->ctr) || (c->ghash && !d->ghash)) {
    gcm_freectx(d);
    return nullptr;
  }
  return d;
}

// What set_ctx_params told `in` that matters here.
void mirror_set(GcmCtx& c, const OSSL_PARAM params[]) {
  for (const OSSL_PARAM* p = params; p && p->key; ++p) {
    // The keys of interest start with 'i' ("ivlen") or 't' ("tag", "tlsaad",
    // "tlsivfixed", "tlsivinv"); EVP sets others ("padding", ...) on every init.
    if (p->key[0] == 'i' && std::strcmp(p->key, OSSL_CIPHER_PARAM_AEAD_IVLEN) == 0) {
      size_t n = 0;
      if (OSSL_PARAM_get_size_t(p, &n)) c.ivlen = n;
      continue;
    }
    if (p->key[0] != 't') continue;
    if (std::strcmp(p->key, OSSL_CIPHER_PARAM_AEAD_TAG) == 0 && !c.enc && p->data_size <= 16) {
      std::memcpy(c.dec_tag, p->data, p->data_size);
      c.dec_taglen = p->data_size;
    } else if (std::strcmp(p->key, OSSL_CIPHER_PARAM_AEAD_TLS1_AAD) == 0 ||
               std::strcmp(p->key, OSSL_CIPHER_PARAM_AEAD_TLS1_IV_FIXED) == 0 ||
               std::strcmp(p->key, OSSL_CIPHER_PARAM_AEAD_TLS1_SET_IV_INV) == 0) {
      c.tls = true;
    }
  }
}

int gcm_init(void* vctx, const unsigned char* key, size_t keylen, const unsigned char* iv, size_t ivlen,
             const OSSL_PARAM params[], int enc) {
  auto* c = static_cast<GcmCtx*>(vctx);
  const int r = enc ? c->g().einit(c->in, key, keylen, iv, ivlen, params) : c->g().dinit(c->in, key, keylen, iv, ivlen, params);
  if (!r) return 0;
  if (c->enc != enc) c->tally.flush(c->op());
  c->enc = enc;
  if (key) {
    std::memcpy(c->key, key, std::min(keylen, sizeof c->key));
    c->key_set = keylen == sizeof c->key;
    ++c->key_gen;
  }
  if (iv) {  // a new message (the split state is set afresh by start_split)
    c->ivlen = ivlen;
    c->tls = false;
    c->inner_final = false;
    c->alen = c->inner_clen = 0;
    c->aad.clear();
    c->aad_kept = true;
    c->split = false;
  }
  if (params) mirror_set(*c, params);
  return 1;
}

int gcm_einit(void* v, const unsigned char* k, size_t kl, const unsigned char* iv, size_t il, const OSSL_PARAM p[]) {
  return gcm_init(v, k, kl, iv, il, p, 1);
}
int gcm_dinit(void* v, const unsigned char* k, size_t kl, const unsigned char* iv, size_t il, const OSSL_PARAM p[]) {
  return gcm_init(v, k, kl, iv, il, p, 0);
}

int gcm_update(void* vctx, unsigned char* out, size_t* outl, size_t outsize, const unsigned char* in, size_t inl) {
  auto* c = static_cast<GcmCtx*>(vctx);
  if (c->split) return split_update(*c, out, outl, outsize, in, inl);
  int path = GPO_PATH_CPU_SMALL;
  if (out && inl >= g_floor && !t_offloading) {
    size_t hi = 0;
    path = splittable(*c) ? route(c->op(), inl, &hi) : GPO_PATH_CPU_STREAM;
    if (path == GPO_PATH_OFFLOAD) {
      size_t done = 0;
      const uint8_t* i = in;
      uint8_t* o = out;
      size_t n = inl;
      if (start_split(*c, i, o, n, &done)) {
        const int r = split_update(*c, o, outl, outsize - done, i, n);
        *outl += done;
        return r;
      }
      if (done) {  // `in` took a head, then the update ran out
        *outl = done;
        c->tally.add(GPO_PATH_CPU_STREAM, done);
        if (!n) return 1;
        in = i, out = o, inl = n, outsize -= done;
      }
      path = GPO_PATH_CPU_PARAMS;  // not a 12-byte IV, or no IV to read
    }
  }
  if (!out) {  // AAD: recorded while no text went through, for a first-update GCM job
    const int r = c->g().update(c->in, out, outl, outsize, in, inl);
    if (r && in && inl) {
      c->alen += inl;
      if (!c->aad_kept || c->inner_clen != 0 || !c->aad.append(in, inl)) c->aad_kept = false;
    }
    return r;
  }
  const int r = c->g().update(c->in, out, outl, outsize, in, inl);
  if (r) {
    c->inner_clen += inl;
    c->tally.add(path, inl);
  }
  return r;
}

int gcm_final(void* vctx, unsigned char* out, size_t* outl, size_t outsize) {
  auto* c = static_cast<GcmCtx*>(vctx);
  if (c->split) return split_final(*c, outl);
  const int r = c->g().final(c->in, out, outl, outsize);
  if (r) c->inner_final = true;
  // Handed over every 64 messages (and at free): a message of a few bytes
  // must not pay the accounting each time.
  if (++c->finals >= 64) {
    c->tally.flush(c->op());
    c->finals = 0;
  }
  return r;
}

// EVP_Cipher(): update when in is set, final when not (the default provider's
// gcm cipher does the same); TLS records stay with `in`.
int gcm_cipher(void* vctx, unsigned char* out, size_t* outl, size_t outsize, const unsigned char* in, size_t inl) {
  auto* c = static_cast<GcmCtx*>(vctx);
  if (!c->split && (c->tls || !in || !out || inl < g_floor)) return c->g().cipher(c->in, out, outl, outsize, in, inl);
  if (!in) return gcm_final(vctx, out, outl, outsize);
  return gcm_update(vctx, out, outl, outsize, in, inl);
}

// IV generation (TLS1_GET_IV_GEN) needs TLS1_IV_FIXED set first, which
// mirror_set already marks: the common call is a plain forward.
int gcm_get_ctx_params(void* vctx, OSSL_PARAM params[]) {
  auto* c = static_cast<GcmCtx*>(vctx);
  // EVP asks the key and IV lengths alone on every init: answered here, the
  // same values the default context holds, without its table of lookups.
  if (params && params[0].key && !params[1].key && params[0].data_type == OSSL_PARAM_UNSIGNED_INTEGER) {
    if (std::strcmp(params[0].key, OSSL_CIPHER_PARAM_KEYLEN) == 0) return OSSL_PARAM_set_size_t(params, 32);
    if (std::strcmp(params[0].key, OSSL_CIPHER_PARAM_IVLEN) == 0) return OSSL_PARAM_set_size_t(params, c->ivlen);
  }
  OSSL_PARAM* t = c->split && c->s.tag_ready ? OSSL_PARAM_locate(params, OSSL_CIPHER_PARAM_AEAD_TAG) : nullptr;
  if (!t) return c->g().get_ctx_params(c->in, params);
  // The tag of a split message is ours; the same checks as the default provider.
  const size_t sz = t->data_size;
  if (sz == 0 || sz > 16) {
    ERR_raise(ERR_LIB_PROV, PROV_R_INVALID_TAG);
    return 0;
  }
  if (!OSSL_PARAM_set_octet_string(t, c->s.tag, sz)) return 0;
  return get_params_except(c->g(), c->in, params, OSSL_CIPHER_PARAM_AEAD_TAG);
}

int gcm_set_ctx_params(void* vctx, const OSSL_PARAM params[]) {
  auto* c = static_cast<GcmCtx*>(vctx);
  // EVP sets "padding" on every init; GCM has no padding and ignores it.
  if (params && params[0].key && !params[1].key && std::strcmp(params[0].key, OSSL_CIPHER_PARAM_PADDING) == 0)
    return 1;
  const int r = c->g().set_ctx_params(c->in, params);
  if (r && params) mirror_set(*c, params);
  return r;
}

int gcm_get_params(OSSL_PARAM params[]) { return g_gcm->get_params(params); }
const OSSL_PARAM* gcm_gettable_params(void* provctx) {
  auto* pc = static_cast<ProvCtx*>(provctx);
  return pc->gcm.gettable_params(pc->gcm.provctx);
}
const OSSL_PARAM* gcm_gettable_ctx_params(void* vctx, void* provctx) {
  auto* pc = static_cast<ProvCtx*>(provctx);
  return pc->gcm.gettable_ctx_params(vctx ? static_cast<GcmCtx*>(vctx)->in : nullptr, pc->gcm.provctx);
}
const OSSL_PARAM* gcm_settable_ctx_params(void* vctx, void* provctx) {
  auto* pc = static_cast<ProvCtx*>(provctx);
  return pc->gcm.settable_ctx_params(vctx ? static_cast<GcmCtx*>(vctx)->in : nullptr, pc->gcm.provctx);
}

template <typename F>
OSSL_DISPATCH entry(int id, F* f) {
  return {id, reinterpret_cast<void (*)()>(f)};
}

}  // namespace

const OSSL_DISPATCH* gcm_dispatch(const Inner& in) {
  static OSSL_DISPATCH table[16];
  int n = 0;
  table[n++] = entry(OSSL_FUNC_CIPHER_NEWCTX, gcm_newctx);
  table[n++] = entry(OSSL_FUNC_CIPHER_FREECTX, gcm_freectx);
  if (in.dupctx) table[n++] = entry(OSSL_FUNC_CIPHER_DUPCTX, gcm_dupctx);
  table[n++] = entry(OSSL_FUNC_CIPHER_ENCRYPT_INIT, gcm_einit);
  table[n++] = entry(OSSL_FUNC_CIPHER_DECRYPT_INIT, gcm_dinit);
  table[n++] = entry(OSSL_FUNC_CIPHER_UPDATE, gcm_update);
  table[n++] = entry(OSSL_FUNC_CIPHER_FINAL, gcm_final);
  if (in.cipher) table[n++] = entry(OSSL_FUNC_CIPHER_CIPHER, gcm_cipher);
  table[n++] = entry(OSSL_FUNC_CIPHER_GET_PARAMS, gcm_get_params);
  table[n++] = entry(OSSL_FUNC_CIPHER_GET_CTX_PARAMS, gcm_get_ctx_params);
  table[n++] = entry(OSSL_FUNC_CIPHER_SET_CTX_PARAMS, gcm_set_ctx_params);
  table[n++] = entry(OSSL_FUNC_CIPHER_GETTABLE_PARAMS, gcm_gettable_params);
  table[n++] = entry(OSSL_FUNC_CIPHER_GETTABLE_CTX_PARAMS, gcm_gettable_ctx_params);
  table[n++] = entry(OSSL_FUNC_CIPHER_SETTABLE_CTX_PARAMS, gcm_settable_ctx_params);
  table[n] = {0, nullptr};
  return table;
}

}  // namespace gpo::provider
