// libgpuoffload against OpenSSL and libzstd, through the real agent component
// (in-process, CPU backend, socket doorbell) and without any agent: published
// vectors (NIST GCM spec / SP 800-38A / FIPS 180-4), empty and odd sizes, the
// async API with many jobs in flight, zstd frames that `zstd -d` reads.
#include <gtest/gtest.h>
#include <zstd.h>

#include <cstdio>
#include <fstream>

#include "gpuoffload.h"
#include "offload/offload_fixture.h"

using namespace gpo::test;

namespace {

class OffloadOps : public OffloadPathTest {
 protected:
  OffloadOps() : OffloadPathTest("ops", false) {}
};

const char* kGcmKey = "feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308";
const char* kGcmIv = "cafebabefacedbaddecaf888";
const char* kGcmPt =
    "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72"
    "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b391aafd255";
const char* kGcmCt15 =
    "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa"
    "8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662898015ad";

TEST_P(OffloadOps, AesGcmNistVectors) {
  // The GCM spec's test cases 13, 14 (zero key), 15 and 16 (AES-256).
  Bytes zero_key(32, 0), zero_iv(12, 0), tag(16);
  uint8_t t[16];
  ASSERT_EQ(gpo_aes256_gcm_encrypt(zero_key.data(), zero_iv.data(), nullptr, 0, nullptr, 0, nullptr, t), GPO_OK);
  EXPECT_EQ(hex(t, 16), "530f8afbc74536b9a963b4f1c4cb738b");

  Bytes p14(16, 0), c14(16);
  ASSERT_EQ(gpo_aes256_gcm_encrypt(zero_key.data(), zero_iv.data(), nullptr, 0, p14.data(), 16, c14.data(), t), GPO_OK);
  EXPECT_EQ(hex(c14), "cea7403d4d606b6e074ec5d3baf39d18");
  EXPECT_EQ(hex(t, 16), "d0d1c8a799996bf0265b98b5d48ab919");

  Bytes key = unhex(kGcmKey), iv = unhex(kGcmIv), pt = unhex(kGcmPt), ct(pt.size());
  ASSERT_EQ(gpo_aes256_gcm_encrypt(key.data(), iv.data(), nullptr, 0, pt.data(), pt.size(), ct.data(), t), GPO_OK);
  EXPECT_EQ(hex(ct), kGcmCt15);
  EXPECT_EQ(hex(t, 16), "b094dac5d93471bdec1a502270e3cc6c");

  Bytes aad = unhex("feedfacedeadbeeffeedfacedeadbeefabaddad2");
  Bytes pt16(pt.begin(), pt.begin() + 60), ct16(60);
  ASSERT_EQ(gpo_aes256_gcm_encrypt(key.data(), iv.data(), aad.data(), aad.size(), pt16.data(), 60, ct16.data(), t),
            GPO_OK);
  EXPECT_EQ(hex(ct16), std::string(kGcmCt15).substr(0, 120));
  EXPECT_EQ(hex(t, 16), "76fc6ece0f4e1768cddf8853bb2d551b");

  Bytes back(60);
  EXPECT_EQ(gpo_aes256_gcm_decrypt(key.data(), iv.data(), aad.data(), aad.size(), ct16.data(), 60, back.data(), t),
            GPO_OK);
  EXPECT_EQ(back, pt16);
  t[0] ^= 1;  // a forged tag is refused
  EXPECT_EQ(gpo_aes256_gcm_decrypt(key.data(), iv.data(), aad.data(), aad.size(), ct16.data(), 60, back.data(), t),
            GPO_ERR_AUTH);
}

TEST_P(OffloadOps, AesCtrNistVector) {
  // SP 800-38A F.5.5, CTR-AES256.Encrypt, first two blocks.
  Bytes key = unhex("603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4");
  Bytes iv = unhex("f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff");
  Bytes pt = unhex("6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51"), ct(32);
  ASSERT_EQ(gpo_aes256_ctr(key.data(), iv.data(), pt.data(), pt.size(), ct.data()), GPO_OK);
  EXPECT_EQ(hex(ct), "601ec313775789a5b7a7f504bbf3d228f443e3ca4d62b59aca84e990cacaf5c5");
}

TEST_P(OffloadOps, AesOddSizesMatchOpenSsl) {
  for (size_t n : {0ul, 1ul, 15ul, 16ul, 17ul, 255ul, 4095ul, 65537ul, (1ul << 20) + 3}) {
    Bytes key = random_bytes(32, uint32_t(n)), iv = random_bytes(12, uint32_t(n) + 1);
    Bytes aad = random_bytes(n % 37, uint32_t(n) + 2), pt = random_bytes(n, uint32_t(n) + 3);
    Bytes ref_tag, ref = ref_gcm_encrypt(key, iv, aad, pt, ref_tag);
    Bytes ct(n), tag(16), back(n);
    ASSERT_EQ(gpo_aes256_gcm_encrypt(key.data(), iv.data(), aad.data(), aad.size(), pt.data(), n, ct.data(),
                                     tag.data()),
              GPO_OK)
        << n;
    EXPECT_EQ(ct, ref) << n;
    EXPECT_EQ(tag, ref_tag) << n;
    ASSERT_EQ(gpo_aes256_gcm_decrypt(key.data(), iv.data(), aad.data(), aad.size(), ct.data(), n, back.data(),
                                     tag.data()),
              GPO_OK)
        << n;
    EXPECT_EQ(back, pt) << n;
    Bytes civ = random_bytes(16, uint32_t(n) + 4), cct(n);
    ASSERT_EQ(gpo_aes256_ctr(key.data(), civ.data(), pt.data(), n, cct.data()), GPO_OK);
    EXPECT_EQ(cct, ref_ctr(key, civ, pt)) << n;
  }
}

TEST_P(OffloadOps, Sha256Fips180Vectors) {
  std::string million(1000000, 'a');
  const char* msgs[] = {"abc", "", "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", million.c_str()};
  size_t lens[] = {3, 0, 56, million.size()};
  uint8_t d[4 * 32];
  ASSERT_EQ(gpo_sha256_batch(reinterpret_cast<const void* const*>(msgs), lens, 4, d), GPO_OK);
  EXPECT_EQ(hex(d, 32), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(hex(d + 32, 32), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(hex(d + 64, 32), "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  EXPECT_EQ(hex(d + 96, 32), "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST_P(OffloadOps, Sha256BatchOddSizes) {
  std::vector<Bytes> msgs;
  for (size_t n : {0ul, 1ul, 55ul, 56ul, 63ul, 64ul, 65ul, 1000ul, 4096ul, 100003ul}) msgs.push_back(random_bytes(n, 7));
  std::vector<const void*> p;
  std::vector<size_t> l;
  for (auto& m : msgs) {
    p.push_back(m.data());
    l.push_back(m.size());
  }
  Bytes d(32 * msgs.size());
  ASSERT_EQ(gpo_sha256_batch(p.data(), l.data(), msgs.size(), d.data()), GPO_OK);
  for (size_t i = 0; i < msgs.size(); ++i)
    EXPECT_EQ(Bytes(d.begin() + 32 * i, d.begin() + 32 * (i + 1)), ref_sha256(msgs[i])) << msgs[i].size();
}

TEST_P(OffloadOps, ZstdRoundTripByteIdentical) {
  for (size_t n : {0ul, 1ul, 100ul, 4097ul, 300000ul}) {
    for (int level : {0, 1, 3, 9, -5}) {
      Bytes in = text_bytes(n, uint32_t(n)), out(gpo_zstd_compress_bound(n));
      size_t got = 0;
      ASSERT_EQ(gpo_zstd_compress(out.data(), out.size(), in.data(), n, level, &got), GPO_OK);
      out.resize(got);
      EXPECT_EQ(out, ref_zstd(in, level)) << "not byte-identical to ZSTD_compress, n=" << n << " level " << level;
      Bytes back(n + 1);
      size_t m = 0;
      ASSERT_EQ(gpo_zstd_decompress(back.data(), back.size(), out.data(), out.size(), &m), GPO_OK);
      back.resize(m);
      EXPECT_EQ(back, in);
    }
  }
}

TEST_P(OffloadOps, ZstdErrorsAreTheLibrarysErrors) {
  Bytes in = text_bytes(50000, 3), out(gpo_zstd_compress_bound(in.size()));
  size_t got = 0;
  ASSERT_EQ(gpo_zstd_compress(out.data(), out.size(), in.data(), in.size(), 3, &got), GPO_OK);
  size_t small = 0;
  EXPECT_EQ(gpo_zstd_compress(out.data(), 10, in.data(), in.size(), 3, &small), GPO_ERR_DST_TOO_SMALL);
  Bytes back(in.size() - 1);
  size_t m = 0;
  EXPECT_EQ(gpo_zstd_decompress(back.data(), back.size(), out.data(), got, &m), GPO_ERR_DST_TOO_SMALL);
  Bytes junk = random_bytes(1000, 9);
  EXPECT_EQ(gpo_zstd_decompress(back.data(), back.size(), junk.data(), junk.size(), &m), GPO_ERR_CORRUPT);
}

TEST_P(OffloadOps, ZstdFrameReadByZstdCli) {
  if (access("/usr/bin/zstd", X_OK) != 0) GTEST_SKIP() << "no /usr/bin/zstd";
  Bytes in = text_bytes(200000, 11), out(gpo_zstd_compress_bound(in.size()));
  size_t got = 0;
  ASSERT_EQ(gpo_zstd_compress(out.data(), out.size(), in.data(), in.size(), 5, &got), GPO_OK);
  std::string f = "/tmp/gpo-zstd-" + std::to_string(getpid()) + ".zst";
  { std::ofstream(f, std::ios::binary).write(reinterpret_cast<char*>(out.data()), std::streamsize(got)); }
  std::string cmd = "/usr/bin/zstd -q -d -c " + f;
  FILE* p = popen(cmd.c_str(), "r");
  ASSERT_NE(p, nullptr);
  Bytes back(in.size() + 10);
  size_t n = fread(back.data(), 1, back.size(), p);
  EXPECT_EQ(pclose(p), 0);
  unlink(f.c_str());
  back.resize(n);
  EXPECT_EQ(back, in);
}

TEST_P(OffloadOps, AsyncManyInFlightFromOneThread) {
  constexpr int kJobs = 600;  // more than fit at once in neither slab nor batch
  bursts_ = true;             // 600 socket doorbells at once: a loaded host's agent may fall behind
  std::vector<Bytes> in(kJobs), out(kJobs), tags(kJobs, Bytes(16));
  std::vector<gpo_handle*> h(kJobs, nullptr);
  Bytes key = random_bytes(32, 1), iv = random_bytes(12, 2);
  for (int i = 0; i < kJobs; ++i) {
    in[i] = random_bytes(size_t(i * 37 % 5000), uint32_t(i));
    out[i].resize(std::max<size_t>(in[i].size(), 32) + 1);
    gpo_request r{};
    r.op = i % 2 ? GPO_SHA256 : GPO_AES256_GCM_ENCRYPT;
    r.in = in[i].data();
    r.in_len = in[i].size();
    r.out = out[i].data();
    r.out_cap = r.op == GPO_SHA256 ? 32 : in[i].size();
    if (r.op != GPO_SHA256) {
      r.key = key.data();
      r.iv = iv.data();
      r.iv_len = 12;
      r.tag = tags[i].data();
    }
    ASSERT_EQ(gpo_submit(&r, &h[i]), GPO_OK);
  }
  for (int i = 0; i < kJobs; ++i) {
    size_t n = 0;
    ASSERT_EQ(gpo_wait(h[i], &n), GPO_OK);
    if (i % 2) {
      EXPECT_EQ(n, 32u);
      EXPECT_EQ(Bytes(out[i].begin(), out[i].begin() + 32), ref_sha256(in[i])) << i;
    } else {
      Bytes ref_tag, ref = ref_gcm_encrypt(key, iv, {}, in[i], ref_tag);
      EXPECT_EQ(Bytes(out[i].begin(), out[i].begin() + long(n)), ref) << i;
      EXPECT_EQ(tags[i], ref_tag) << i;
    }
  }
}

// A tag that does not match: GPO_ERR_AUTH and no unverified plaintext in the
// caller's buffer, whether the agent or the library's fallback decrypted.
TEST_P(OffloadOps, GcmDecryptWithABadTagZeroesTheOutput) {
  const Bytes key = random_bytes(32, 70), iv = random_bytes(12, 71), aad = random_bytes(20, 72);
  for (size_t n : {16ul, 1000ul, 70000ul}) {
    const Bytes pt = random_bytes(n, uint32_t(n));
    Bytes tag, ct = ref_gcm_encrypt(key, iv, aad, pt, tag);
    tag[5] ^= 1;
    Bytes out(n, 0xaa);
    EXPECT_EQ(gpo_aes256_gcm_decrypt(key.data(), iv.data(), aad.data(), aad.size(), ct.data(), n, out.data(),
                                     tag.data()),
              GPO_ERR_AUTH);
    EXPECT_EQ(out, Bytes(n, 0)) << n << " bytes: the output holds what the caller must not use";
    tag[5] ^= 1;
    ASSERT_EQ(gpo_aes256_gcm_decrypt(key.data(), iv.data(), aad.data(), aad.size(), ct.data(), n, out.data(),
                                     tag.data()),
              GPO_OK);
    EXPECT_EQ(out, pt);
  }
}

TEST_P(OffloadOps, BadArgumentsAreRefusedNotRun) {
  uint8_t key[32] = {}, iv[12] = {}, tag[16], buf[8] = {};
  gpo_request r{};
  r.op = 99;
  gpo_handle* h = nullptr;
  EXPECT_EQ(gpo_submit(&r, &h), GPO_ERR_INVALID);
  EXPECT_EQ(h, nullptr);
  gpo_request g{GPO_AES256_GCM_ENCRYPT, buf, 8, buf, 8, key, iv, 11, nullptr, 0, tag, 0, 0};
  EXPECT_EQ(gpo_run(&g, nullptr), GPO_ERR_INVALID);  // 11-byte IV
  EXPECT_EQ(gpo_aes256_ctr(key, nullptr, buf, 8, buf), GPO_ERR_INVALID);
  // A key, IV or AAD for an op that takes none: the same check as the agent's.
  uint8_t digest[32];
  gpo_request s{GPO_SHA256, buf, 8, digest, 32, nullptr, iv, 12, nullptr, 0, nullptr, 0, 0};
  EXPECT_EQ(gpo_run(&s, nullptr), GPO_ERR_INVALID);
  gpo_request z{GPO_ZSTD_COMPRESS, buf, 8, digest, 32, key, nullptr, 0, nullptr, 0, nullptr, 1, 0};
  EXPECT_EQ(gpo_run(&z, nullptr), GPO_ERR_INVALID);
  s.iv = nullptr, s.iv_len = 0;
  EXPECT_EQ(gpo_run(&s, nullptr), GPO_OK);
}

INSTANTIATE_TEST_SUITE_P(Paths, OffloadOps, ::testing::Values(true, false),
                         [](const auto& i) { return i.param ? std::string("Agent") : std::string("NoAgent"); });

}  // namespace
