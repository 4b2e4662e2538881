// A program that knows nothing of gpuoffload: one-shot SHA256() and
// ZSTD_compress()/ZSTD_compressCCtx() calls of several sizes, from several
// threads and from a forked child. It prints one line per call; the shim test
// runs it with and without LD_PRELOAD=libgpuoffload-shim.so and compares.
#include <openssl/sha.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zstd.h>

#include <cstdio>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

namespace {

std::mutex g_mu;
std::vector<std::string> g_lines;

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
    out.push_back(std::to_string(who) + " n=" + std::to_string(n) + " sha=" + hex(md, 32) + " zstd=" +
                  std::to_string(zn) + ":" + hex(zmd, 32) + " cctx=" + std::to_string(zn2) + ":" + hex(zmd2, 32) +
                  " small=" + (ZSTD_isError(small) ? ZSTD_getErrorName(small) : "ok"));
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
