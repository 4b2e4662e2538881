// struct sched_attr as the kernel takes it (SCHED_ATTR_SIZE_VER0), for
// sched_setattr/sched_getattr through syscall(): the uapi header cannot be
// included beside glibc's sched.h, and glibc 2.36 wraps neither call.
#pragma once
#include <cstdint>

namespace gpo::util {

struct SchedAttr {
  uint32_t size = sizeof(SchedAttr), policy = 0;
  uint64_t flags = 0;
  int32_t nice = 0;
  uint32_t priority = 0;
  uint64_t runtime = 0, deadline = 0, period = 0;  // runtime: a SCHED_OTHER task's slice (6.12+)
};
static_assert(sizeof(SchedAttr) == 48);

}  // namespace gpo::util
