/* libgpuoffload: offload AES-256-GCM/CTR, batched SHA-256, zstd, zlib
 * compress2(), CRC-32 and memcpy to the gpuoffload agent (GPU or CPU backend),
 * with the same results as OpenSSL, libzstd, zlib and libc. Usable from C and C++; thread-safe; safe across fork (the child
 * reconnects on first use).
 *
 * Every call returns a result: when the agent is absent, dies, is slow
 * (GPO_TIMEOUT_MS) or its backend fails, the library computes the job itself
 * on the CPU. A job goes to the agent only when the agent's plan page (a file
 * next to its socket) says the GPU does it better than this process, counting
 * the round trip; every other job runs here at once, with no IPC.
 * docs/client-api.md has the contract and the configuration, docs/offload.md the protocol:
 *   GPO_SOCKET      agent socket (default /run/gpuoffload/agent.sock)
 *   GPO_TIMEOUT_MS  how long to wait for the agent per job (default 2000)
 *   GPO_SLAB_MB     shared slab size (default 64)
 *   GPO_RECONNECT_MS how often to look again for an absent agent (default 200)
 *   GPO_DISABLE=1   never contact the agent
 *   GPO_AGENT_UID   a user besides root and this process's own whose agent it trusts
 * A process that must not trust its environment (setuid, setgid) reads none
 * of them. The library talks only to an agent run by root, by its own user or
 * by GPO_AGENT_UID; any other is treated as absent (docs/security.md).
 */
#ifndef GPUOFFLOAD_H
#define GPUOFFLOAD_H
#include <stddef.h>
#include <stdint.h>

#include "gpuoffload_ops.h"

