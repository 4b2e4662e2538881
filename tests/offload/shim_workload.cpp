// A program that knows nothing of gpuoffload: one-shot SHA256(),
// ZSTD_compress()/ZSTD_compressCCtx(), zlib compress2()/compress() and
// crc32()/crc32_z() calls of several sizes, from several threads and from a
// forked child. It prints one line per call; the shim test
// runs it with and without LD_PRELOAD=libgpuoffload-shim.so and compares.
#include <openssl/sha.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>
#include <zstd.h>

#include <cstdio>
#include <random>
#include <string>
#include <thread>
#include <vector>

namespace {

std::string hex(const unsigned char* p, size_t n) {
  std::string s;
  char b[3];
  for (size_t i = 0; i < n; ++i) {
    std::snprintf(b, sizeof b, "%02x", p[i]);
    s += b;
  }
  return s;
}

void work(int who, std::vector<std::string>& out) {
  for (size_t n : {100ul, 70000ul, 300001ul}) {
    std::mt19937 rng(uint32_t(n + who));
    std::vector<unsigned char> in(n);
    for (auto& c : in) c = "abcdefgh  \n"[rng() % 11];
    unsigned char md[32];
    SHA256(in.data(), n, md);
    std::vector<unsigned char> z(ZSTD_compressBound(n));
    size_t zn = ZSTD_compress(z.data(), z.size(), in.data(), n, 3);
    ZSTD_CCtx* cctx = ZSTD_createCCtx();
    std::vector<unsigned char> z2(ZSTD_compressBound(n));
    size_t zn2 = ZSTD_compressCCtx(cctx, z2.data(), z2.size(), in.data(), n, 1);
    ZSTD_freeCCtx(cctx);
    size_t small = ZSTD_compress(z.data(), 8, in.data(), n, 3);  // too small: the library's error
    unsigned char zmd[32], zmd2[32];
    SHA256(z.data(), zn, zmd);
    SHA256(z2.data(), zn2, zmd2);
    // zlib: compress2 at a level per thread, compress (default level), crc32
    // of the whole input and chained over two halves, crc32_z, the output
    // read back by uncompress, and a too-small destination (zlib's error).
    std::vector<unsigned char> gz(compressBound(uLong(n))), gz2(gz.size()), back(n);
    uLongf gn = uLongf(gz.size()), gn2 = uLongf(gz2.size()), bn = uLongf(n), tiny = 8;
    int zrc = compress2(gz.data(), &gn, in.data(), uLong(n), who % 10);
    int zrc2 = compress(gz2.data(), &gn2, in.data(), uLong(n));
    int zsmall = compress2(gz2.data(), &tiny, in.data(), uLong(n), 6);
    int urc = uncompress(back.data(), &bn, gz.data(), gn);
    const bool same = urc == Z_OK && bn == n && back == in;
    uLong c = crc32(0, in.data(), uInt(n));
    uLong c2 = crc32(crc32(0x1234, in.data(), uInt(n / 2)), in.data() + n / 2, uInt(n - n / 2));
    uLong cz = crc32_z(0xffffffffUL, in.data(), n);
    unsigned char gmd[32], gmd2[32];
    SHA256(gz.data(), gn, gmd);
    SHA256(gz2.data(), gn2, gmd2);
    char crcs[64];
    std::snprintf(crcs, sizeof crcs, "%08lx/%08lx/%08lx", c, c2, cz);
    out.push_back(std::to_string(who) + " n=" + std::to_string(n) + " sha=" + hex(md, 32) + " zstd=" +
                  std::to_string(zn) + ":" + hex(zmd, 32) + " cctx=" + std::to_string(zn2) + ":" + hex(zmd2, 32) +
                  " small=" + (ZSTD_isError(small) ? ZSTD_getErrorName(small) : "ok") + " compress2=" +
                  std::to_string(zrc) + ":" + std::to_string(gn) + ":" + hex(gmd, 32) + " compress=" +
                  std::to_string(zrc2) + ":" + std::to_string(gn2) + ":" + hex(gmd2, 32) +
                  " zsmall=" + std::to_string(zsmall) + " uncompress=" + (same ? "same" : "DIFFERENT") +
                  " crc32=" + crcs);
  }
}

}  // namespace

int main() {
  std::vector<std::thread> ts;
  std::vector<std::vector<std::string>> outs(4);
  for (int t = 0; t < 4; ++t) ts.emplace_back([&, t] { work(t, outs[t]); });
  for (auto& t : ts) t.join();
  std::fflush(stdout);
  pid_t pid = fork();
  if (pid == 0) {
    std::vector<std::string> mine;
    work(9, mine);
    for (auto& l : mine) std::printf("child %s\n", l.c_str());
    std::fflush(stdout);
    _exit(0);
  }
  int st = 0;
  waitpid(pid, &st, 0);
  for (auto& o : outs)
    for (auto& l : o) std::printf("%s\n", l.c_str());
  return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : 1;
}
