/* The ops of gpuoffload, one row each. Every list of ops is generated from
 * these rows: the GPO_* constants of gpuoffload.h, the slab protocol's
 * GPO_OP_* ids, the agent's gpo::backend::OpId and op registry, and the names
 * the CLI, the planner's profile and the stats files use. A new op is a new
 * row here; nothing else defines one.
 *
 * GPO_OPS(X) calls X(NAME, id, ident, name, family, gpu) for every op:
 *   NAME    GPO_NAME in this API, GPO_OP_NAME in the slab protocol
 *   id      its number in gpo_request.op and on the wire: never renumbered or reused
 *   ident   the agent's identifier (gpo::backend::OpId::ident)
 *   name    its name in the CLI, the profile, metrics and stats files
 *   family  the agent's pipeline family (gpo::backend::Family): ops one GPU pipeline runs together
 *   gpu     1 when the agent has a GPU implementation
 *
 * Plain C (C99 and later, C++), no declarations: usable from any header.
 */
#ifndef GPUOFFLOAD_OPS_H
#define GPUOFFLOAD_OPS_H

/* clang-format off */
#define GPO_OPS(X)                                                                                         \
  X(AES256_GCM_ENCRYPT, 1, aes256_gcm_encrypt, "aes-256-gcm-encrypt", aes, 1)                              \
  X(AES256_GCM_DECRYPT, 2, aes256_gcm_decrypt, "aes-256-gcm-decrypt", aes, 1)                              \
  /* CTR: encrypt and decrypt are the same operation */                                                    \
  X(AES256_CTR, 3, aes256_ctr, "aes-256-ctr", aes, 1)                                                      \
  X(SHA256, 4, sha256, "sha256", sha256, 1)                                                                \
  /* out: a capacity; the frame's size comes back. Levels above 3 run on the CPU */                        \
  X(ZSTD_COMPRESS, 5, zstd_compress, "zstd-compress", zstd, 1)                                             \
  /* out: a capacity; the decompressed size comes back */                                                  \
  X(ZSTD_DECOMPRESS, 6, zstd_decompress, "zstd-decompress", zstd, 0)                                       \
  /* zlib compress2(): the zlib format at a level; out: a capacity, the stream's size comes back */       \
  X(ZLIB_COMPRESS, 7, zlib_compress, "zlib-compress", deflate, 0)                                          \
  /* zlib crc32(crc, in): out: 4 bytes, the crc little-endian */                                           \
  X(CRC32, 8, crc32, "crc32", crc32, 1)                                                                    \
  /* out: a copy of in; on a GPU two PCIe crossings, there to be measured (docs/zlib-crc32-memcpy.md) */   \
  X(MEMCPY, 9, memcpy, "memcpy", memcpy, 1)
/* clang-format on */

#endif /* GPUOFFLOAD_OPS_H */
