// The gpuoffload OpenSSL provider against the default provider, through EVP
// as applications call it: known answers, random messages split into updates
// of every shape (some offloaded, some not), AAD, IV and tag lengths, in
// place, context copies, reuse, and the error paths. Each test runs twice:
// with the real agent component in-process (CPU backend), so that large
// updates really travel as jobs, and with no agent. The offload size is
// lowered to 1 KiB so that small test messages take the offload paths.
#include <gtest/gtest.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/provider.h>
#include <unistd.h>

#include <memory>
#include <random>
#include <string>
#include <vector>

#include "common/crypto_vectors.h"
#include "gpuoffload.h"
#include "offload/offload_fixture.h"

namespace gpo::test {
namespace {

// Before anything reads them: the provider reads its floor at load, the
// library its minimum on first use.
const bool kEnv = [] {
  setenv("GPO_OFFLOAD_MIN_BYTES", "1024", 1);
  setenv("GPO_TIMEOUT_MS", "10000", 1);
  return true;
}();

struct Lib {
  OSSL_LIB_CTX* ctx = nullptr;
  OSSL_PROVIDER* prov = nullptr;
  Lib() {
    ctx = OSSL_LIB_CTX_new();
    OSSL_PROVIDER_set_default_search_path(ctx, PROVIDER_DIR);
    prov = OSSL_PROVIDER_load(ctx, "gpuoffload");
  }
  ~Lib() {
    if (prov) OSSL_PROVIDER_unload(prov);
    OSSL_LIB_CTX_free(ctx);
  }
};
Lib& lib() {
  static Lib l;
  return l;
}

using CipherPtr = std::unique_ptr<EVP_CIPHER, decltype(&EVP_CIPHER_free)>;
CipherPtr ours(const char* name) { return {EVP_CIPHER_fetch(lib().ctx, name, "provider=gpuoffload"), EVP_CIPHER_free}; }
CipherPtr reference(const char* name) { return {EVP_CIPHER_fetch(nullptr, name, "provider=default"), EVP_CIPHER_free}; }

struct CtxFree {
  void operator()(EVP_CIPHER_CTX* c) const { EVP_CIPHER_CTX_free(c); }
};
using Ctx = std::unique_ptr<EVP_CIPHER_CTX, CtxFree>;

// One GCM message through EVP, the way applications do it.
struct GcmCase {
  bool enc = true;
  Bytes key, iv, aad, text;
  std::vector<size_t> aad_splits, text_splits;  // update sizes; the rest goes in one last update
  bool in_place = false;
  Bytes tag;             // decrypt: the expected tag (its length is the tag length)
  size_t get_tag_len = 16;
};
GcmCase make_case(bool enc, Bytes key, Bytes iv, Bytes aad, Bytes text) {
  GcmCase t;
  t.enc = enc;
  t.key = std::move(key);
  t.iv = std::move(iv);
  t.aad = std::move(aad);
  t.text = std::move(text);
  return t;
}

struct GcmResult {
  bool init = false, updates = false, final = false;
  Bytes out, tag;
  bool operator==(const GcmResult& o) const = default;
};

std::vector<size_t> pieces(size_t n, const std::vector<size_t>& splits) {
  std::vector<size_t> v;
  for (size_t s : splits) {
    if (n == 0) break;
    s = std::min(s, n);
    v.push_back(s);
    n -= s;
  }
  if (n) v.push_back(n);
  return v;
}

GcmResult run_gcm(const EVP_CIPHER* cipher, const GcmCase& t) {
  GcmResult r;
  Ctx c(EVP_CIPHER_CTX_new());
  const int enc = t.enc ? 1 : 0;
  r.init = EVP_CipherInit_ex2(c.get(), cipher, nullptr, nullptr, enc, nullptr) == 1;
  size_t ivlen = t.iv.size();
  OSSL_PARAM p[] = {OSSL_PARAM_construct_size_t(OSSL_CIPHER_PARAM_AEAD_IVLEN, &ivlen), OSSL_PARAM_construct_end()};
  r.init = r.init && EVP_CIPHER_CTX_set_params(c.get(), p) == 1;
  r.init = r.init && EVP_CipherInit_ex2(c.get(), nullptr, t.key.data(), t.iv.data(), enc, nullptr) == 1;
  if (!r.init) return r;
  r.updates = true;
  int n = 0;
  size_t at = 0;
  for (size_t s : pieces(t.aad.size(), t.aad_splits)) {
    r.updates = r.updates && EVP_CipherUpdate(c.get(), nullptr, &n, t.aad.data() + at, int(s)) == 1;
    at += s;
  }
  Bytes buf = t.text;
  r.out.assign(t.text.size(), 0);
  at = 0;
  for (size_t s : pieces(t.text.size(), t.text_splits)) {
    uint8_t* o = t.in_place ? buf.data() + at : r.out.data() + at;
    r.updates = r.updates && EVP_CipherUpdate(c.get(), o, &n, buf.data() + at, int(s)) == 1 && size_t(n) == s;
    at += s;
  }
  if (t.in_place) r.out = buf;
  if (!t.enc && !t.tag.empty()) {
    Bytes tg = t.tag;
    OSSL_PARAM q[] = {OSSL_PARAM_construct_octet_string(OSSL_CIPHER_PARAM_AEAD_TAG, tg.data(), tg.size()),
                      OSSL_PARAM_construct_end()};
    r.updates = r.updates && EVP_CIPHER_CTX_set_params(c.get(), q) == 1;
  }
  uint8_t tail[16];
  r.final = EVP_CipherFinal_ex(c.get(), tail, &n) == 1;
  if (t.enc && r.final) {
    r.tag.assign(t.get_tag_len, 0);
    OSSL_PARAM q[] = {OSSL_PARAM_construct_octet_string(OSSL_CIPHER_PARAM_AEAD_TAG, r.tag.data(), r.tag.size()),
                      OSSL_PARAM_construct_end()};
    if (EVP_CIPHER_CTX_get_params(c.get(), q) != 1) r.tag = {0xee};
  }
  ERR_clear_error();
  return r;
}

class ProviderTest : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override {
    ASSERT_NE(lib().prov, nullptr) << "gpuoffload provider not loadable from " PROVIDER_DIR;
    agent_ = serve_library(GetParam(), "prov");
    gpo_get_stats(&before_);
  }
  void TearDown() override {
    gpo_client_stats after{};
    gpo_get_stats(&after);
    const uint64_t jobs = after.jobs - before_.jobs;
    EXPECT_EQ(after.by_agent - before_.by_agent + after.local - before_.local, jobs);
    if (GetParam()) {
      EXPECT_EQ(after.local - before_.local, 0u) << "jobs fell back to the CPU with the agent up";
      EXPECT_EQ(agent_->server().stats().jobs_done, jobs);
      if (expect_jobs_) {
        EXPECT_GT(jobs, 0u) << "nothing was offloaded";
      }
    } else {
      EXPECT_EQ(jobs, 0u) << "no agent: the provider should not build requests";
    }
    gpo_set_socket(nullptr);
    agent_.reset();
  }
  bool expect_jobs_ = true;
  std::unique_ptr<InProcessAgent> agent_;
  gpo_client_stats before_{};
};

INSTANTIATE_TEST_SUITE_P(Path, ProviderTest, ::testing::Values(true, false),
                         [](const auto& i) { return i.param ? "agent" : "no_agent"; });

// --- known answers ------------------------------------------------------------------

TEST_P(ProviderTest, GcmKnownAnswers) {
  expect_jobs_ = false;  // the spec's messages are smaller than 1 KiB
  auto gcm = ours("AES-256-GCM");
  ASSERT_TRUE(gcm);
  struct V {
    const char *key, *iv, *aad, *pt, *ct, *tag;
  };
  std::vector<V> vs;
  for (const auto& v : kGcmVectors) vs.push_back({v.key, v.iv, v.aad, v.pt, v.ct, v.tag});
  // GCM spec cases 17 and 18: 8- and 60-byte IVs (J0 from GHASH: never split).
  const char* k = "feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308";
  const char* a = "feedfacedeadbeeffeedfacedeadbeefabaddad2";
  const char* p =
      "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39";
  vs.push_back({k, "cafebabefacedbad", a, p,
                "c3762df1ca787d32ae47c13bf19844cbaf1ae14d0b976afac52ff7d79bba9de0feb582d33934a4f0954cc2363bc73f7862ac430e64abe499f47c9b1f",
                "3a337dbf46a792c45e454913fe2ea8f2"});
  vs.push_back({k,
                "9313225df88406e555909c5aff5269aa6a7a9538534f7da1e4c303d2a318a728c3c0c95156809539fcf0e2429a6b525416aedbf5a0de6a57a637b39b",
                a, p,
                "5a8def2f0c9e53f1f75d7853659e2a20eeb2b22aafde6419a058ab4f6f746bf40fc0c3b780f244452da3ebf1c5d82cdea2418997200ef82e44ae7e3f",
                "a44a8266ee1c8eb0c8b5d4cf5ae9f19a"});
  for (const auto& v : vs) {
    GcmCase t = make_case(true, hex(v.key), hex(v.iv), hex(v.aad), hex(v.pt));
    for (const auto& splits : std::vector<std::vector<size_t>>{{}, {1}, {15, 17}, {16, 16, 1}}) {
      t.enc = true;
      t.text_splits = splits;
      t.tag.clear();
      auto r = run_gcm(gcm.get(), t);
      EXPECT_TRUE(r.final);
      EXPECT_EQ(hex(r.out), v.ct);
      EXPECT_EQ(hex(r.tag), v.tag);
      t.enc = false;
      Bytes ct = hex(v.ct);
      GcmCase d = make_case(false, t.key, t.iv, t.aad, ct);
      d.text_splits = splits;
      d.tag = hex(v.tag);
      auto rd = run_gcm(gcm.get(), d);
      EXPECT_TRUE(rd.final);
      EXPECT_EQ(hex(rd.out), v.pt);
    }
  }
}

// The GCM spec vectors stretched past the offload size: the same key, IV and
// AAD over 100 KiB, against the default provider.
TEST_P(ProviderTest, GcmLongMessagesMatchDefault) {
  auto gcm = ours("AES-256-GCM");
  auto ref = reference("AES-256-GCM");
  for (const auto& v : kGcmVectors) {
    GcmCase t = make_case(true, hex(v.key), hex(v.iv), hex(v.aad), random_bytes(100 << 10, 7));
    auto a = run_gcm(gcm.get(), t), b = run_gcm(ref.get(), t);
    EXPECT_TRUE(a.final);
    EXPECT_EQ(a, b) << v.name;
    GcmCase d = make_case(false, t.key, t.iv, t.aad, b.out);
    d.tag = b.tag;
    auto da = run_gcm(gcm.get(), d);
    EXPECT_TRUE(da.final) << v.name;
    EXPECT_EQ(da.out, t.text) << v.name;
  }
}

TEST_P(ProviderTest, CtrKnownAnswerAndSplits) {
  auto ctr = ours("AES-256-CTR");
  auto ref = reference("AES-256-CTR");
  ASSERT_TRUE(ctr);
  auto run = [](const EVP_CIPHER* c, const Bytes& key, const Bytes& iv, const Bytes& in, const std::vector<size_t>& sp) {
    Ctx x(EVP_CIPHER_CTX_new());
    EVP_EncryptInit_ex2(x.get(), c, key.data(), iv.data(), nullptr);
    Bytes out(in.size());
    size_t at = 0;
    int n = 0;
    for (size_t s : pieces(in.size(), sp)) {
      EXPECT_EQ(EVP_EncryptUpdate(x.get(), out.data() + at, &n, in.data() + at, int(s)), 1);
      at += s;
    }
    EXPECT_EQ(EVP_EncryptFinal_ex(x.get(), out.data(), &n), 1);
    return out;
  };
  EXPECT_EQ(hex(run(ctr.get(), hex(kCtrKey), hex(kCtrIv), hex(kCtrPt), {})), kCtrCt);
  EXPECT_EQ(hex(run(ctr.get(), hex(kCtrKey), hex(kCtrIv), hex(kCtrPt), {7, 16, 1})), kCtrCt);
  // Large, odd splits, and counters that carry across 32, 64 and 128 bits.
  const Bytes data = random_bytes(200 << 10, 3);
  for (const char* iv : {"000102030405060708090a0bfffffff0", "0001020304050607fffffffffffffff0",
                         "fffffffffffffffffffffffffffffff0", "f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff"})
    for (const auto& sp : std::vector<std::vector<size_t>>{{}, {5}, {1000, 3000, 70001}, {4096, 65536, 33}})
      EXPECT_EQ(run(ctr.get(), hex(kCtrKey), hex(iv), data, sp), run(ref.get(), hex(kCtrKey), hex(iv), data, {}))
          << iv;
}

TEST_P(ProviderTest, Sha256KnownAnswers) {
  expect_jobs_ = false;  // a digest stream is sequential: never offloaded
  std::unique_ptr<EVP_MD, decltype(&EVP_MD_free)> md(EVP_MD_fetch(lib().ctx, "SHA2-256", "provider=gpuoffload"),
                                                      EVP_MD_free);
  ASSERT_TRUE(md);
  for (const auto& v : sha_vectors()) {
    for (size_t step : {size_t(0), size_t(1), size_t(63), size_t(4096)}) {
      std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> c(EVP_MD_CTX_new(), EVP_MD_CTX_free);
      ASSERT_EQ(EVP_DigestInit_ex2(c.get(), md.get(), nullptr), 1);
      const auto* p = reinterpret_cast<const uint8_t*>(v.msg.data());
      size_t left = v.msg.size();
      while (left) {
        size_t s = step ? std::min(step, left) : left;
        ASSERT_EQ(EVP_DigestUpdate(c.get(), p, s), 1);
        p += s, left -= s;
      }
      // A copy mid-way finishes the same.
      std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> d(EVP_MD_CTX_new(), EVP_MD_CTX_free);
      ASSERT_EQ(EVP_MD_CTX_copy_ex(d.get(), c.get()), 1);
      uint8_t out[32], out2[32];
      unsigned n = 0;
      ASSERT_EQ(EVP_DigestFinal_ex(c.get(), out, &n), 1);
      ASSERT_EQ(EVP_DigestFinal_ex(d.get(), out2, &n), 1);
      EXPECT_EQ(hex(out, 32), v.digest);
      EXPECT_EQ(hex(out2, 32), v.digest);
    }
  }
}

// --- random differential tests -----------------------------------------------------

TEST_P(ProviderTest, GcmRandomMessagesMatchDefault) {
  auto gcm = ours("AES-256-GCM");
  auto ref = reference("AES-256-GCM");
  std::mt19937 rng(GetParam() ? 11 : 12);
  auto pick = [&](std::initializer_list<size_t> v) { return *(v.begin() + rng() % v.size()); };
  for (int i = 0; i < 60; ++i) {
    GcmCase t;
    t.enc = rng() % 2;
    t.key = random_bytes(32, rng());
    t.iv = random_bytes(i % 7 == 6 ? pick({8, 16, 60}) : 12, rng());
    t.aad = random_bytes(pick({0, 1, 13, 16, 17, 100, 70000}), rng());
    t.text = random_bytes(pick({0, 15, 1000, 1024, 4096 + 3, 65536, 100003, 300000}), rng());
    for (int k = rng() % 4; k > 0; --k) t.text_splits.push_back(pick({1, 15, 16, 100, 1023, 1024, 5000, 70000}));
    for (int k = rng() % 3; k > 0; --k) t.aad_splits.push_back(pick({1, 13, 16, 50}));
    t.in_place = rng() % 2;
    if (t.enc) {
      t.get_tag_len = pick({4, 8, 12, 13, 16});
      auto a = run_gcm(gcm.get(), t), b = run_gcm(ref.get(), t);
      ASSERT_EQ(a, b) << "encrypt case " << i << ": text " << t.text.size() << " aad " << t.aad.size() << " iv "
                      << t.iv.size();
    } else {
      // A valid tag from the reference, cut to its length, then a bad one.
      GcmCase e = t;
      e.enc = true;
      auto enc = run_gcm(ref.get(), e);
      t.text = enc.out;
      t.tag = enc.tag;
      t.tag.resize(pick({4, 8, 12, 16}));
      auto a = run_gcm(gcm.get(), t), b = run_gcm(ref.get(), t);
      ASSERT_EQ(a, b) << "decrypt case " << i;
      EXPECT_TRUE(a.final);
      t.tag[rng() % t.tag.size()] ^= 1;
      a = run_gcm(gcm.get(), t), b = run_gcm(ref.get(), t);
      ASSERT_EQ(a, b) << "bad tag, decrypt case " << i;
      EXPECT_FALSE(a.final);
    }
  }
}

// Context copies in the middle of a split message, then reuse for more messages.
TEST_P(ProviderTest, GcmCopyAndReuse) {
  auto gcm = ours("AES-256-GCM");
  auto ref = reference("AES-256-GCM");
  const Bytes key = random_bytes(32, 1), aad = random_bytes(20, 2), data = random_bytes(50000, 3);
  auto transcript = [&](const EVP_CIPHER* cipher) {
    std::vector<Bytes> outs;
    Ctx a(EVP_CIPHER_CTX_new());
    for (int msg = 0; msg < 3; ++msg) {
      Bytes iv = random_bytes(12, 10 + msg);
      EXPECT_EQ(EVP_EncryptInit_ex2(a.get(), msg == 0 ? cipher : nullptr, key.data(), iv.data(), nullptr), 1);
      int n = 0;
      EXPECT_EQ(EVP_EncryptUpdate(a.get(), nullptr, &n, aad.data(), int(aad.size())), 1);
      Bytes out(data.size());
      EXPECT_EQ(EVP_EncryptUpdate(a.get(), out.data(), &n, data.data(), 20000), 1);
      Ctx b(EVP_CIPHER_CTX_new());
      EXPECT_EQ(EVP_CIPHER_CTX_copy(b.get(), a.get()), 1);
      Bytes out_b = out;
      EXPECT_EQ(EVP_EncryptUpdate(a.get(), out.data() + 20000, &n, data.data() + 20000, 30000), 1);
      EXPECT_EQ(EVP_EncryptUpdate(b.get(), out_b.data() + 20000, &n, data.data() + 20000, 7), 1);
      EXPECT_EQ(EVP_EncryptUpdate(b.get(), out_b.data() + 20007, &n, data.data() + 20007, 29993), 1);
      uint8_t tag[16], tag_b[16];
      EXPECT_EQ(EVP_EncryptFinal_ex(a.get(), tag, &n), 1);
      EXPECT_EQ(EVP_EncryptFinal_ex(b.get(), tag_b, &n), 1);
      EXPECT_EQ(EVP_CIPHER_CTX_ctrl(a.get(), EVP_CTRL_GCM_GET_TAG, 16, tag), 1);
      EXPECT_EQ(EVP_CIPHER_CTX_ctrl(b.get(), EVP_CTRL_GCM_GET_TAG, 16, tag_b), 1);
      EXPECT_EQ(out, out_b);
      EXPECT_EQ(hex(tag, 16), hex(tag_b, 16));
      outs.push_back(out);
      outs.push_back(Bytes(tag, tag + 16));
    }
    return outs;
  };
  EXPECT_EQ(transcript(gcm.get()), transcript(ref.get()));
}

// Small updates first, then large ones: encrypt moves to the offload on the
// way (the default context's state read back), decrypt stays on the CPU.
TEST_P(ProviderTest, GcmSmallThenLargeUpdates) {
  auto gcm = ours("AES-256-GCM");
  auto ref = reference("AES-256-GCM");
  for (bool enc : {true, false})
    for (size_t first : {size_t(1), size_t(16), size_t(100), size_t(1000)}) {
      GcmCase t = make_case(enc, random_bytes(32, 5), random_bytes(12, 6), random_bytes(29, 7), random_bytes(90000, 8));
      t.text_splits = {first, 3, 40000, 17};
      if (!enc) {
        GcmCase e = t;
        e.enc = true;
        auto r = run_gcm(ref.get(), e);
        t.text = r.out;
        t.tag = r.tag;
      }
      gpo_client_stats s0{}, s1{};
      gpo_get_stats(&s0);
      EXPECT_EQ(run_gcm(gcm.get(), t), run_gcm(ref.get(), t)) << (enc ? "encrypt" : "decrypt") << " first " << first;
      gpo_get_stats(&s1);
      // The decrypt's state cannot be read back from the default context.
      if (GetParam()) {
        EXPECT_EQ(s1.jobs > s0.jobs, enc) << (enc ? "encrypt" : "decrypt") << " first " << first;
      }
    }
}

// --- error paths: the same answers as the default provider ---------------------------

TEST_P(ProviderTest, GcmErrorsMatchDefault) {
  auto gcm = ours("AES-256-GCM");
  auto ref = reference("AES-256-GCM");
  const Bytes key = random_bytes(32, 1), iv = random_bytes(12, 2), data = random_bytes(4096, 3);
  // Each scenario returns the sequence of EVP return codes it saw.
  using Scenario = std::vector<int> (*)(const EVP_CIPHER*, const Bytes&, const Bytes&, const Bytes&);
  std::vector<std::pair<const char*, Scenario>> scenarios = {
      {"update after final",
       [](const EVP_CIPHER* c, const Bytes& k, const Bytes& v, const Bytes& d) {
         Ctx x(EVP_CIPHER_CTX_new());
         Bytes o(d.size() + 16);
         int n = 0;
         std::vector<int> r{EVP_EncryptInit_ex2(x.get(), c, k.data(), v.data(), nullptr),
                            EVP_EncryptUpdate(x.get(), o.data(), &n, d.data(), int(d.size())),
                            EVP_EncryptFinal_ex(x.get(), o.data(), &n),
                            EVP_EncryptUpdate(x.get(), o.data(), &n, d.data(), int(d.size())),
                            EVP_EncryptFinal_ex(x.get(), o.data(), &n)};
         return r;
       }},
      {"aad after text",
       [](const EVP_CIPHER* c, const Bytes& k, const Bytes& v, const Bytes& d) {
         Ctx x(EVP_CIPHER_CTX_new());
         Bytes o(d.size() + 16);
         int n = 0;
         return std::vector<int>{EVP_EncryptInit_ex2(x.get(), c, k.data(), v.data(), nullptr),
                                 EVP_EncryptUpdate(x.get(), o.data(), &n, d.data(), int(d.size())),
                                 EVP_EncryptUpdate(x.get(), nullptr, &n, d.data(), 13)};
       }},
      {"decrypt final without tag",
       [](const EVP_CIPHER* c, const Bytes& k, const Bytes& v, const Bytes& d) {
         Ctx x(EVP_CIPHER_CTX_new());
         Bytes o(d.size() + 16);
         int n = 0;
         return std::vector<int>{EVP_DecryptInit_ex2(x.get(), c, k.data(), v.data(), nullptr),
                                 EVP_DecryptUpdate(x.get(), o.data(), &n, d.data(), int(d.size())),
                                 EVP_DecryptFinal_ex(x.get(), o.data(), &n)};
       }},
      {"get tag of a decrypt, set tag of an encrypt, tag too long",
       [](const EVP_CIPHER* c, const Bytes& k, const Bytes& v, const Bytes& d) {
         Ctx x(EVP_CIPHER_CTX_new()), y(EVP_CIPHER_CTX_new());
         Bytes o(d.size() + 16);
         uint8_t tag[32] = {};
         int n = 0;
         return std::vector<int>{EVP_DecryptInit_ex2(x.get(), c, k.data(), v.data(), nullptr),
                                 EVP_DecryptUpdate(x.get(), o.data(), &n, d.data(), int(d.size())),
                                 EVP_CIPHER_CTX_ctrl(x.get(), EVP_CTRL_GCM_GET_TAG, 16, tag),
                                 EVP_EncryptInit_ex2(y.get(), c, k.data(), v.data(), nullptr),
                                 EVP_EncryptUpdate(y.get(), o.data(), &n, d.data(), int(d.size())),
                                 EVP_CIPHER_CTX_ctrl(y.get(), EVP_CTRL_GCM_SET_TAG, 16, tag),
                                 EVP_CIPHER_CTX_ctrl(y.get(), EVP_CTRL_GCM_GET_TAG, 16, tag),
                                 EVP_EncryptFinal_ex(y.get(), o.data(), &n),
                                 EVP_CIPHER_CTX_ctrl(y.get(), EVP_CTRL_GCM_GET_TAG, 17, tag),
                                 EVP_CIPHER_CTX_ctrl(y.get(), EVP_CTRL_GCM_GET_TAG, 0, tag),
                                 EVP_CIPHER_CTX_ctrl(y.get(), EVP_CTRL_GCM_GET_TAG, 16, tag)};
       }},
      {"no key",
       [](const EVP_CIPHER* c, const Bytes&, const Bytes& v, const Bytes& d) {
         Ctx x(EVP_CIPHER_CTX_new());
         Bytes o(d.size() + 16);
         int n = 0;
         return std::vector<int>{EVP_EncryptInit_ex2(x.get(), c, nullptr, v.data(), nullptr),
                                 EVP_EncryptUpdate(x.get(), o.data(), &n, d.data(), int(d.size()))};
       }},
  };
  for (const auto& [name, f] : scenarios) {
    EXPECT_EQ(f(gcm.get(), key, iv, data), f(ref.get(), key, iv, data)) << name;
    ERR_clear_error();
  }
}

// No IV given: both providers make one up; ours must use (and report) its own.
TEST_P(ProviderTest, GcmGeneratedIvIsReported) {
  auto gcm = ours("AES-256-GCM");
  auto ref = reference("AES-256-GCM");
  const Bytes key = random_bytes(32, 9), data = random_bytes(30000, 10);
  Ctx x(EVP_CIPHER_CTX_new());
  ASSERT_EQ(EVP_EncryptInit_ex2(x.get(), gcm.get(), key.data(), nullptr, nullptr), 1);
  Bytes out(data.size());
  int n = 0;
  ASSERT_EQ(EVP_EncryptUpdate(x.get(), out.data(), &n, data.data(), int(data.size())), 1);
  uint8_t tag[16], iv[12];
  ASSERT_EQ(EVP_EncryptFinal_ex(x.get(), tag, &n), 1);
  ASSERT_EQ(EVP_CIPHER_CTX_ctrl(x.get(), EVP_CTRL_GCM_GET_TAG, 16, tag), 1);
  OSSL_PARAM p[] = {OSSL_PARAM_construct_octet_string(OSSL_CIPHER_PARAM_IV, iv, 12), OSSL_PARAM_construct_end()};
  ASSERT_EQ(EVP_CIPHER_CTX_get_params(x.get(), p), 1);
  GcmCase d = make_case(false, key, Bytes(iv, iv + 12), {}, out);
  d.tag = Bytes(tag, tag + 16);
  auto r = run_gcm(ref.get(), d);
  EXPECT_TRUE(r.final);
  EXPECT_EQ(r.out, data);
}

// CTR's parameters after updates that were partly offloaded.
TEST_P(ProviderTest, CtrParamsMatchDefault) {
  auto ctr = ours("AES-256-CTR");
  auto ref = reference("AES-256-CTR");
  const Bytes key = random_bytes(32, 1), iv = random_bytes(16, 2), data = random_bytes(80000, 3);
  Ctx a(EVP_CIPHER_CTX_new()), b(EVP_CIPHER_CTX_new());
  ASSERT_EQ(EVP_EncryptInit_ex2(a.get(), ctr.get(), key.data(), iv.data(), nullptr), 1);
  ASSERT_EQ(EVP_EncryptInit_ex2(b.get(), ref.get(), key.data(), iv.data(), nullptr), 1);
  Bytes oa(data.size()), ob(data.size());
  size_t at = 0;
  for (size_t s : {size_t(5), size_t(40000), size_t(11), size_t(39984)}) {
    int n = 0;
    ASSERT_EQ(EVP_EncryptUpdate(a.get(), oa.data() + at, &n, data.data() + at, int(s)), 1);
    ASSERT_EQ(EVP_EncryptUpdate(b.get(), ob.data() + at, &n, data.data() + at, int(s)), 1);
    at += s;
    uint8_t iva[16], ivb[16], uiva[16], uivb[16];
    unsigned numa = 0, numb = 0;
    OSSL_PARAM pa[] = {OSSL_PARAM_construct_octet_string(OSSL_CIPHER_PARAM_IV, iva, 16),
                       OSSL_PARAM_construct_octet_string(OSSL_CIPHER_PARAM_UPDATED_IV, uiva, 16),
                       OSSL_PARAM_construct_uint(OSSL_CIPHER_PARAM_NUM, &numa), OSSL_PARAM_construct_end()};
    OSSL_PARAM pb[] = {OSSL_PARAM_construct_octet_string(OSSL_CIPHER_PARAM_IV, ivb, 16),
                       OSSL_PARAM_construct_octet_string(OSSL_CIPHER_PARAM_UPDATED_IV, uivb, 16),
                       OSSL_PARAM_construct_uint(OSSL_CIPHER_PARAM_NUM, &numb), OSSL_PARAM_construct_end()};
    ASSERT_EQ(EVP_CIPHER_CTX_get_params(a.get(), pa), 1);
    ASSERT_EQ(EVP_CIPHER_CTX_get_params(b.get(), pb), 1);
    EXPECT_EQ(hex(iva, 16), hex(ivb, 16)) << "after " << at;
    EXPECT_EQ(hex(uiva, 16), hex(uivb, 16)) << "after " << at;
    EXPECT_EQ(numa, numb) << "after " << at;
  }
  EXPECT_EQ(oa, ob);
}

}  // namespace
}  // namespace gpo::test