#ifdef __cplusplus
extern "C" {
#endif

#define GPO_API __attribute__((visibility("default")))

/* Return codes. */
#define GPO_OK 0
#define GPO_ERR_AUTH (-1)          /* GCM decrypt: tag mismatch; out is not valid */
#define GPO_ERR_INVALID (-2)       /* bad arguments (null pointer, wrong IV length, a key, IV or AAD the op does not take, unknown op) */
#define GPO_ERR_DST_TOO_SMALL (-3) /* the output does not fit out_cap */
#define GPO_ERR_CORRUPT (-4)       /* zstd decompress: not a valid frame */
#define GPO_ERR_NOMEM (-5)

/* Ops: GPO_AES256_GCM_ENCRYPT, GPO_SHA256, GPO_MEMCPY, ..., one per row of
 * gpuoffload_ops.h, numbered as there; what each takes: gpo_request. */
#define GPO_OP_CONSTANT_(NAME, id, ident, name, family, gpu) GPO_##NAME = id,
enum gpo_op { GPO_OPS(GPO_OP_CONSTANT_) };
#undef GPO_OP_CONSTANT_

typedef struct gpo_request {
  int op;
  const void* in;
  size_t in_len;
  void* out;          /* AES, memcpy: in_len bytes; SHA-256: 32; CRC-32: 4; zstd, zlib: out_cap */
  size_t out_cap;
  const uint8_t* key; /* AES: 32 bytes */
  const uint8_t* iv;  /* GCM: 12 bytes, CTR: 16 (the initial counter block) */
  size_t iv_len;
  const void* aad;    /* GCM only */
  size_t aad_len;
  uint8_t* tag;       /* GCM: 16 bytes, written on encrypt, checked on decrypt */
  int level;          /* zstd compress level (0 = libzstd's default); zlib: -1 = Z_DEFAULT_COMPRESSION, 0..9 */
  uint32_t crc;       /* CRC-32: the crc to continue from (zlib's first argument; 0 to start) */
} gpo_request;

/* Async: gpo_submit copies the input (and key, IV, AAD, decrypt tag) and
 * returns at once; gpo_wait returns the job's result, writing out (and tag)
 * and *out_len, and frees the handle. One thread can keep many jobs in flight.
 * out and tag must stay valid until gpo_wait. Every handle must be waited. */
typedef struct gpo_handle gpo_handle;
GPO_API int gpo_submit(const gpo_request* req, gpo_handle** handle);
GPO_API int gpo_wait(gpo_handle* handle, size_t* out_len);

/* Sync: submit + wait. */
GPO_API int gpo_run(const gpo_request* req, size_t* out_len);
GPO_API int gpo_aes256_gcm_encrypt(const uint8_t key[32], const uint8_t iv[12], const void* aad, size_t aad_len,
                           const void* in, size_t len, void* out, uint8_t tag[16]);
GPO_API int gpo_aes256_gcm_decrypt(const uint8_t key[32], const uint8_t iv[12], const void* aad, size_t aad_len,
                           const void* in, size_t len, void* out, const uint8_t tag[16]);
GPO_API int gpo_aes256_ctr(const uint8_t key[32], const uint8_t iv[16], const void* in, size_t len, void* out);
/* n independent messages; digests: n * 32 bytes. */
GPO_API int gpo_sha256_batch(const void* const* msgs, const size_t* lens, size_t n, uint8_t* digests);
GPO_API int gpo_zstd_compress(void* dst, size_t dst_cap, const void* src, size_t len, int level, size_t* out_len);
GPO_API int gpo_zstd_decompress(void* dst, size_t dst_cap, const void* src, size_t len, size_t* out_len);
GPO_API size_t gpo_zstd_compress_bound(size_t len);
/* compress2() semantics: a zlib stream, byte-identical to this zlib's compress2()
 * at level; GPO_ERR_DST_TOO_SMALL where compress2 says Z_BUF_ERROR. */
GPO_API int gpo_zlib_compress(void* dst, size_t dst_cap, const void* src, size_t len, int level, size_t* out_len);
GPO_API size_t gpo_zlib_compress_bound(size_t len);
/* *out = zlib crc32_z(crc, buf, len) (crc: 0 to start, or the crc of what came before). */
GPO_API int gpo_crc32(uint32_t crc, const void* buf, size_t len, uint32_t* out);
/* dst = a copy of src (no overlap). Offloading a copy costs two PCIe
 * crossings: it exists to be measured, see docs/zlib-crc32-memcpy.md. */
GPO_API int gpo_memcpy(void* dst, const void* src, size_t len);

typedef struct gpo_client_stats {
  uint64_t jobs;            /* submitted */
  uint64_t by_agent;        /* completed by the agent */
  uint64_t local;           /* computed in this process (all reasons below) */
  uint64_t local_no_agent;  /* not connected (agent absent, disabled, refused) */
  uint64_t local_timeout;   /* the agent did not answer in GPO_TIMEOUT_MS */
  uint64_t local_agent_gone;/* the connection dropped while the job was out */
  uint64_t local_rejected;  /* the agent refused or failed the job */
  uint64_t local_no_room;   /* job too large for the slab, or slab full */
  uint64_t connects;        /* successful registrations */
  int connected;
  int doorbell;             /* 1 = uprobe, 0 = socket (while connected) */
  uint32_t slab_id;         /* the agent's id of this process's slab (while connected) */
  uint64_t local_by_plan;   /* the agent's plan keeps jobs of this op and size here (no IPC) */
} gpo_client_stats;
GPO_API void gpo_get_stats(gpo_client_stats* out);

/* Where requests of op go, for callers that have a fast in-process path of
 * their own (the OpenSSL provider, the shim's zstd streams) and ask before
 * building a request: inputs of [*min_bytes, *max_bytes] bytes may leave this
 * process; others are better done in place (gpo_submit would compute them in
 * the process anyway, or they do not fit the slab). The lower bound is the
 * agent's plan for op (from which size the GPU wins), raised to
 * GPO_OFFLOAD_MIN_BYTES (default 65536). None (no agent reachable, GPO_DISABLE=1,
 * or the plan keeps op in the process at every size): *min_bytes = SIZE_MAX,
 * *max_bytes = 0, and gpo_offload_reason(op) says which. A few loads: it reads
 * the agent's plan page, no IPC. */
GPO_API void gpo_offload_range(int op, size_t* min_bytes, size_t* max_bytes);
/* Why op does or does not leave the process: GPO_PATH_OFFLOAD (at some size),
 * GPO_PATH_CPU_NO_AGENT or GPO_PATH_CPU_PLAN. */
GPO_API int gpo_offload_reason(int op);
/* 1 when this process holds a slab registered with the agent (connecting and
 * registering now if it has none), else 0: the agent is gone, or it refused
 * this process (quota, access). For callers that commit before the call that
 * offloads, e.g. the shim collecting a stream's frame: a refused process would
 * pay the collection and then compute the frame in one piece itself. */
GPO_API int gpo_offload_ready(void);

/* Per-op accounting of what callers of the library did with each call, for
 * `gpuoffload-agent exec` (docs/exec.md). The provider and the shim record
 * every call they see with the path it took; calls is the number of API calls
 * (EVP updates, zstd calls), ns the wall time of offloaded ones. */
enum gpo_path {
  GPO_PATH_OFFLOAD = 0,       /* sent through gpo_submit: the agent, or the library's own fallback */
  GPO_PATH_CPU_SMALL = 1,     /* kept in the process: under the offload size */
  GPO_PATH_CPU_STREAM = 2,    /* kept: sequential (one SHA-256 stream), or stream state offload cannot continue */
  GPO_PATH_CPU_PARAMS = 3,    /* kept: parameters the offload path does not do (dictionary, IV length, ...) */
  GPO_PATH_CPU_NO_AGENT = 4,  /* kept: no agent reachable */
  GPO_PATH_CPU_TOO_LARGE = 5, /* kept: larger than one job can be (the slab) */
  GPO_PATH_CPU_PLAN = 6,      /* kept: the agent's plan says the GPU would not win at this size */
  GPO_PATH_COUNT = 7
};
/* A path's name in the stats files gpo_stats_write writes (and `exec` reads). */
static inline const char* gpo_path_name(int path) {
  switch (path) {
    case GPO_PATH_OFFLOAD: return "offload";
    case GPO_PATH_CPU_SMALL: return "cpu-small";
    case GPO_PATH_CPU_STREAM: return "cpu-stream";
    case GPO_PATH_CPU_PARAMS: return "cpu-params";
    case GPO_PATH_CPU_NO_AGENT: return "cpu-no-agent";
    case GPO_PATH_CPU_TOO_LARGE: return "cpu-too-large";
    case GPO_PATH_CPU_PLAN: return "cpu-plan";
  }
  return "unknown";
}
GPO_API void gpo_account(int op, int path, uint64_t calls, uint64_t bytes, uint64_t ns);
/* While this thread holds accounting (on = 1 holds, on = 0 lets go; holds
 * nest), gpo_account counts nothing. A layer that counted a call itself
 * holds it around the library code that runs the call, so that a layer below
 * (the OpenSSL provider under the shim's SHA256()) does not count the same
 * bytes again. */
GPO_API void gpo_account_hold(int on);
/* Writes this process's accounting (gpo_account and gpo_get_stats) as JSON to
 * path. With GPO_STATS_DIR set, the library does this at exit, into
 * GPO_STATS_DIR/PID.json. Returns 0 on success. */
GPO_API int gpo_stats_write(const char* path);
/* What the library does at exit, for a process that leaves by _exit() (the
 * shim's front calls it from there): with GPO_STATS_DIR set and something
 * counted, writes GPO_STATS_DIR/PID.json. Allocates nothing, so it may run
 * in a signal handler; does nothing in a vfork child. */
GPO_API void gpo_stats_exit_flush(void);

/* Points the library at another socket (tests, several agents); drops the
 * current connection. NULL: back to GPO_SOCKET / the default. */
GPO_API void gpo_set_socket(const char* path);

/* 1 when a job of op with len input bytes would go to the agent now (its
 * plan page serves and says the GPU wins from this size), 0 when it would run
 * in this process. A few loads; no IPC. The shim asks this first and calls the
 * real function itself otherwise. */
GPO_API int gpo_would_offload(int op, size_t len);

/* The doorbell: the agent's uprobe sits on this symbol. Called by the library;
 * in a process forked from the one that loaded it, the library calls
 * gpo_doorbell_forked instead, which the agent probes too. */
GPO_API void gpo_doorbell(uint32_t slab_id, uint32_t job, uint32_t op, uint64_t len);
GPO_API void gpo_doorbell_forked(uint32_t slab_id, uint32_t job, uint32_t op, uint64_t len);

#ifdef __cplusplus
}
#endif
#endif /* GPUOFFLOAD_H */
