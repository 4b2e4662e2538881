/* The slab protocol: the one header the agent and libgpuoffload share.
 *
 * A client registers one slab (a sealed memfd) per connection over the agent's
 * Unix socket (SOCK_SEQPACKET, SCM_RIGHTS). The slab holds a header, a table
 * of job descriptors and a data area for input and output buffers; both sides
 * map it MAP_SHARED. Plain C so the client library (C API) and the agent (C++)
 * read the same bytes; fields shared while both sides run are accessed only
 * with __atomic builtins.
 *
 * Job state machine (gpo_job.state, also the futex word the client waits on):
 *
 *   FREE --client fills, rings--> SUBMITTED --agent CAS--> RUNNING --agent CAS--> DONE
 *                                    |                        |
 *                         client CAS (timeout / agent gone)   client CAS (timeout / agent gone)
 *                                    v                        v
 *                                 REVOKED                 ABANDONED --agent CAS at completion--> RELEASED
 *
 * Exactly one side completes a job visibly: the agent only by RUNNING->DONE,
 * the client only after winning SUBMITTED->REVOKED or RUNNING->ABANDONED, and
 * those CASes are on the same word. The agent reads a job only after winning
 * SUBMITTED->RUNNING, so a REVOKED job is never touched; an ABANDONED job's
 * buffers stay reserved until the agent says RELEASED (or the connection is
 * gone), so a late agent write never lands in a reused buffer.
 * docs/offload.md has the full story.
 */
#ifndef GPO_SLAB_PROTOCOL_H
#define GPO_SLAB_PROTOCOL_H
#include <stdint.h>

#include "client/include/gpuoffload_ops.h"