namespace gpo::test {
namespace {

// Updates larger than one job (a 1 MiB slab): several jobs per update, the
// GHASH pieces joined in order.
TEST_P(ProviderTest, UpdatesLargerThanOneJob) {
  setenv("GPO_SLAB_MB", "1", 1);
  gpo_set_socket(GetParam() ? agent_->socket().c_str() : ("/nonexistent/gpo-" + std::to_string(getpid())).c_str());
  auto gcm = ours("AES-256-GCM");
  auto ref = reference("AES-256-GCM");
  for (bool enc : {true, false}) {
    GcmCase t = make_case(enc, random_bytes(32, 1), random_bytes(12, 2), random_bytes(40, 3), random_bytes(3 << 20, 4));
    t.text_splits = {(3 << 19) + 5};
    if (!enc) {
      GcmCase e = t;
      e.enc = true;
      auto r = run_gcm(ref.get(), e);
      t.text = r.out;
      t.tag = r.tag;
    }
    EXPECT_EQ(run_gcm(gcm.get(), t), run_gcm(ref.get(), t)) << (enc ? "encrypt" : "decrypt");
  }
  auto ctr = ours("AES-256-CTR");
  auto cref = reference("AES-256-CTR");
  const Bytes key = random_bytes(32, 5), iv = random_bytes(16, 6), data = random_bytes(3 << 20, 7);
  Bytes a(data.size()), b(data.size());
  for (auto [c, o] : {std::pair{ctr.get(), &a}, std::pair{cref.get(), &b}}) {
    Ctx x(EVP_CIPHER_CTX_new());
    int n = 0;
    ASSERT_EQ(EVP_EncryptInit_ex2(x.get(), c, key.data(), iv.data(), nullptr), 1);
    ASSERT_EQ(EVP_EncryptUpdate(x.get(), o->data(), &n, data.data(), 1000001), 1);
    ASSERT_EQ(EVP_EncryptUpdate(x.get(), o->data() + 1000001, &n, data.data() + 1000001, int(data.size()) - 1000001), 1);
  }
  EXPECT_EQ(a, b);
  unsetenv("GPO_SLAB_MB");
}

}  // namespace
}  // namespace gpo::test

