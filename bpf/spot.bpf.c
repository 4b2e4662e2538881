// SPDX-License-Identifier: GPL-2.0
/* Spotting (DESIGN.md path 1): uprobes on libcrypto, libzstd and zlib entry
 * points and kprobes on the kernel's crypto and zstd entry points. Every call
 * updates a per-op log2 size histogram (all processes, and per process); a
 * call at or over its op's threshold also pushes a descriptor into the ring
 * buffer. The programs carry no attach target: the agent attaches them to the
 * library files it finds (see agent/spot/), either for every process (probe
 * mode) or filtered to the processes it measures for a bounded window
 * (sample mode: spot_cfg.watch_only and spot_watch).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

#include "spot.h"

char LICENSE[] SEC("license") = "GPL";

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, GPO_SPOT_RINGBUF_BYTES);
} spot_events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, GPO_SPOT_OP_MAX);
	__type(key, __u32);
	__type(value, struct gpo_spot_hist);
} spot_hist SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct gpo_spot_config);
} spot_cfg SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct gpo_spot_stats);
} spot_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, struct gpo_spot_nest);
} spot_nest SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, struct gpo_spot_proc_key);
	__type(value, struct gpo_spot_hist);
} spot_phist SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, struct gpo_spot_watch);
} spot_watch SEC(".maps");

/* Force BTF for the event struct so the skeleton and bpftool know it. */
const struct gpo_spot_event *unused_event __attribute__((unused));

static __always_inline __u32 log2_slot(__u64 v)
{
	__u32 r = 0;
	if (v >> 32) { v >>= 32; r += 32; }
	if (v >> 16) { v >>= 16; r += 16; }
	if (v >> 8) { v >>= 8; r += 8; }
	if (v >> 4) { v >>= 4; r += 4; }
	if (v >> 2) { v >>= 2; r += 2; }
	if (v >> 1) { r += 1; }
	return r < GPO_SPOT_HIST_SLOTS ? r : GPO_SPOT_HIST_SLOTS - 1;
}

static __always_inline struct gpo_spot_stats *stats(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&spot_stats, &zero);
}

/* Returns 1 when this call is the inner call of an outer spotted call of the
 * same thread (outer_family, same length, same ctx), which already counted it. */
static __always_inline int is_nested(__u32 tid, __u32 outer_family, __u64 len, __u64 ctx, __u64 now)
{
	struct gpo_spot_nest *n = bpf_map_lookup_elem(&spot_nest, &tid);
	if (!n)
		return 0;
	if (n->family != outer_family || n->len != len || n->ctx != ctx || now - n->ts_ns > GPO_SPOT_NEST_NS)
		return 0;
	bpf_map_delete_elem(&spot_nest, &tid);
	struct gpo_spot_stats *s = stats();
	if (s)
		__sync_fetch_and_add(&s->nested, 1);
	return 1;
}

static __always_inline void mark_outer(__u32 tid, __u32 family, __u64 len, __u64 ctx, __u64 now)
{
	struct gpo_spot_nest n = { .ts_ns = now, .len = len, .ctx = ctx, .family = family };
	bpf_map_update_elem(&spot_nest, &tid, &n, BPF_ANY);
}

#define NEST_NONE 0xffffffffu

/* The common body of every probe. inner_of: the family of an outer call this
 * entry point may be called from (NEST_NONE when none); outer: 1 when this
 * entry point calls another spotted one with the same length. */
