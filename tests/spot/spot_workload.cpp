// A workload for the spotting tests and benchmark: makes real calls into the
// system's libcrypto, libzstd and zlib (dynamically linked, so the calls go
// through the library files the agent puts uprobes on), of sizes given on the
// command line.
//
//   spot_workload [--wait] OP:SIZE[xCOUNT] ...
//     --wait   print "ready <pid>" and wait for a line on stdin before calling
//              (lets a test start it before the agent attaches)
//   OP: evp_encrypt evp_decrypt evp_cipher evp_digest sha256 zstd_compress
//       zstd_compress_cctx zstd_compress2 zstd_stream zstd_decompress
//       zstd_decompress_dctx deflate compress2 crc32
// Prints "done <pid> <calls>" and exits 0; exits 2 on a bad argument.
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <unistd.h>
#include <zlib.h>
#include <zstd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <string>
#include <vector>

namespace {

std::vector<unsigned char> g_in, g_out;

void need(size_t n) {
  if (g_in.size() < n) {
    g_in.resize(n);
    for (size_t i = 0; i < n; i++) g_in[i] = static_cast<unsigned char>((i * 131) ^ (i >> 7));
  }
  size_t out = ZSTD_compressBound(n) + compressBound(uLong(n)) + 64;
  if (g_out.size() < out) g_out.resize(out);
}

bool cipher_update(const std::string& op, size_t n) {
  static const unsigned char key[32] = {1}, iv[16] = {2};
  EVP_CIPHER_CTX* ctx = EVP_CIPHER_CTX_new();
  bool enc = op != "evp_decrypt";
  EVP_CipherInit_ex(ctx, EVP_aes_256_ctr(), nullptr, key, iv, enc ? 1 : 0);
  int outl = 0, rc;
  if (op == "evp_encrypt") rc = EVP_EncryptUpdate(ctx, g_out.data(), &outl, g_in.data(), int(n));
  else if (op == "evp_decrypt") rc = EVP_DecryptUpdate(ctx, g_out.data(), &outl, g_in.data(), int(n));
  else rc = EVP_CipherUpdate(ctx, g_out.data(), &outl, g_in.data(), int(n));
  EVP_CIPHER_CTX_free(ctx);
  return rc == 1;
}

bool one_call(const std::string& op, size_t n) {
  need(n);
  if (op == "evp_encrypt" || op == "evp_decrypt" || op == "evp_cipher") return cipher_update(op, n);
  if (op == "evp_digest") {
    EVP_MD_CTX* ctx = EVP_MD_CTX_new();
    unsigned char md[32];
    unsigned int mdl = 0;
    bool ok = EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr) && EVP_DigestUpdate(ctx, g_in.data(), n) &&
              EVP_DigestFinal_ex(ctx, md, &mdl);
    EVP_MD_CTX_free(ctx);
    return ok;
  }
  if (op == "sha256") {
    unsigned char md[32];
    return SHA256(g_in.data(), n, md) != nullptr;
  }
  if (op == "zstd_compress") return !ZSTD_isError(ZSTD_compress(g_out.data(), g_out.size(), g_in.data(), n, 1));
  if (op == "zstd_compress_cctx" || op == "zstd_compress2" || op == "zstd_stream") {
    ZSTD_CCtx* c = ZSTD_createCCtx();
    size_t r;
    if (op == "zstd_compress_cctx") {
      r = ZSTD_compressCCtx(c, g_out.data(), g_out.size(), g_in.data(), n, 1);
    } else if (op == "zstd_compress2") {
      r = ZSTD_compress2(c, g_out.data(), g_out.size(), g_in.data(), n);
    } else {
      ZSTD_inBuffer in{g_in.data(), n, 0};
      ZSTD_outBuffer out{g_out.data(), g_out.size(), 0};
      r = ZSTD_compressStream2(c, &out, &in, ZSTD_e_end);
    }
    ZSTD_freeCCtx(c);
    return !ZSTD_isError(r);
  }
  if (op == "zstd_decompress" || op == "zstd_decompress_dctx") {
    // The compressed frame is made with ZSTD_compressCCtx through a second
    // buffer; the test counts compress calls per op, so it knows about these.
    static std::vector<unsigned char> frame;
    frame.resize(ZSTD_compressBound(n));
    ZSTD_CCtx* c = ZSTD_createCCtx();
    size_t fsz = ZSTD_compressCCtx(c, frame.data(), frame.size(), g_in.data(), n, 1);
    ZSTD_freeCCtx(c);
    if (ZSTD_isError(fsz)) return false;
    std::printf("frame %zu\n", fsz);
    size_t r;
    if (op == "zstd_decompress") {
      r = ZSTD_decompress(g_out.data(), g_out.size(), frame.data(), fsz);
    } else {
      ZSTD_DCtx* d = ZSTD_createDCtx();
      r = ZSTD_decompressDCtx(d, g_out.data(), g_out.size(), frame.data(), fsz);
      ZSTD_freeDCtx(d);
    }
    return !ZSTD_isError(r) && r == n;
  }
  if (op == "deflate") {
    z_stream s{};
    if (deflateInit(&s, 1) != Z_OK) return false;
    s.next_in = g_in.data();
    s.avail_in = uInt(n);
    s.next_out = g_out.data();
    s.avail_out = uInt(g_out.size());
    int rc = deflate(&s, Z_FINISH);
    deflateEnd(&s);
    return rc == Z_STREAM_END;
  }
  if (op == "compress2") {
    uLongf dl = uLongf(g_out.size());
    return compress2(g_out.data(), &dl, g_in.data(), uLong(n), 1) == Z_OK;
  }
  if (op == "crc32") {
    volatile uLong c = crc32(0L, g_in.data(), uInt(n));
    (void)c;
    return true;
  }
  std::fprintf(stderr, "spot_workload: unknown op '%s'\n", op.c_str());
  std::exit(2);
}

}  // namespace

int main(int argc, char** argv) {
  bool wait = false;
  std::vector<std::string> specs;
  for (int i = 1; i < argc; i++) {
    if (std::strcmp(argv[i], "--wait") == 0) wait = true;
    else specs.push_back(argv[i]);
  }
  if (wait) {
    std::printf("ready %d\n", getpid());
    std::fflush(stdout);
    std::string line;
    std::getline(std::cin, line);
  }
  unsigned long calls = 0;
  for (const auto& s : specs) {
    auto colon = s.find(':');
    if (colon == std::string::npos) {
      std::fprintf(stderr, "spot_workload: bad spec '%s' (want OP:SIZE[xCOUNT])\n", s.c_str());
      return 2;
    }
    std::string op = s.substr(0, colon);
    char* end = nullptr;
    size_t size = std::strtoull(s.c_str() + colon + 1, &end, 10);
    size_t count = (end && *end == 'x') ? std::strtoull(end + 1, nullptr, 10) : 1;
    for (size_t i = 0; i < count; i++) {
      if (!one_call(op, size)) {
        std::fprintf(stderr, "spot_workload: %s of %zu bytes failed\n", op.c_str(), size);
        return 1;
      }
      calls++;
    }
  }
  std::printf("done %d %lu\n", getpid(), calls);
  return 0;
}
