/* Structs shared by sample.bpf.c and the agent (spotting by sampling).
 *
 * A perf_event program samples the CPUs at a low rate (hardware cycles, or the
 * software CPU clock where there is no PMU) and attributes each sample to an op
 * by its instruction pointer: no per-call cost in any process. The agent
 * describes where each op's code lives as sorted address ranges:
 *
 *   sample_libs    hash, (dev, inode) of a spotted library file -> its range table
 *   sample_tables  array of range tables; table 0 is the kernel's (absolute
 *                  addresses from /proc/kallsyms), the others hold file offsets
 *   sample_counts  LRU hash, (tgid, op) -> samples
 *   sample_procs   LRU hash, tgid -> samples of any kind, comm
 *   sample_cfg     array[1]: the agent's own tgid (never counted), stack scan depth
 *   sample_stats   per-CPU array[1]: what happened to the samples
 *
 * A user-space sample whose IP lies in a library but in no range (its hot loop
 * is a hidden, unnamed function) is attributed by scanning the user stack for
 * a return address inside a range: the innermost exported function of the
 * library that is on the stack (e.g. CRYPTO_gcm128_encrypt_ctr32 above the
 * hidden aesni_gcm_encrypt). What is still unattributed counts as the
 * library's "other" op.
 */
#ifndef GPUOFFLOAD_SAMPLE_H
#define GPUOFFLOAD_SAMPLE_H

#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

#define GPO_SAMPLE_MAX_RANGES 512   /* per table; binary search, 10 steps */
#define GPO_SAMPLE_MAX_TABLES 64    /* kernel + library files */
#define GPO_SAMPLE_STACK_WORDS 256  /* 2 KiB of user stack scanned at most */
#define GPO_SAMPLE_KERNEL_TABLE 0
#define GPO_SAMPLE_COMM_LEN 16
#define GPO_SAMPLE_MAX_UNKNOWN 512  /* file-backed mappings sampled but not in sample_libs */

/* What a sample is attributed to. The names (gpo::spot::sample_op_name) are
 * the CLI's and the JSON's; keep both lists in the same order. */
enum gpo_sample_op {
	GPO_SAMPLE_NONE = 0,
	GPO_SAMPLE_CIPHER,            /* libcrypto EVP cipher updates, AES modes */
	GPO_SAMPLE_DIGEST,            /* libcrypto EVP digests, SHA-256 */
	GPO_SAMPLE_ZSTD_COMPRESS,     /* libzstd ZSTD_compress* */
	GPO_SAMPLE_ZSTD_DECOMPRESS,   /* libzstd ZSTD_decompress* */
	GPO_SAMPLE_ZLIB_DEFLATE,      /* zlib deflate*, compress* */
	GPO_SAMPLE_ZLIB_CRC32,        /* zlib crc32* */
	GPO_SAMPLE_CRYPTO_OTHER,      /* in libcrypto, none of the above */
	GPO_SAMPLE_ZSTD_OTHER,        /* in libzstd, none of the above */
	GPO_SAMPLE_ZLIB_OTHER,        /* in zlib, none of the above */
	GPO_SAMPLE_KERN_CIPHER,       /* kernel AES, skcipher and aead */
	GPO_SAMPLE_KERN_ZSTD_COMPRESS,/* kernel zstd compression */
	GPO_SAMPLE_OP_MAX,
};

struct gpo_sample_range {
	__u64 start; /* file offset (libraries) or address (kernel), inclusive */
	__u64 end;   /* exclusive */
	__u32 op;    /* enum gpo_sample_op */
	__u32 pad;
};

struct gpo_sample_table {
	__u32 n;        /* ranges in use, sorted by start, not overlapping */
	__u32 other_op; /* op of a sample in this library that no range claims */
	struct gpo_sample_range r[GPO_SAMPLE_MAX_RANGES];
};

/* A library file as the kernel names it: super block device (the kernel's
 * MKDEV encoding: major << 20 | minor) and inode number. */
struct gpo_sample_file {
	__u64 dev;
	__u64 ino;
};

/* A mapped file a sample landed in that sample_libs does not know, and one process
 * that maps it. The agent reads it from /proc/TGID/maps: when the file is a spotted
 * library under another name (overlayfs and other stacked file systems map the
 * underlying file, whose device and inode differ from what stat() shows), it adds the
 * kernel's name as an alias of that library's table. */
struct gpo_sample_unknown {
	__u32 tgid;
	__u32 pad;
	__u64 vm_start; /* where that process maps it: the agent finds the line by address,
			 * since maps may show the stacked file's device and inode, not these */
};

struct gpo_sample_key {
	__u32 tgid;
	__u32 op;
};

struct gpo_sample_proc {
	__u64 samples; /* every sample of the process, in or out of the libraries */
	char comm[GPO_SAMPLE_COMM_LEN];
};

struct gpo_sample_config {
	__u32 ignore_tgid; /* the agent itself */
	__u32 stack_words; /* user stack words scanned, <= GPO_SAMPLE_STACK_WORDS */
};

struct gpo_sample_stats {
	__u64 samples;  /* program runs */
	__u64 idle;     /* the idle task was on the CPU */
	__u64 kernel;   /* the CPU was in the kernel (attributed through table 0 or not at all) */
	__u64 in_lib;   /* user IP inside a spotted library */
	__u64 direct;   /* ... attributed by the IP itself */
	__u64 stack;    /* ... attributed by a return address on the stack */
	__u64 no_vma;   /* bpf_find_vma failed (mmap lock busy, no mapping) */
};

#endif /* GPUOFFLOAD_SAMPLE_H */