static __always_inline int spot(__u32 op, __u64 len, __u64 ctx, __u32 inner_of, int outer, __u32 flags)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tid = (__u32)id, tgid = id >> 32;
	__u32 zero = 0;
	struct gpo_spot_config *cfg = bpf_map_lookup_elem(&spot_cfg, &zero);
	if (!cfg)
		return 0;
	if (tgid == cfg->ignore_tgid && tgid != 0)
		return 0;
	struct gpo_spot_watch *w = 0;
	if (cfg->watch_only) {
		w = bpf_map_lookup_elem(&spot_watch, &tgid);
		if (!w)
			return 0;
	}
	__u64 now = bpf_ktime_get_ns();
	if (inner_of != NEST_NONE && is_nested(tid, inner_of, len, ctx, now))
		return 0;
	if (outer)
		mark_outer(tid, op, len, ctx, now);
	if (op >= GPO_SPOT_OP_MAX)
		return 0;

	__u32 slot = log2_slot(len);
	__u32 key = op;
	struct gpo_spot_hist *h = bpf_map_lookup_elem(&spot_hist, &key);
	if (h) {
		__sync_fetch_and_add(&h->calls, 1);
		__sync_fetch_and_add(&h->bytes, len);
		if (slot < GPO_SPOT_HIST_SLOTS)
			__sync_fetch_and_add(&h->slots[slot], 1);
	}
	struct gpo_spot_proc_key pk = { .tgid = tgid, .op = op };
	struct gpo_spot_hist *ph = bpf_map_lookup_elem(&spot_phist, &pk);
	if (!ph) {
		static const struct gpo_spot_hist empty;
		bpf_map_update_elem(&spot_phist, &pk, &empty, BPF_NOEXIST);
		ph = bpf_map_lookup_elem(&spot_phist, &pk);
	}
	if (ph) {
		__sync_fetch_and_add(&ph->calls, 1);
		__sync_fetch_and_add(&ph->bytes, len);
		if (slot < GPO_SPOT_HIST_SLOTS)
			__sync_fetch_and_add(&ph->slots[slot], 1);
	}

	struct gpo_spot_stats *s = stats();
	/* The watched process used up its call budget: tell the agent once, so it
	 * ends the window now rather than at its next tick. */
	if (w && __sync_fetch_and_add(&w->calls, 1) + 1 == w->max_calls) {
		struct gpo_spot_event *n = bpf_ringbuf_reserve(&spot_events, sizeof(*n), 0);
		if (n) {
			__builtin_memset(n, 0, sizeof(*n));
			n->ts_ns = now;
			n->tgid = n->pid = tgid;
			n->op = op;
			n->len = w->max_calls;
			n->flags = GPO_SPOT_F_WINDOW_FULL;
			bpf_ringbuf_submit(n, 0);
		} else if (s) {
			__sync_fetch_and_add(&s->dropped, 1);
		}
	}
	if (len < cfg->threshold[op])
		return 0;

	struct gpo_spot_event *e = bpf_ringbuf_reserve(&spot_events, sizeof(*e), 0);
	if (!e) {
		if (s)
			__sync_fetch_and_add(&s->dropped, 1);
		return 0;
	}
	e->ts_ns = now;
	e->cgroup_id = bpf_get_current_cgroup_id();
	e->len = len;
	e->pid = tid;
	e->tgid = tgid;
	e->op = op;
	e->flags = flags;
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	bpf_ringbuf_submit(e, 0);
	if (s)
		__sync_fetch_and_add(&s->events, 1);
	return 0;
}

/* ---- library entry points: one program, the attach cookie says which ---- */

/* ZSTD_inBuffer is part of zstd's stable ABI: { const void *src; size_t size; size_t pos; } */
struct zstd_in_buffer {
	const void *src;
	__u64 size;
	__u64 pos;
};

/* z_stream starts with { Bytef *next_in; uInt avail_in; ... } in every zlib ABI. */
struct z_stream_head {
	const void *next_in;
	__u32 avail_in;
};

static __always_inline __u64 int_len(__u64 reg)
{
	int v = (int)reg;
	return v > 0 ? v : 0;
}

