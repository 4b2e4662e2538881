// SPDX-License-Identifier: GPL-2.0
/* Spotting by sampling: a perf_event program run on every CPU at a low rate
 * (the agent opens one sampling event per CPU) that attributes each sample to
 * an op from its instruction pointer, per process, in kernel maps. A process
 * pays nothing per call; the whole machine pays one short program run per
 * sample. See sample.h for the maps and the attribution rules.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

#include "sample.h"

char LICENSE[] SEC("license") = "GPL";

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, GPO_SAMPLE_MAX_TABLES);
	__type(key, struct gpo_sample_file);
	__type(value, __u32); /* index into sample_tables */
} sample_libs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, GPO_SAMPLE_MAX_TABLES);
	__type(key, __u32);
	__type(value, struct gpo_sample_table);
} sample_tables SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, GPO_SAMPLE_MAX_UNKNOWN);
	__type(key, struct gpo_sample_file);
	__type(value, struct gpo_sample_unknown);
} sample_unknown SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct gpo_sample_key);
	__type(value, __u64);
} sample_counts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, struct gpo_sample_proc);
} sample_procs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct gpo_sample_config);
} sample_cfg SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct gpo_sample_stats);
} sample_stats SEC(".maps");

/* The copy of the user stack a sample scans (too big for the BPF stack). */
struct stack_copy {
	__u64 w[GPO_SAMPLE_STACK_WORDS];
};
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct stack_copy);
} sample_scratch SEC(".maps");

/* The range whose [start, end) holds addr, by binary search; its op or 0. */
static __always_inline __u32 range_op(const struct gpo_sample_table *t, __u64 addr)
{
	__u32 lo = 0, hi = t->n;
	if (hi > GPO_SAMPLE_MAX_RANGES)
		hi = GPO_SAMPLE_MAX_RANGES;
	for (int i = 0; i < 10 && lo < hi; i++) {
		__u32 mid = (lo + hi) / 2;
		if (mid >= GPO_SAMPLE_MAX_RANGES)
			break;
		if (addr < t->r[mid].start)
			hi = mid;
		else if (addr >= t->r[mid].end)
			lo = mid + 1;
		else
			return t->r[mid].op;
	}
	return 0;
}

/* What bpf_find_vma learns about the mapping that holds the IP. */
struct vma_info {
	__u64 start, end, pgoff_bytes;
	__u32 table; /* 0: not a spotted library */
	__u32 found;
};

static long vma_cb(struct task_struct *task, struct vm_area_struct *vma, void *data)
{
	struct vma_info *v = data;
	struct file *f = BPF_CORE_READ(vma, vm_file);
	if (!f)
		return 0;
	struct gpo_sample_file key = {
		.dev = BPF_CORE_READ(f, f_inode, i_sb, s_dev),
		.ino = BPF_CORE_READ(f, f_inode, i_ino),
	};
	__u32 *table = bpf_map_lookup_elem(&sample_libs, &key);
	if (!table) {
		/* Perhaps a spotted library under the kernel's other name for it: tell the agent
		 * once (it resolves the name through /proc/TGID/maps). */
		if (!bpf_map_lookup_elem(&sample_unknown, &key)) {
			struct gpo_sample_unknown u = { .tgid = bpf_get_current_pid_tgid() >> 32,
							.vm_start = BPF_CORE_READ(vma, vm_start) };
			bpf_map_update_elem(&sample_unknown, &key, &u, BPF_NOEXIST);
		}
		return 0;
	}
	v->start = BPF_CORE_READ(vma, vm_start);
	v->end = BPF_CORE_READ(vma, vm_end);
	v->pgoff_bytes = BPF_CORE_READ(vma, vm_pgoff) << 12;
	v->table = *table;
	v->found = 1;
	return 0;
}

struct scan_ctx {
	const struct stack_copy *stack;
	const struct gpo_sample_table *t;
	const struct vma_info *v;
	__u32 op;
};

