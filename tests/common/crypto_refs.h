// Test inputs (random and text-like bytes, hex) and the results OpenSSL gives
// for them when called directly, not through the code under test: what the
// backend and offload tests compare against.
#pragma once
#include <openssl/evp.h>

#include <cstdint>
#include <random>
#include <string>
#include <vector>

namespace gpo::test {

using Bytes = std::vector<uint8_t>;

inline Bytes unhex(const std::string& s) {
  Bytes b;
  for (size_t i = 0; i + 1 < s.size(); i += 2) b.push_back(uint8_t(std::stoi(s.substr(i, 2), nullptr, 16)));
  return b;
}
inline std::string hex(const uint8_t* p, size_t n) {
  static const char* d = "0123456789abcdef";
  std::string s;
  for (size_t i = 0; i < n; ++i) {
    s += d[p[i] >> 4];
    s += d[p[i] & 15];
  }
  return s;
}
inline std::string hex(const Bytes& b) { return hex(b.data(), b.size()); }

inline Bytes random_bytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  Bytes b(n);
  for (auto& x : b) x = uint8_t(rng());
  return b;
}
// Compressible: text-like runs, so zstd output differs from input a lot.
inline Bytes text_bytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  static const char* words[] = {"offload ", "gpu ", "slab ", "doorbell ", "futex ", "batch ", "agent\n"};
  Bytes b;
  while (b.size() < n) {
    const char* w = words[rng() % 7];
    for (const char* c = w; *c && b.size() < n; ++c) b.push_back(uint8_t(*c));
  }
  return b;
}

// --- references straight from OpenSSL ---
inline Bytes ref_gcm_encrypt(const Bytes& key, const Bytes& iv, const Bytes& aad, const Bytes& pt, Bytes& tag) {
  EVP_CIPHER_CTX* c = EVP_CIPHER_CTX_new();
  Bytes out(pt.size() + 16);
  int n = 0, m = 0;
  EVP_EncryptInit_ex(c, EVP_aes_256_gcm(), nullptr, nullptr, nullptr);
  EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_IVLEN, int(iv.size()), nullptr);
  EVP_EncryptInit_ex(c, nullptr, nullptr, key.data(), iv.data());
  if (!aad.empty()) EVP_EncryptUpdate(c, nullptr, &n, aad.data(), int(aad.size()));
  EVP_EncryptUpdate(c, out.data(), &n, pt.data(), int(pt.size()));
  EVP_EncryptFinal_ex(c, out.data() + n, &m);
  tag.assign(16, 0);
  EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, 16, tag.data());
  EVP_CIPHER_CTX_free(c);
  out.resize(pt.size());
  return out;
}
inline Bytes ref_ctr(const Bytes& key, const Bytes& iv, const Bytes& in) {
  EVP_CIPHER_CTX* c = EVP_CIPHER_CTX_new();
  Bytes out(in.size() + 16);
  int n = 0, m = 0;
  EVP_EncryptInit_ex(c, EVP_aes_256_ctr(), nullptr, key.data(), iv.data());
  EVP_EncryptUpdate(c, out.data(), &n, in.data(), int(in.size()));
  EVP_EncryptFinal_ex(c, out.data() + n, &m);
  EVP_CIPHER_CTX_free(c);
  out.resize(in.size());
  return out;
}
inline Bytes ref_sha256(const Bytes& in) {
  Bytes d(32);
  unsigned n = 0;
  EVP_Digest(in.data(), in.size(), d.data(), &n, EVP_sha256(), nullptr);
  return d;
}
}  // namespace gpo::test