SEC("uprobe")
int up_entry(struct pt_regs *ctx)
{
	__u64 a1 = PT_REGS_PARM1(ctx), a2 = PT_REGS_PARM2(ctx), a3 = PT_REGS_PARM3(ctx);
	__u64 a4 = PT_REGS_PARM4(ctx), a5 = PT_REGS_PARM5(ctx);

	switch (bpf_get_attach_cookie(ctx)) {
	/* int EVP_EncryptUpdate(EVP_CIPHER_CTX *ctx, unsigned char *out, int *outl, const unsigned char *in, int inl) */
	case GPO_SPOT_E_EVP_ENCRYPT_UPDATE:
		return spot(GPO_SPOT_EVP_ENCRYPT, int_len(a5), a1, GPO_SPOT_EVP_CIPHER, 0, 0);
	case GPO_SPOT_E_EVP_DECRYPT_UPDATE:
		return spot(GPO_SPOT_EVP_DECRYPT, int_len(a5), a1, GPO_SPOT_EVP_CIPHER, 0, 0);
	/* EVP_CipherUpdate forwards to EVP_EncryptUpdate or EVP_DecryptUpdate. */
	case GPO_SPOT_E_EVP_CIPHER_UPDATE:
		return spot(GPO_SPOT_EVP_CIPHER, int_len(a5), a1, NEST_NONE, 1, 0);
	/* int EVP_DigestUpdate(EVP_MD_CTX *ctx, const void *d, size_t cnt) */
	case GPO_SPOT_E_EVP_DIGEST_UPDATE:
		return spot(GPO_SPOT_EVP_DIGEST, a3, 0, GPO_SPOT_SHA256, 0, 0);
	/* unsigned char *SHA256(const unsigned char *d, size_t n, unsigned char *md);
	 * OpenSSL >= 3.2 implements it with EVP_Q_digest -> EVP_DigestUpdate. */
	case GPO_SPOT_E_SHA256:
		return spot(GPO_SPOT_SHA256, a2, 0, NEST_NONE, 1, 0);
	/* size_t ZSTD_compress(void *dst, size_t cap, const void *src, size_t srcSize, int level):
	 * calls ZSTD_compressCCtx with the same srcSize. */
	case GPO_SPOT_E_ZSTD_COMPRESS:
		return spot(GPO_SPOT_ZSTD_COMPRESS, a4, 0, NEST_NONE, 1, 0);
	/* size_t ZSTD_compressCCtx(ZSTD_CCtx *cctx, void *dst, size_t cap, const void *src, size_t srcSize, int level) */
	case GPO_SPOT_E_ZSTD_COMPRESS_CCTX:
		return spot(GPO_SPOT_ZSTD_COMPRESS, a5, 0, GPO_SPOT_ZSTD_COMPRESS, 0, 0);
	/* size_t ZSTD_compress2(ZSTD_CCtx *cctx, void *dst, size_t cap, const void *src, size_t srcSize):
	 * calls ZSTD_compressStream2 with the whole input. */
	case GPO_SPOT_E_ZSTD_COMPRESS2:
		return spot(GPO_SPOT_ZSTD_COMPRESS, a5, 0, NEST_NONE, 1, 0);
	/* size_t ZSTD_compressStream2(ZSTD_CCtx *cctx, ZSTD_outBuffer *output, ZSTD_inBuffer *input, ZSTD_EndDirective end) */
	case GPO_SPOT_E_ZSTD_COMPRESS_STREAM2: {
		struct zstd_in_buffer in = {};
		if (bpf_probe_read_user(&in, sizeof(in), (void *)a3))
			return 0;
		__u64 len = in.size > in.pos ? in.size - in.pos : 0;
		return spot(GPO_SPOT_ZSTD_STREAM, len, 0, GPO_SPOT_ZSTD_COMPRESS, 0, 0);
	}
	/* size_t ZSTD_decompress(void *dst, size_t cap, const void *src, size_t compressedSize):
	 * calls ZSTD_decompressDCtx with the same size. The length is the compressed input. */
	case GPO_SPOT_E_ZSTD_DECOMPRESS:
		return spot(GPO_SPOT_ZSTD_DECOMPRESS, a4, 0, NEST_NONE, 1, 0);
	/* size_t ZSTD_decompressDCtx(ZSTD_DCtx *dctx, void *dst, size_t cap, const void *src, size_t srcSize) */
	case GPO_SPOT_E_ZSTD_DECOMPRESS_DCTX:
		return spot(GPO_SPOT_ZSTD_DECOMPRESS, a5, 0, GPO_SPOT_ZSTD_DECOMPRESS, 0, 0);
	/* int deflate(z_streamp strm, int flush) */
	case GPO_SPOT_E_DEFLATE: {
		struct z_stream_head head = {};
		if (bpf_probe_read_user(&head, sizeof(head), (void *)a1))
			return 0;
		return spot(GPO_SPOT_ZLIB_DEFLATE, head.avail_in, 0, GPO_SPOT_ZLIB_DEFLATE, 0, 0);
	}
	/* int compress2(Bytef *dest, uLongf *destLen, const Bytef *source, uLong sourceLen, int level):
	 * calls deflate with avail_in = sourceLen (inputs under 4 GiB). */
	case GPO_SPOT_E_COMPRESS2:
		return spot(GPO_SPOT_ZLIB_DEFLATE, a4, 0, NEST_NONE, 1, 0);
	/* uLong crc32(uLong crc, const Bytef *buf, uInt len): in zlib >= 1.2.9 a
	 * wrapper of crc32_z, which the agent probes instead where it can. */
	case GPO_SPOT_E_CRC32:
		return spot(GPO_SPOT_ZLIB_CRC32, a2 ? (__u32)a3 : 0, 0, NEST_NONE, 1, 0);
	/* uLong crc32_z(uLong crc, const Bytef *buf, z_size_t len) */
	case GPO_SPOT_E_CRC32_Z:
		return spot(GPO_SPOT_ZLIB_CRC32, a2 ? a3 : 0, 0, GPO_SPOT_ZLIB_CRC32, 0, 0);
	}
	return 0;
}

