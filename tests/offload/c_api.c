/* The public header as a C program meets it (C99, pedantic, warnings as
 * errors): it compiles, its op table generates C, and its constants reach the
 * library. Run with GPO_DISABLE=1: the library computes in this process. */
#include <stdio.h>
#include <string.h>

#include "gpuoffload.h"

static int failures;

static void expect(int ok, const char* what) {
  if (!ok) {
    fprintf(stderr, "c_api: %s\n", what);
    ++failures;
  }
}

#define NAME_CASE(NAME, id, ident, name, family, gpu) \
  case GPO_##NAME: return name;
static const char* op_name(int op) {
  switch (op) { GPO_OPS(NAME_CASE) }
  return "unknown";
}

int main(void) {
  static const unsigned char abc_sha256[32] = {0xba, 0x78, 0x16, 0xbf, 0x8f, 0x01, 0xcf, 0xea, 0x41, 0x41, 0x40,
                                               0xde, 0x5d, 0xae, 0x22, 0x23, 0xb0, 0x03, 0x61, 0xa3, 0x96, 0x17,
                                               0x7a, 0x9c, 0xb4, 0x10, 0xff, 0x61, 0xf2, 0x00, 0x15, 0xad};
  const void* msgs[1] = {"abc"};
  const size_t lens[1] = {3};
  unsigned char digest[32];
  uint32_t crc = 0;
  char copy[10] = {0};
  size_t out_len = 0;
  gpo_request r;

  expect(GPO_AES256_GCM_ENCRYPT == 1 && GPO_SHA256 == 4 && GPO_MEMCPY == 9, "op numbers");
  expect(strcmp(op_name(GPO_ZLIB_COMPRESS), "zlib-compress") == 0, "GPO_OPS names");

  expect(gpo_sha256_batch(msgs, lens, 1, digest) == GPO_OK, "gpo_sha256_batch");
  expect(memcmp(digest, abc_sha256, sizeof digest) == 0, "SHA-256(\"abc\")");
  expect(gpo_crc32(0, "123456789", 9, &crc) == GPO_OK && crc == 0xcbf43926u, "CRC-32 check value");

  memset(&r, 0, sizeof r);
  r.op = GPO_MEMCPY;
  r.in = "123456789";
  r.in_len = 9;
  r.out = copy;
  r.out_cap = sizeof copy;
  expect(gpo_run(&r, &out_len) == GPO_OK && out_len == 9 && strcmp(copy, "123456789") == 0, "gpo_run memcpy");
  r.op = 0;
  expect(gpo_run(&r, &out_len) == GPO_ERR_INVALID, "op 0 refused");

  if (failures) return 1;
  printf("c_api: ok\n");
  return 0;
}
