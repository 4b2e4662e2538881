// The call loops of tools/shim-calls: each case calls one interposed function
// many times on small inputs and prints "case ns-per-call checksum". Run
// plain and under the shim, the difference is what the shim adds to a call.
//
//   shim-calls-loop [--open-core] [--calls N]
//
// --open-core first makes one 1 MiB crc32 call: under the shim that opens its
// core (a call at the threshold), which a program that also makes large calls
// has open. Inputs are text-like (words from a fixed list), the same every run.
#define _GNU_SOURCE
#include <openssl/sha.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zlib.h>
#include <zstd.h>

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

enum { kTextBytes = 4 << 20 };
static unsigned char text[kTextBytes];
static unsigned char out[8 << 20];

static void make_text(void) {
  static const char* words[] = {"offload ", "agent ", "slab ", "frame ", "stream ", "zstd ", "crc ", "the ", "of ",
                                "a ", "packet ", "flow ", "verdict\n", "batch ", "kernel ", "and "};
  uint32_t x = 12345;
  size_t at = 0;
  while (at < kTextBytes) {
    x = x * 1103515245u + 12345u;
    const char* w = words[(x >> 16) % 16];
    for (; *w && at < kTextBytes; ++w) text[at++] = (unsigned char)*w;
  }
}

// Where call i reads its n bytes: spread over the first 256 KiB of the text
// (in the core's caches, as a program's small buffers mostly are), never past it.
enum { kWindow = 256 << 10 };
static const unsigned char* piece(long i, size_t n) { return text + ((size_t)i * 4099u) % (kWindow - n); }

static void report(const char* name, double t0, long calls, unsigned long long sum) {
  printf("%s %.2f %llu\n", name, (now_s() - t0) / (double)calls * 1e9, sum);
}

static void crc_loop(const char* name, size_t n, long calls) {
  uLong c = 0;
  const double t0 = now_s();
  for (long i = 0; i < calls; ++i) c = crc32(c, piece(i, n), (uInt)n);
  report(name, t0, calls, c);
}

static void sha_loop(const char* name, size_t n, long calls) {
  unsigned char md[32];
  unsigned long long s = 0;
  const double t0 = now_s();
  for (long i = 0; i < calls; ++i) {
    SHA256(piece(i, n), n, md);
    s += md[0];
  }
  report(name, t0, calls, s);
}

static void compress2_loop(const char* name, size_t n, long calls) {
  unsigned long long s = 0;
  const double t0 = now_s();
  for (long i = 0; i < calls; ++i) {
    uLongf len = sizeof out;
    compress2(out, &len, piece(i, n), n, 1);
    s += len;
  }
  report(name, t0, calls, s);
}

static void cctx_loop(const char* name, size_t n, long calls) {
  ZSTD_CCtx* c = ZSTD_createCCtx();
  unsigned long long s = 0;
  const double t0 = now_s();
  for (long i = 0; i < calls; ++i) s += ZSTD_compressCCtx(c, out, sizeof out, piece(i, n), n, 1);
  report(name, t0, calls, s);
  ZSTD_freeCCtx(c);
}

// One frame fed in pieces of n bytes (ZSTD_e_continue), ended every 1 MiB.
static void stream_loop(const char* name, size_t n, long calls) {
  ZSTD_CCtx* c = ZSTD_createCCtx();
  ZSTD_CCtx_setParameter(c, ZSTD_c_compressionLevel, 1);
  unsigned long long s = 0;
  size_t in_frame = 0;
  ZSTD_outBuffer o = {out, sizeof out, 0};
  const double t0 = now_s();
  for (long i = 0; i < calls; ++i) {
    ZSTD_inBuffer in = {piece(i, n), n, 0};
    ZSTD_compressStream2(c, &o, &in, ZSTD_e_continue);
    in_frame += n;
    if (in_frame >= (1u << 20)) {
      ZSTD_inBuffer none = {NULL, 0, 0};
      while (ZSTD_compressStream2(c, &o, &none, ZSTD_e_end) != 0) {
        s += o.pos;
        o.pos = 0;
      }
      in_frame = 0;
    }
    if (o.pos > sizeof out / 2) {
      s += o.pos;
      o.pos = 0;
    }
  }
  ZSTD_inBuffer none = {NULL, 0, 0};
  while (ZSTD_compressStream2(c, &o, &none, ZSTD_e_end) != 0) o.pos = 0;
  report(name, t0, calls, s + o.pos);
  ZSTD_freeCCtx(c);
}

int main(int argc, char** argv) {
  long calls = 2000000;
  int open_core = 0;
  for (int i = 1; i < argc; ++i) {
    if (!strcmp(argv[i], "--open-core")) {
      open_core = 1;
    } else if (!strcmp(argv[i], "--calls") && i + 1 < argc) {
      calls = atol(argv[++i]);
    } else {
      fprintf(stderr, "usage: %s [--open-core] [--calls N]\n", argv[0]);
      return 2;
    }
  }
  if (calls < 1000) calls = 1000;
  make_text();
  if (open_core) {
    const uLong c = crc32(0, text, 1u << 20);
    // Whether the shim's core is now in the process (the driver checks it).
    char line[4096];
    int mapped = 0;
    FILE* maps = fopen("/proc/self/maps", "r");
    while (maps && fgets(line, sizeof line, maps))
      if (strstr(line, "libgpuoffload-shim-core.so")) mapped = 1;
    if (maps) fclose(maps);
    printf("opened %d %lu\n", mapped, c);
  }
  crc_loop("crc32-1B", 1, calls * 4);
  crc_loop("crc32-100B", 100, calls);
  sha_loop("SHA256-64B", 64, calls);
  compress2_loop("compress2-1KiB", 1024, calls / 100);
  cctx_loop("ZSTD_compressCCtx-1KiB", 1024, calls / 50);
  stream_loop("ZSTD_compressStream2-100B", 100, calls);
  stream_loop("ZSTD_compressStream2-1KiB", 1024, calls / 5);
  return 0;
}