/* ---- kernel (kprobes; not autoloaded where the kernel has none) ---- */

SEC("kprobe/crypto_skcipher_encrypt")
int BPF_KPROBE(kp_skcipher_encrypt, struct skcipher_request *req)
{
	return spot(GPO_SPOT_KERN_SKCIPHER_ENC, BPF_CORE_READ(req, cryptlen), 0, NEST_NONE, 0, GPO_SPOT_F_KERNEL);
}

SEC("kprobe/crypto_skcipher_decrypt")
int BPF_KPROBE(kp_skcipher_decrypt, struct skcipher_request *req)
{
	return spot(GPO_SPOT_KERN_SKCIPHER_DEC, BPF_CORE_READ(req, cryptlen), 0, NEST_NONE, 0, GPO_SPOT_F_KERNEL);
}

SEC("kprobe/crypto_aead_encrypt")
int BPF_KPROBE(kp_aead_encrypt, struct aead_request *req)
{
	return spot(GPO_SPOT_KERN_AEAD_ENC, BPF_CORE_READ(req, cryptlen), 0, NEST_NONE, 0, GPO_SPOT_F_KERNEL);
}

SEC("kprobe/crypto_aead_decrypt")
int BPF_KPROBE(kp_aead_decrypt, struct aead_request *req)
{
	return spot(GPO_SPOT_KERN_AEAD_DEC, BPF_CORE_READ(req, cryptlen), 0, NEST_NONE, 0, GPO_SPOT_F_KERNEL);
}

/* size_t zstd_compress_cctx(zstd_cctx *cctx, void *dst, size_t dst_capacity,
 *                           const void *src, size_t src_size, const zstd_parameters *parameters) */
SEC("kprobe/zstd_compress_cctx")
int BPF_KPROBE(kp_zstd_compress_cctx, void *cctx, void *dst, __u64 cap, const void *src, __u64 src_size)
{
	return spot(GPO_SPOT_KERN_ZSTD_COMPRESS, src_size, 0, NEST_NONE, 0, GPO_SPOT_F_KERNEL);
}
