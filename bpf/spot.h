/* Structs shared by spot.bpf.c and the agent (spotting path, DESIGN.md path 1).
 *
 * Maps (the agent pins them with BTF under /sys/fs/bpf/gpuoffload/ when it runs
 * as a daemon, so `bpftool map dump pinned /sys/fs/bpf/gpuoffload/spot_hist`
 * prints named fields):
 *   spot_events  ring buffer of struct gpo_spot_event (calls at or over the threshold)
 *   spot_hist    per-CPU array, op -> struct gpo_spot_hist (every call, any size)
 *   spot_cfg     array[1] of struct gpo_spot_config (written by the agent before attach)
 *   spot_stats   per-CPU array[1] of struct gpo_spot_stats (ring buffer overflow, dedup)
 *   spot_nest    LRU hash, thread id -> struct gpo_spot_nest (outer call in flight)
 *   spot_phist   LRU hash, (tgid, op) -> struct gpo_spot_hist (per process, every call counted)
 *   spot_watch   hash, tgid -> struct gpo_spot_watch (the processes being measured, when
 *                spot_cfg.watch_only is set: every other process is ignored)
 *
 * Uprobes: one program, up_entry, serves every library entry point; the attach
 * cookie (enum gpo_spot_entry) says which one fired. So one uprobe_multi link
 * covers all entry points of a library file, and detaching it is one step.
 */
#ifndef GPUOFFLOAD_SPOT_H
#define GPUOFFLOAD_SPOT_H

#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

#ifndef GPO_PIN_DIR
#define GPO_PIN_DIR "/sys/fs/bpf/gpuoffload"
#endif

#define GPO_SPOT_COMM_LEN 16
#define GPO_SPOT_HIST_SLOTS 48 /* log2 buckets: slot k counts lengths in [2^k, 2^(k+1)), slot 0 also 0 */
#define GPO_SPOT_RINGBUF_BYTES (1 << 22)
#define GPO_SPOT_DEFAULT_THRESHOLD (64 * 1024)

/* One value per spotted entry point. The names (gpo::spot::op_name) are the
 * CLI's and the JSON's; keep both lists in the same order. */
enum gpo_spot_op {
	GPO_SPOT_EVP_ENCRYPT = 0,   /* EVP_EncryptUpdate: inl */
	GPO_SPOT_EVP_DECRYPT,       /* EVP_DecryptUpdate: inl */
	GPO_SPOT_EVP_CIPHER,        /* EVP_CipherUpdate: inl (direction lives in the ctx) */
	GPO_SPOT_EVP_DIGEST,        /* EVP_DigestUpdate: cnt */
	GPO_SPOT_SHA256,            /* SHA256 one-shot: n */
	GPO_SPOT_ZSTD_COMPRESS,     /* ZSTD_compress, ZSTD_compressCCtx, ZSTD_compress2: srcSize */
	GPO_SPOT_ZSTD_STREAM,       /* ZSTD_compressStream2: input->size - input->pos */
	GPO_SPOT_ZSTD_DECOMPRESS,   /* ZSTD_decompress, ZSTD_decompressDCtx: compressed srcSize */
	GPO_SPOT_ZLIB_DEFLATE,      /* deflate: strm->avail_in; compress2: sourceLen */
	GPO_SPOT_ZLIB_CRC32,        /* crc32: len */
	GPO_SPOT_KERN_SKCIPHER_ENC, /* crypto_skcipher_encrypt: req->cryptlen */
	GPO_SPOT_KERN_SKCIPHER_DEC, /* crypto_skcipher_decrypt: req->cryptlen */
	GPO_SPOT_KERN_AEAD_ENC,     /* crypto_aead_encrypt: req->cryptlen */
	GPO_SPOT_KERN_AEAD_DEC,     /* crypto_aead_decrypt: req->cryptlen */
	GPO_SPOT_KERN_ZSTD_COMPRESS,/* zstd_compress_cctx: src_size */
	GPO_SPOT_OP_MAX,
};