#include "provider/gf128.h"

namespace gpo::test {
namespace {

// The carry-less multiply against SP 800-38D's bit-serial algorithm, and the
// powers of H against repeated multiplication (the GCM tests above exercise
// whichever multiply this CPU takes; this keeps both right).
TEST(Gf128, ClmulMatchesBitSerialAndPowers) {
  using namespace gpo::provider::gf128;
  std::mt19937_64 rng(5);
  for (int i = 0; i < 2000; ++i) {
    const U128 x{rng(), rng()}, y{rng(), rng()};
    ASSERT_TRUE(mul(x, y) == mul_bitwise(x, y)) << i;
  }
  const U128 one{0x8000000000000000ull, 0}, h{rng(), rng()};
  EXPECT_TRUE(mul_bitwise(h, one) == h);
  Powers pw;
  pw.reset(h);
  U128 p = one;
  for (uint64_t n = 0; n < 300; ++n) {
    ASSERT_TRUE(pw.pow(n) == p) << n;
    p = mul_bitwise(p, h);
  }
  // A GHASH step of the GCM spec's test case 2: H = E(0^128, 0^256 key)... via
  // case 14 (AES-256, zero key): H = dc95c078a2408989ad48a21492842087, and
  // GHASH(C) for C = cea7403d4d606b6e074ec5d3baf39d18 with the length block
  // 0x80 gives X2 = 83de425c5edc5d498f382c441041ca92.
  const U128 hh = load(hex("dc95c078a2408989ad48a21492842087").data());
  const U128 c = load(hex("cea7403d4d606b6e074ec5d3baf39d18").data());
  const U128 x1 = mul_bitwise(c, hh);
  const U128 x2 = mul_bitwise(x1 ^ length_block(0, 16), hh);
  uint8_t out[16];
  store(x2, out);
  EXPECT_EQ(hex(out, 16), "83de425c5edc5d498f382c441041ca92");
}

}  // namespace
}  // namespace gpo::test