/* One stack word: a return address into the same text mapping that lies in a range. */
static long scan_word(__u32 i, void *data)
{
	struct scan_ctx *c = data;
	if (i >= GPO_SAMPLE_STACK_WORDS)
		return 1;
	__u64 w = c->stack->w[i];
	if (w < c->v->start || w >= c->v->end)
		return 0;
	__u32 op = range_op(c->t, w - c->v->start + c->v->pgoff_bytes);
	if (!op)
		return 0;
	c->op = op;
	return 1; /* the innermost one wins */
}

static __always_inline void count(__u32 tgid, __u32 op)
{
	struct gpo_sample_key key = { .tgid = tgid, .op = op };
	__u64 *n = bpf_map_lookup_elem(&sample_counts, &key);
	if (n) {
		__sync_fetch_and_add(n, 1);
		return;
	}
	__u64 one = 1;
	bpf_map_update_elem(&sample_counts, &key, &one, BPF_NOEXIST);
}

SEC("perf_event")
int sample_cpu(struct bpf_perf_event_data *ctx)
{
	__u32 zero = 0;
	struct gpo_sample_stats *st = bpf_map_lookup_elem(&sample_stats, &zero);
	struct gpo_sample_config *cfg = bpf_map_lookup_elem(&sample_cfg, &zero);
	if (!st || !cfg)
		return 0;
	st->samples++;
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	if (tgid == 0) {
		st->idle++;
		return 0;
	}
	if (tgid == cfg->ignore_tgid)
		return 0;

	struct gpo_sample_proc *p = bpf_map_lookup_elem(&sample_procs, &tgid);
	if (p) {
		__sync_fetch_and_add(&p->samples, 1);
		bpf_get_current_comm(p->comm, sizeof(p->comm)); /* the name after exec, not the parent's */
	} else {
		struct gpo_sample_proc np = { .samples = 1 };
		bpf_get_current_comm(np.comm, sizeof(np.comm));
		bpf_map_update_elem(&sample_procs, &tgid, &np, BPF_NOEXIST);
	}

	__u64 ip = PT_REGS_IP(&ctx->regs);
	if (ip >> 63) { /* kernel half of the address space: the CPU was in the kernel */
		st->kernel++;
		__u32 k = GPO_SAMPLE_KERNEL_TABLE;
		struct gpo_sample_table *kt = bpf_map_lookup_elem(&sample_tables, &k);
		__u32 op = kt ? range_op(kt, ip) : 0;
		if (op)
			count(tgid, op);
		return 0;
	}

	struct vma_info v = {};
	if (bpf_find_vma(bpf_get_current_task_btf(), ip, vma_cb, &v, 0) != 0) {
		st->no_vma++;
		return 0;
	}
	if (!v.found || v.table == GPO_SAMPLE_KERNEL_TABLE)
		return 0;
	st->in_lib++;
	__u32 ti = v.table;
	struct gpo_sample_table *t = bpf_map_lookup_elem(&sample_tables, &ti);
	if (!t)
		return 0;
	__u32 op = range_op(t, ip - v.start + v.pgoff_bytes);
	if (op) {
		st->direct++;
		count(tgid, op);
		return 0;
	}

	struct stack_copy *s = bpf_map_lookup_elem(&sample_scratch, &zero);
	__u32 words = cfg->stack_words;
	if (s && words) {
		if (words > GPO_SAMPLE_STACK_WORDS)
			words = GPO_SAMPLE_STACK_WORDS;
		/* Read what is mapped: the whole window, else the part up to the page end. */
		__u64 sp = PT_REGS_SP(&ctx->regs);
		if (bpf_probe_read_user(s->w, sizeof(s->w), (void *)sp) != 0) {
			__u64 left = 4096 - (sp & 4095);
			if (left > sizeof(s->w))
				left = sizeof(s->w);
			words = left / 8;
			if (bpf_probe_read_user(s->w, left, (void *)sp) != 0)
				words = 0;
		}
		struct scan_ctx c = { .stack = s, .t = t, .v = &v };
		if (words)
			bpf_loop(words, scan_word, &c, 0);
		if (c.op) {
			st->stack++;
			count(tgid, c.op);
			return 0;
		}
	}
	if (t->other_op)
		count(tgid, t->other_op);
	return 0;
}