/* The library entry points up_entry handles: its attach cookie. Finer than the
 * op (ZSTD_compress and ZSTD_compress2 both count as GPO_SPOT_ZSTD_COMPRESS).
 * Keep in the order of gpo::spot::uprobe_specs(). */
enum gpo_spot_entry {
	GPO_SPOT_E_EVP_ENCRYPT_UPDATE = 0,
	GPO_SPOT_E_EVP_DECRYPT_UPDATE,
	GPO_SPOT_E_EVP_CIPHER_UPDATE,
	GPO_SPOT_E_EVP_DIGEST_UPDATE,
	GPO_SPOT_E_SHA256,
	GPO_SPOT_E_ZSTD_COMPRESS,
	GPO_SPOT_E_ZSTD_COMPRESS_CCTX,
	GPO_SPOT_E_ZSTD_COMPRESS2,
	GPO_SPOT_E_ZSTD_COMPRESS_STREAM2,
	GPO_SPOT_E_ZSTD_DECOMPRESS,
	GPO_SPOT_E_ZSTD_DECOMPRESS_DCTX,
	GPO_SPOT_E_DEFLATE,
	GPO_SPOT_E_COMPRESS2,
	GPO_SPOT_E_CRC32,
	GPO_SPOT_E_CRC32_Z,
	GPO_SPOT_ENTRY_MAX,
};

#define GPO_SPOT_F_KERNEL 0x1      /* spotted by a kprobe: pid is whoever ran the kernel path */
#define GPO_SPOT_F_WINDOW_FULL 0x2 /* not a call: the watched process reached its call budget
                                      (len = calls seen); the agent ends its window */

/* One ring buffer record per call at or over its op's threshold. */
struct gpo_spot_event {
	__u64 ts_ns;     /* bpf_ktime_get_ns() at entry (CLOCK_MONOTONIC) */
	__u64 cgroup_id; /* cgroup v2 id of the caller */
	__u64 len;       /* bytes the call processes (input length) */
	__u32 pid;       /* kernel pid = thread id */
	__u32 tgid;      /* process id */
	__u32 op;        /* enum gpo_spot_op */
	__u32 flags;     /* GPO_SPOT_F_* */
	char comm[GPO_SPOT_COMM_LEN];
};

/* Size distribution of one op, over every call (small and large). */
struct gpo_spot_hist {
	__u64 calls;
	__u64 bytes;
	__u64 slots[GPO_SPOT_HIST_SLOTS];
};

struct gpo_spot_config {
	__u64 threshold[GPO_SPOT_OP_MAX]; /* bytes; a call with len >= threshold makes an event */
	__u32 ignore_tgid;                /* the agent itself (its CPU backend uses libcrypto) */
	__u32 watch_only;                 /* 1: count only the processes in spot_watch */
};

/* A process being measured (a probe window): calls counted so far and the
 * budget after which the window ends. */
struct gpo_spot_watch {
	__u64 calls;
	__u64 max_calls;
};

struct gpo_spot_proc_key {
	__u32 tgid;
	__u32 op;
};

struct gpo_spot_stats {
	__u64 events;       /* descriptors pushed */
	__u64 dropped;      /* ring buffer full: descriptor lost, call still in the histogram */
	__u64 nested;       /* inner calls of an already counted outer call (e.g. ZSTD_compress ->
	                       ZSTD_compressCCtx), skipped so each call counts once */
};

/* The outer call of a thread that wraps another spotted entry point, so the
 * inner call (same length, same thread, within GPO_SPOT_NEST_NS) is not
 * counted a second time. The window only bounds how long a stale entry (an
 * outer call whose inner call never came) can hide a later direct call. */
struct gpo_spot_nest {
	__u64 ts_ns;
	__u64 len;
	__u64 ctx; /* the EVP_CIPHER_CTX for cipher updates, 0 otherwise */
	__u32 family; /* enum gpo_spot_op of the inner entry points' family */
	__u32 pad;
};
#define GPO_SPOT_NEST_NS 200000000ULL /* 200 ms: wide enough for a preempted thread */

#endif /* GPUOFFLOAD_SPOT_H */