#ifdef __cplusplus
extern "C" {
#endif

#define GPO_SLAB_MAGIC 0x534f5047u /* "GPOS" */
#define GPO_PROTO_VERSION 2u
#define GPO_DEFAULT_SOCKET "/run/gpuoffload/agent.sock"
#define GPO_DOORBELL_SYMBOL "gpo_doorbell"
/* The same doorbell for a process forked from the one that loaded the
 * library (client.cpp says why it needs its own); the agent probes both. */
#define GPO_DOORBELL_FORKED_SYMBOL "gpo_doorbell_forked"

/* Op ids: the rows of gpuoffload_ops.h (the API's GPO_* and the agent's OpId are the same numbers). */
#define GPO_OP_ID_(NAME, id, ident, name, family, gpu) GPO_OP_##NAME = id,
enum gpo_op_id { GPO_OPS(GPO_OP_ID_) };
#undef GPO_OP_ID_

enum gpo_job_state {
  GPO_JOB_FREE = 0,
  GPO_JOB_SUBMITTED = 1,
  GPO_JOB_RUNNING = 2,
  GPO_JOB_DONE = 3,
  GPO_JOB_REVOKED = 4,
  GPO_JOB_ABANDONED = 5,
  GPO_JOB_RELEASED = 6,
};

/* gpo_job.status once DONE (same numbers as gpo::backend::Status, plus rejected). */
enum gpo_job_status {
  GPO_JS_OK = 1,
  GPO_JS_AUTH_FAILED = 2,
  GPO_JS_INVALID = 3,  /* the op itself failed (bad sizes, corrupt zstd frame, output too small) */
  GPO_JS_FAILED = 4,
  GPO_JS_REJECTED = 5, /* the agent refused the job (its descriptor, or over quota): the client computes it */
};

/* One job: 152 bytes. Offsets are from the start of the slab. */
struct gpo_job {
  uint32_t state;     /* gpo_job_state; futex word */
  uint16_t op;        /* gpo_op_id */
  uint8_t status;     /* gpo_job_status, written by the agent before DONE */
  uint8_t iv_len;
  int32_t level;      /* zstd / zlib compression level */
  uint32_t crc;       /* crc32: the crc to continue from (zlib's first argument) */
  uint64_t in_off, in_len;
  uint64_t out_off, out_cap;
  uint64_t out_len;   /* written by the agent before DONE */
  uint64_t aad_off, aad_len;
  uint8_t key[32];
  uint8_t iv[16];
  uint8_t tag[16];    /* GCM: written on encrypt, the expected tag on decrypt */
  /* Tracing only (GPO_TRACE, the agent's per-job times), CLOCK_MONOTONIC ns:
   * the client's value is a claim the agent uses for nothing else. */
  uint64_t rung_ns;   /* client: just before it rang the doorbell */
  uint64_t done_ns;   /* agent: when it completed the job (before DONE) */
};

struct gpo_slab_header {
  uint32_t magic;
  uint32_t version;
  uint64_t size;      /* bytes of the slab */
  uint32_t njobs;     /* entries of the job table at job_off */
  uint32_t job_off;
  uint64_t data_off;  /* buffers live in [data_off, size) */
};

/* Socket messages (SOCK_SEQPACKET: one message per record). */
enum gpo_msg_type {
  GPO_MSG_REGISTER = 1,   /* client -> agent, with the memfd (SCM_RIGHTS) */
  GPO_MSG_REGISTERED = 2, /* agent -> client */
  GPO_MSG_DOORBELL = 3,   /* client -> agent when the uprobe doorbell is off */
  GPO_MSG_REFUSED = 4,    /* agent -> client: registration refused (reason in text) */
};

struct gpo_msg_register {
  uint32_t type;        /* GPO_MSG_REGISTER */
  uint32_t version;     /* GPO_PROTO_VERSION */
  uint64_t slab_size;
  uint32_t njobs;
  uint32_t job_off;
  uint64_t data_off;
  char lib_path[256];   /* the client library holding gpo_doorbell (for the uprobe); "" = none */
};

enum gpo_doorbell_mode { GPO_DOORBELL_SOCKET = 0, GPO_DOORBELL_UPROBE = 1 };

struct gpo_msg_registered {
  uint32_t type;        /* GPO_MSG_REGISTERED or GPO_MSG_REFUSED */
  uint32_t slab_id;
  uint32_t doorbell;    /* gpo_doorbell_mode */
  uint32_t max_inflight;
  char reason[128];     /* REFUSED: why */
};

/* The doorbell descriptor: what the uprobe reads from gpo_doorbell()'s
 * arguments and what the socket doorbell carries. */
struct gpo_msg_doorbell {
  uint32_t type;        /* GPO_MSG_DOORBELL */
  uint32_t slab_id;
  uint32_t job;         /* index in the job table */
  uint32_t op;
  uint64_t len;         /* in_len, checked against the job */
};

/* The plan page: a small file next to the socket (its path + ".plan") that
 * the agent keeps up to date and clients map read-only. It says, per op, from
 * which job size the agent can do better than the calling process (the GPU
 * wins even counting the round trip); smaller jobs, and every job while no
 * agent serves (no file, or state 0), stay in the process with no IPC at all.
 * The agent writes it with __atomic stores; clients read with __atomic loads. */
#define GPO_PLAN_MAGIC 0x4e4c5047u /* "GPLN" */
#define GPO_PLAN_VERSION 1u
#define GPO_PLAN_SUFFIX ".plan"
#define GPO_PLAN_OPS 16                    /* op ids 0..15 */
#define GPO_PLAN_NEVER 0xffffffffffffffffull

enum gpo_plan_state { GPO_PLAN_CLOSED = 0, GPO_PLAN_SERVING = 1 };

struct gpo_plan_page {
  uint32_t magic;       /* GPO_PLAN_MAGIC */
  uint32_t version;     /* GPO_PLAN_VERSION */
  uint32_t state;       /* gpo_plan_state: SERVING while the agent takes jobs */
  uint32_t agent_pid;
  uint64_t generation;  /* bumped at every change */
  uint64_t min_bytes[GPO_PLAN_OPS]; /* per op id: jobs of at least this many input bytes go to the agent */
};

#ifdef __cplusplus
}
#endif
#endif /* GPO_SLAB_PROTOCOL_H */
