/* The offload doorbell: what bpf/doorbell.bpf.c pushes into its ring buffer
 * when a client calls gpo_doorbell() in libgpuoffload. Shared with the agent
 * (agent/ipc/doorbell_probe.cpp). The kernel stamps tgid and cgroup; the
 * agent checks the tgid against the owner of the slab (agent/ipc). */
#ifndef GPO_BPF_DOORBELL_H
#define GPO_BPF_DOORBELL_H

#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

#define GPO_DOORBELL_RING_BYTES (1u << 20)
/* One CPU's ring (--offload-cpu-doorbells): about 5000 descriptors; what a
 * full ring loses is counted in doorbell_dropped and costs its clients their
 * timeout, never a result. */
#define GPO_DOORBELL_CPU_RING_BYTES (256u << 10)

struct gpo_doorbell_event {
  __u32 tgid;      /* stamped by the kernel */
  __u32 slab_id;   /* gpo_doorbell() arguments, as the client passed them */
  __u32 job;
  __u32 op;
  __u64 len;
  __u64 cgroup_id; /* stamped by the kernel */
  __u32 cpu;       /* where the client rang and now waits (stamped by the kernel):
                    * the CPU backend runs the job there, so no wake crosses CPUs */
  __u32 pad;
};

#endif
