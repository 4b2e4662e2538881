// SPDX-License-Identifier: GPL-2.0
/* Offload doorbell: a uprobe on libgpuoffload's gpo_doorbell(slab, job, op, len)
 * forwards the descriptor to the agent, with the caller's tgid, cgroup and CPU
 * stamped here, where the client cannot forge them. It goes to the ring of the
 * CPU it fired on when the agent gave that CPU one (--offload-cpu-doorbells:
 * a thread of the agent pinned there waits on it), else to the shared ring
 * the agent's event loop drains. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#include "doorbell.h"

char LICENSE[] SEC("license") = "GPL";

struct {
  __uint(type, BPF_MAP_TYPE_RINGBUF);
  __uint(max_entries, GPO_DOORBELL_RING_BYTES);
} doorbell_events SEC(".maps");

/* Per CPU: a ring buffer the agent created and a thread of its pinned to that
 * CPU drains, or no entry. Sized to the possible CPUs by the agent. */
struct doorbell_ring {
  __uint(type, BPF_MAP_TYPE_RINGBUF);
  __uint(max_entries, GPO_DOORBELL_CPU_RING_BYTES);
};
struct {
  __uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
  __uint(max_entries, 1);
  __type(key, __u32);
  __array(values, struct doorbell_ring);
} doorbell_cpu_rings SEC(".maps");

/* Rings the agent lost because the buffer was full: the client falls back
 * after its timeout, so a loss costs latency, never a result. */
struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, __u64);
} doorbell_dropped SEC(".maps");

SEC("uprobe")
int BPF_KPROBE(gpo_doorbell_probe, __u32 slab_id, __u32 job, __u32 op, __u64 len) {
  __u32 cpu = bpf_get_smp_processor_id();
  void *ring = bpf_map_lookup_elem(&doorbell_cpu_rings, &cpu);
  struct gpo_doorbell_event *e;
  if (ring)
    e = bpf_ringbuf_reserve(ring, sizeof(*e), 0);
  else
    e = bpf_ringbuf_reserve(&doorbell_events, sizeof(*e), 0);
  if (!e) {
    __u32 zero = 0;
    __u64 *d = bpf_map_lookup_elem(&doorbell_dropped, &zero);
    if (d) __sync_fetch_and_add(d, 1);
    return 0;
  }
  e->tgid = bpf_get_current_pid_tgid() >> 32;
  e->slab_id = slab_id;
  e->job = job;
  e->op = op;
  e->len = len;
  e->cgroup_id = bpf_get_current_cgroup_id();
  e->cpu = cpu;
  e->pad = 0;
  bpf_ringbuf_submit(e, 0);
  return 0;
}
