// Helpers for the offload tests: an in-process agent (the real ClientServer
// on the CPU backend, its event loop on a thread), OpenSSL/libzstd references
// computed directly (not through the code under test), hex, random bytes.
#pragma once
#include <openssl/evp.h>
#include <unistd.h>
#include <zstd.h>

#include <algorithm>
#include <chrono>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "backend/cpu_backend.h"
#include "ipc/client_server.h"
#include "loop/event_loop.h"

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

// --- references straight from OpenSSL / libzstd ---
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
inline Bytes ref_zstd(const Bytes& in, int level) {
  Bytes out(ZSTD_compressBound(in.size()));
  size_t n = ZSTD_compress(out.data(), out.size(), in.data(), in.size(), level);
  out.resize(ZSTD_isError(n) ? 0 : n);
  return out;
}
// A real agent may run zstd on the GPU: its frames are valid but not
// ZSTD_compress's bytes, so tests of a real agent check the round trip.
inline bool zstd_round_trips(const Bytes& frame, const Bytes& in) {
  Bytes back(in.size() + 1);
  size_t n = ZSTD_decompress(back.data(), back.size(), frame.data(), frame.size());
  return !ZSTD_isError(n) && n == in.size() && std::equal(in.begin(), in.end(), back.begin());
}

inline std::string unique_socket(const char* tag) {
  return "/tmp/gpo-test-" + std::string(tag) + "-" + std::to_string(getpid()) + ".sock";
}

// The real agent-side component, on a thread, on the CPU backend.
class InProcessAgent {
 public:
  explicit InProcessAgent(ipc::ServerOptions o, unsigned cpu_threads = 2)
      : opt_(std::move(o)), be_(cpu_threads), server_(opt_, be_) {
    server_.register_with(loop_);
    thread_ = std::thread([this] { loop_.run(false); });
  }
  ~InProcessAgent() { stop(); }
  void stop() {
    if (!thread_.joinable()) return;
    loop_.stop();
    thread_.join();
    server_.unregister(loop_);
  }
  ipc::ClientServer& server() { return server_; }
  const std::string& socket() const { return opt_.socket_path; }

 private:
  ipc::ServerOptions opt_;
  backend::CpuBackend be_;
  loop::EventLoop loop_;
  ipc::ClientServer server_;
  std::thread thread_;
};

}  // namespace gpo::test
