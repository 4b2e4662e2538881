/* What one uprobe doorbell costs the client that rings it: registers with a
 * running agent (one SHA-256 job), then times N rings of gpo_doorbell (on
 * x86-64 a 5-byte nop that kernels with optimized uprobes turn into a call to
 * a trampoline) and N of gpo_doorbell_forked (a plain instruction: a
 * breakpoint trap and a single step per ring), alternating in rounds. The
 * rings name slab 0, which no agent hands out: the agent refuses them after
 * its BPF program and doorbell thread handled each, as for a real job.
 *
 *   doorbell-cost SOCKET [N]      (the agent: gpuoffload-agent run, as root)
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gpuoffload.h"

static double now_us(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec * 1e6 + (double)t.tv_nsec / 1e3;
}

int main(int argc, char** argv) {
  if (argc < 2 || strcmp(argv[1], "--help") == 0) {
    fprintf(stderr, "usage: doorbell-cost SOCKET [N]\n");
    return 2;
  }
  const int n = argc > 2 ? atoi(argv[2]) : 20000;
  gpo_set_socket(argv[1]);
  static unsigned char buf[1 << 20], digest[32];
  const void* p = buf;
  size_t len = sizeof buf;
  gpo_client_stats st;
  if (gpo_sha256_batch(&p, &len, 1, digest) != GPO_OK || (gpo_get_stats(&st), st.by_agent != 1)) {
    fprintf(stderr, "doorbell-cost: the agent at %s did not take a job (is it running with --offload-mode all?)\n",
            argv[1]);
    return 1;
  }
  if (st.doorbell != 1) {
    fprintf(stderr, "doorbell-cost: the agent gave this process the socket doorbell, not the uprobe (root?)\n");
    return 1;
  }
  double t_nop = 0, t_trap = 0;
  const int rounds = 10, per = n / rounds > 0 ? n / rounds : 1;
  for (int r = 0; r < rounds; ++r) {
    double t0 = now_us();
    for (int i = 0; i < per; ++i) gpo_doorbell(0, (uint32_t)i, 0, 0);
    double t1 = now_us();
    for (int i = 0; i < per; ++i) gpo_doorbell_forked(0, (uint32_t)i, 0, 0);
    t_nop += t1 - t0;
    t_trap += now_us() - t1;
  }
  const unsigned char first = *(const unsigned char*)(const void*)&gpo_doorbell;
  printf("gpo_doorbell        %8.2f us per ring (first byte now 0x%02x%s)\n", t_nop / (rounds * per), first,
         first == 0xe8 ? ": a call into the uprobe trampoline" : first == 0xcc ? ": a breakpoint" : "");
  printf("gpo_doorbell_forked %8.2f us per ring (a breakpoint trap and a single step)\n", t_trap / (rounds * per));
  return 0;
}
