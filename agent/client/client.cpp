// libgpuoffload: the client side of the offload path (docs/offload.md).
// One connection and one slab per process, made on first use; jobs are slots
// of the slab's job table, their buffers carved from its data area.
#include <dlfcn.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <poll.h>
#include <pthread.h>
#include <time.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>
#include <zstd.h>
#include <zstd_errors.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <new>
#include <string>
#include <vector>

#include "backend/op_table.h"
#include "kernels/aes/aes.h"
#include "kernels/crc32/crc32.h"
#include "kernels/zlib/zlib.h"
#include "client_counts.h"
#include "gpuoffload.h"
#include "ipc/slab_protocol.h"
#include "ipc/slab_validate.h"
#include "kernels/sha256/sha256.h"
#include "util/fd_passing.h"

using Clock = std::chrono::steady_clock;

// The doorbells do nothing: the agent's uprobe on their first instruction
// reads the arguments. On x86-64 gpo_doorbell's is a 5-byte nop, which a
// kernel with optimized uprobes (6.18 and later) turns into a call to a uprobe
// trampoline it maps into the process at the first hit: a system call per
// ring instead of a breakpoint trapped and an instruction stepped out of line
// (a fifth to an eighth of the time on a virtual machine). Other kernels probe
// the nop like any instruction. Aligned to 16, the nop never crosses a page,
// which the kernel needs to rewrite it.
//
// A forked child inherits that call but not the trampoline (6.18): calling it
// there kills the child with SIGSEGV. So a process other than the one that
// loaded the library rings gpo_doorbell_forked, which no kernel optimizes.
#if defined(__x86_64__)
asm(R"(
  .pushsection .text
  .globl gpo_doorbell
  .type gpo_doorbell, @function
  .p2align 4
gpo_doorbell:
  .cfi_startproc
  .byte 0x0f, 0x1f, 0x44, 0x00, 0x00
  ret
  .cfi_endproc
  .size gpo_doorbell, .-gpo_doorbell

  .globl gpo_doorbell_forked
  .type gpo_doorbell_forked, @function
  .p2align 4
gpo_doorbell_forked:
  .cfi_startproc
  ret
  .cfi_endproc
  .size gpo_doorbell_forked, .-gpo_doorbell_forked
  .popsection
)");
#else
// noipa: two identical empty functions must stay two (identical code folding).
extern "C" __attribute__((noipa, visibility("default"))) void gpo_doorbell(uint32_t slab_id, uint32_t job,
                                                                            uint32_t op, uint64_t len) {
  // The asm keeps the compiler from dropping the call or the arguments.
  asm volatile("" ::"r"(slab_id), "r"(job), "r"(op), "r"(len) : "memory");
}
extern "C" __attribute__((noipa, visibility("default"))) void gpo_doorbell_forked(uint32_t slab_id, uint32_t job,
                                                                                   uint32_t op, uint64_t len) {
  asm volatile("" ::"r"(slab_id), "r"(job), "r"(op), "r"(len) : "memory");
}
#endif

namespace {

constexpr uint32_t kJobs = 1024;
constexpr uint64_t kAlign = 64;

struct Counters {
  std::atomic<uint64_t> jobs{0}, by_agent{0}, local{0}, local_no_agent{0}, local_timeout{0}, local_agent_gone{0},
      local_rejected{0}, local_no_room{0}, local_by_plan{0}, connects{0};
  // Where the time of jobs sent to the agent goes, in this process (GPO_TRACE=1 prints it at exit).
  std::atomic<uint64_t> ns_copy_in{0}, ns_ring{0}, ns_wait{0}, ns_copy_out{0}, sent{0};
  // From the agent's completion (its done_ns) to this thread seeing DONE.
  std::atomic<uint64_t> ns_woken{0}, woken{0};
} g_count;

int64_t mono_ns();

void print_trace() {
  const double n = double(std::max<uint64_t>(1, g_count.sent.load()));
  std::fprintf(stderr,
               "gpuoffload client %d: %llu jobs, %llu by the agent, %llu here (%llu by plan, %llu no agent, %llu "
               "timeout, %llu agent gone, %llu rejected, %llu no room); per job sent: copy in %.1f us, doorbell "
               "%.1f us, wait %.1f us (woken %.1f us after the agent completed it), copy out %.1f us\n",
               int(getpid()), (unsigned long long)g_count.jobs.load(), (unsigned long long)g_count.by_agent.load(),
               (unsigned long long)g_count.local.load(), (unsigned long long)g_count.local_by_plan.load(),
               (unsigned long long)g_count.local_no_agent.load(), (unsigned long long)g_count.local_timeout.load(),
               (unsigned long long)g_count.local_agent_gone.load(), (unsigned long long)g_count.local_rejected.load(),
               (unsigned long long)g_count.local_no_room.load(), double(g_count.ns_copy_in.load()) / n / 1e3,
               double(g_count.ns_ring.load()) / n / 1e3, double(g_count.ns_wait.load()) / n / 1e3,
               double(g_count.ns_woken.load()) / double(std::max<uint64_t>(1, g_count.woken.load())) / 1e3,
               double(g_count.ns_copy_out.load()) / n / 1e3);
}

// The environment, unless this process must not trust it (setuid or setgid,
// or capabilities gained at exec: AT_SECURE): then every GPO_* variable is
// ignored and the defaults hold, so a caller cannot point a privileged
// program at a socket of its choosing.
const char* env(const char* name) { return secure_getenv(name); }

uint64_t env_u64(const char* name, uint64_t def) {
  const char* v = env(name);
  if (!v || !*v) return def;
  char* end = nullptr;
  unsigned long long x = strtoull(v, &end, 10);
  return end && *end == '\0' ? x : def;
}

// First-fit allocator over the slab's data area; offsets are slab offsets.
class Allocator {
 public:
  void init(uint64_t off, uint64_t len) { free_[off] = len; }
  bool alloc(uint64_t len, uint64_t* off) {
    len = (len + kAlign - 1) / kAlign * kAlign;
    if (len == 0) len = kAlign;
    for (auto it = free_.begin(); it != free_.end(); ++it) {
      if (it->second < len) continue;
      *off = it->first;
      uint64_t rest = it->second - len;
      uint64_t at = it->first + len;
      free_.erase(it);
      if (rest) free_[at] = rest;
      used_[*off] = len;
      return true;
    }
    return false;
  }
  void release(uint64_t off) {
    auto u = used_.find(off);
    if (u == used_.end()) return;
    uint64_t len = u->second;
    used_.erase(u);
    auto next = free_.lower_bound(off);
    if (next != free_.end() && off + len == next->first) {
      len += next->second;
      next = free_.erase(next);
    }
    if (next != free_.begin()) {
      auto prev = std::prev(next);
      if (prev->first + prev->second == off) {
        prev->second += len;
        return;
      }
    }
    free_[off] = len;
  }

 private:
  std::map<uint64_t, uint64_t> free_, used_;
};

// The process that loaded the library (exec starts afresh); a process
// forked from it rings gpo_doorbell_forked.
const pid_t g_loaded_by = getpid();

struct Conn {
  int fd = -1;
  uint8_t* base = nullptr;
  uint64_t size = 0;
  gpo::ipc::SlabLayout layout;
  uint32_t slab_id = 0;
  int doorbell = GPO_DOORBELL_SOCKET;
  pid_t pid = getpid();  // the process that registered the slab
  std::atomic<bool> dead{false};
  std::mutex mu;  // jobs free list, allocator, zombies
  std::vector<uint32_t> free_jobs;
  std::vector<uint32_t> zombies;  // ABANDONED: buffers reserved until the agent releases them
  struct Bufs {
    uint64_t in = UINT64_MAX, out = UINT64_MAX, aad = UINT64_MAX;
  };
  std::vector<Bufs> bufs;
  Allocator alloc;

  gpo_job* job(uint32_t i) {
    auto* h = reinterpret_cast<gpo_slab_header*>(base);
    return reinterpret_cast<gpo_job*>(base + h->job_off) + i;
  }
  void free_job_locked(uint32_t i) {
    for (uint64_t o : {bufs[i].in, bufs[i].out, bufs[i].aad})
      if (o != UINT64_MAX) alloc.release(o);
    bufs[i] = Bufs{};
    __atomic_store_n(&job(i)->state, GPO_JOB_FREE, __ATOMIC_RELAXED);
    free_jobs.push_back(i);
  }
  void reap_zombies_locked() {
    for (size_t k = 0; k < zombies.size();) {
      uint32_t i = zombies[k];
      if (__atomic_load_n(&job(i)->state, __ATOMIC_ACQUIRE) == GPO_JOB_RELEASED) {
        free_job_locked(i);
        zombies[k] = zombies.back();
        zombies.pop_back();
      } else {
        ++k;
      }
    }
  }
  // Has the agent closed its end? (killed, restarted)
  bool check_dead() {
    if (dead.load()) return true;
    pollfd p{fd, POLLRDHUP, 0};
    if (poll(&p, 1, 0) > 0 && (p.revents & (POLLHUP | POLLRDHUP | POLLERR))) dead = true;
    return dead.load();
  }
  ~Conn() {
    if (base) munmap(base, size);
    if (fd >= 0) close(fd);
  }
};

std::mutex g_mu;  // g_conn, g_next_try, g_socket
std::shared_ptr<Conn> g_conn;
Clock::time_point g_next_try;
std::string g_socket;
bool g_socket_set = false;
std::once_flag g_atfork_once;

std::string socket_path() {
  if (g_socket_set) return g_socket;
  const char* e = env("GPO_SOCKET");
  return e && *e ? e : GPO_DEFAULT_SOCKET;
}

// The agent's plan page (slab_protocol.h): mapped read-only, looked at per
// call with a few loads. The file is looked for again at most every
// GPO_RECONNECT_MS while it is absent or closed, and every second while it
// serves (an agent restarted with other settings writes a new file). A page
// once mapped is never unmapped: a call may still be reading it.
struct PlanView {
  std::mutex mu;                               // refresh
  std::atomic<const gpo_plan_page*> page{nullptr};
  std::atomic<int64_t> next_check_ns{0};
  std::atomic<bool> disabled{false};           // GPO_DISABLE, read at each refresh
  std::string path;                            // under mu
  dev_t dev = 0;
  ino_t ino = 0;
} g_plan;

int64_t mono_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

void init_once();

// Who may run the agent this process talks to: root, this process's own
// effective user (who could do anything the agent does for it anyway), or
// GPO_AGENT_UID. Another user's socket or plan page could hand out wrong
// results and receive every input.
bool trusted_agent_uid(uid_t uid) {
  if (uid == 0 || uid == geteuid()) return true;
  const char* v = env("GPO_AGENT_UID");
  char* end = nullptr;
  const unsigned long u = v && *v ? strtoul(v, &end, 10) : 0;
  return v && *v && end && !*end && uid == uid_t(u);
}

void refresh_plan(int64_t now, const std::string& plan_path) {
  init_once();
  std::lock_guard lk(g_plan.mu);
  if (now < g_plan.next_check_ns.load()) return;  // another thread just did
  g_plan.disabled = env_u64("GPO_DISABLE", 0) != 0;
  if (plan_path != g_plan.path) {
    g_plan.path = plan_path;
    g_plan.page = nullptr;
    g_plan.dev = 0, g_plan.ino = 0;
  }
  const gpo_plan_page* cur = g_plan.page.load();
  struct stat st {};
  if (stat(g_plan.path.c_str(), &st) != 0) {
    g_plan.page = nullptr;
  } else if (!cur || st.st_dev != g_plan.dev || st.st_ino != g_plan.ino) {
    int fd = open(g_plan.path.c_str(), O_RDONLY | O_CLOEXEC);
    struct stat fst {};
    // Only a page the trusted agent's user wrote: another user's file in a
    // shared folder could be truncated under the mapping (SIGBUS) or lie.
    if (fd >= 0 && fstat(fd, &fst) == 0 && S_ISREG(fst.st_mode) && trusted_agent_uid(fst.st_uid) &&
        uint64_t(fst.st_size) >= sizeof(gpo_plan_page)) {
      void* p = mmap(nullptr, sizeof(gpo_plan_page), PROT_READ, MAP_SHARED, fd, 0);
      const auto* pg = static_cast<const gpo_plan_page*>(p);
      if (p != MAP_FAILED && pg->magic == GPO_PLAN_MAGIC && pg->version == GPO_PLAN_VERSION) {
        g_plan.page = pg;
        g_plan.dev = fst.st_dev, g_plan.ino = fst.st_ino;
      } else if (p != MAP_FAILED) {
        munmap(p, sizeof(gpo_plan_page));
      }
    }
    if (fd >= 0) close(fd);
  }
  cur = g_plan.page.load();
  const bool serving = cur && __atomic_load_n(&cur->state, __ATOMIC_ACQUIRE) == GPO_PLAN_SERVING;
  g_plan.next_check_ns = now + (serving ? int64_t(1000000000) : int64_t(env_u64("GPO_RECONNECT_MS", 200)) * 1000000);
}

enum class Route { agent, local_by_plan, no_agent };

// Where a job of op with len input bytes goes: to the agent only while its
// plan page serves and says the GPU wins from this size.
Route route(int op, size_t len) {
  const int64_t now = mono_ns();
  if (now >= g_plan.next_check_ns.load(std::memory_order_relaxed)) {
    std::string path;
    {
      std::lock_guard lk(g_mu);
      path = socket_path() + GPO_PLAN_SUFFIX;
    }
    refresh_plan(now, path);
  }
  const gpo_plan_page* p = g_plan.page.load(std::memory_order_acquire);
  if (!p || g_plan.disabled.load(std::memory_order_relaxed) ||
      __atomic_load_n(&p->state, __ATOMIC_ACQUIRE) != GPO_PLAN_SERVING)
    return Route::no_agent;
  if (op < 0 || op >= GPO_PLAN_OPS) return Route::local_by_plan;
  // NEVER is the largest size there is: compared as a size, SIZE_MAX (the
  // "at any size?" question of gpo_offload_range) would pass it.
  const uint64_t min = __atomic_load_n(&p->min_bytes[op], __ATOMIC_ACQUIRE);
  return min != GPO_PLAN_NEVER && uint64_t(len) >= min ? Route::agent : Route::local_by_plan;
}

// Looks at the plan page again on the next call (a new socket, a reconnect).
void plan_recheck() { g_plan.next_check_ns = 0; }

// The file that holds gpo_doorbell, as /proc/PID/maps names it (the loader's
// name may be a symlink, libgpuoffload.so.0): the agent looks it up there.
std::string own_library_path() {
  Dl_info info{};
  if (!dladdr(reinterpret_cast<void*>(&gpo_doorbell), &info) || !info.dli_fname || info.dli_fname[0] != '/') return "";
  char real[PATH_MAX];
  return realpath(info.dli_fname, real) ? real : "";
}

// Connects, creates and registers the slab. Null when the agent is not there
// or refuses; the caller then computes locally.
std::shared_ptr<Conn> connect_agent() {
  std::string path = socket_path();
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof(addr.sun_path)) return nullptr;
  std::strcpy(addr.sun_path, path.c_str());
  auto c = std::make_shared<Conn>();
  c->fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
  if (c->fd < 0 || connect(c->fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) return nullptr;
  // Who listens (the kernel's record of the listener): nothing is sent to an
  // agent of an untrusted user.
  ucred peer{};
  socklen_t plen = sizeof(peer);
  if (getsockopt(c->fd, SOL_SOCKET, SO_PEERCRED, &peer, &plen) != 0 || !trusted_agent_uid(peer.uid)) return nullptr;

  // 64 MiB: 16 threads with a 1 MiB job and its output each in flight fit.
  uint64_t slab = env_u64("GPO_SLAB_MB", 64) << 20;
  if (slab < (1u << 20)) slab = 1u << 20;
  uint32_t job_off = 4096;
  uint64_t data_off = (job_off + uint64_t(kJobs) * sizeof(gpo_job) + 4095) / 4096 * 4096;
  if (gpo::ipc::check_layout({slab, kJobs, job_off, data_off})) return nullptr;  // the agent would refuse it
  int mfd = memfd_create("gpuoffload-slab", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (mfd < 0) return nullptr;
  if (ftruncate(mfd, off_t(slab)) != 0 ||
      fcntl(mfd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) != 0) {
    close(mfd);
    return nullptr;
  }
  void* p = mmap(nullptr, slab, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
  if (p == MAP_FAILED) {
    close(mfd);
    return nullptr;
  }
  c->base = static_cast<uint8_t*>(p);
  c->size = slab;
  auto* h = reinterpret_cast<gpo_slab_header*>(p);
  h->magic = GPO_SLAB_MAGIC;
  h->version = GPO_PROTO_VERSION;
  h->size = slab;
  h->njobs = kJobs;
  h->job_off = job_off;
  h->data_off = data_off;

  gpo_msg_register m{};
  m.type = GPO_MSG_REGISTER;
  m.version = GPO_PROTO_VERSION;
  m.slab_size = slab;
  m.njobs = kJobs;
  m.job_off = job_off;
  m.data_off = data_off;
  std::string lib = own_library_path();
  if (lib.size() < sizeof(m.lib_path)) std::strcpy(m.lib_path, lib.c_str());
  ssize_t sent = gpo::util::send_with_fd(c->fd, &m, sizeof(m), mfd);
  close(mfd);  // the agent has its own reference now; ours is the mapping
  if (sent != ssize_t(sizeof(m))) return nullptr;

  // Bounded wait for the reply: a hung agent must not hang the caller.
  pollfd pf{c->fd, POLLIN, 0};
  if (poll(&pf, 1, int(env_u64("GPO_TIMEOUT_MS", 2000))) <= 0) return nullptr;
  gpo_msg_registered rep{};
  if (recv(c->fd, &rep, sizeof(rep), 0) != ssize_t(sizeof(rep)) || rep.type != GPO_MSG_REGISTERED) return nullptr;
  c->slab_id = rep.slab_id;
  c->doorbell = int(rep.doorbell);
  c->layout = {slab, kJobs, job_off, data_off};
  c->bufs.resize(kJobs);
  for (uint32_t i = kJobs; i-- > 0;) c->free_jobs.push_back(i);
  c->alloc.init(data_off, slab - data_off);
  g_count.connects++;
  return c;
}

// Both locks across fork (g_mu first: refresh_plan never takes g_mu), so the
// child never inherits one held by a thread that does not exist there.
void atfork_prepare() {
  g_mu.lock();
  g_plan.mu.lock();
}
void atfork_parent() {
  g_plan.mu.unlock();
  g_mu.unlock();
}
void atfork_child() {
  // The child is another process: the agent would refuse its doorbells on the
  // parent's slab. Forget the connection (without touching the parent's
  // jobs) and let the first call in the child connect afresh.
  if (g_conn) {
    g_conn->dead = true;
    close(g_conn->fd);  // so the agent sees the parent's exit, not the child's
    g_conn->fd = -1;
    new (&g_conn) std::shared_ptr<Conn>();  // leak the child's copy: the mapping stays for handles made before fork
  }
  g_next_try = Clock::time_point{};
  g_plan.mu.unlock();
  g_mu.unlock();
}

void init_once() {
  std::call_once(g_atfork_once, [] {
    pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
    if (env_u64("GPO_TRACE", 0)) std::atexit(print_trace);
  });
}

std::shared_ptr<Conn> get_conn() {
  init_once();
  std::lock_guard lk(g_mu);
  if (g_conn && !g_conn->check_dead()) return g_conn;
  g_conn.reset();  // jobs still out keep their own reference
  auto now = Clock::now();
  if (now < g_next_try) return nullptr;
  g_conn = connect_agent();
  if (!g_conn) g_next_try = now + std::chrono::milliseconds(env_u64("GPO_RECONNECT_MS", 200));
  else plan_recheck();  // a (new) agent: its page may be a new file
  return g_conn;
}

// Bytes the slab needs for the output of r (a known op).
uint64_t slab_out_bytes(const gpo_request& r) {
  if (const auto n = gpo::backend::fixed_out_bytes(gpo::backend::OpId(r.op), r.in_len)) return *n;
  switch (r.op) {
    case GPO_ZSTD_COMPRESS: return ZSTD_compressBound(r.in_len);
    case GPO_ZLIB_COMPRESS: return gpo::deflate::bound(r.in_len);
    default: return r.out_cap;
  }
}

// The API's pointers here; sizes and parameters are the op's check
// (check_sizes), the one the agent applies to the descriptor.
int check_request(const gpo_request& r) {
  if ((r.in_len && !r.in) || (r.aad_len && !r.aad) || (r.iv_len && !r.iv)) return GPO_ERR_INVALID;
  if (r.op < 0 || !gpo::backend::is_op(uint32_t(r.op))) return GPO_ERR_INVALID;
  const auto op = gpo::backend::OpId(r.op);
  const auto fixed_out = gpo::backend::fixed_out_bytes(op, r.in_len);
  const uint64_t out = fixed_out.value_or(r.out_cap);
  if ((out && !r.out) || (gpo::backend::op_params(op).tag && !r.tag)) return GPO_ERR_INVALID;
  const gpo::backend::JobSizes sizes{uint32_t(r.op), r.in_len, out, r.key ? sizeof(gpo_job::key) : 0, r.iv_len,
                                     r.aad_len, gpo::backend::partially_overlap(r.out, out, r.in, r.in_len)};
  if (gpo::backend::check_sizes(sizes)) return GPO_ERR_INVALID;
  return fixed_out && r.out_cap < *fixed_out ? GPO_ERR_DST_TOO_SMALL : GPO_OK;
}

// The in-process path: the same libraries as the agent's CPU backend.
// in/aad may point into the slab (fallback after submit) or at the caller's memory.
int compute_local(const gpo_request& r, const uint8_t* in, const uint8_t* aad, const uint8_t* dec_tag,
                  size_t* out_len) {
  switch (r.op) {
    case GPO_AES256_GCM_ENCRYPT:
    case GPO_AES256_GCM_DECRYPT:
    case GPO_AES256_CTR: {
      gpo::aes::Job j;
      j.mode = r.op == GPO_AES256_CTR ? gpo::aes::Mode::ctr : gpo::aes::Mode::gcm;
      j.dir = r.op == GPO_AES256_GCM_DECRYPT ? gpo::aes::Dir::decrypt : gpo::aes::Dir::encrypt;
      j.key = r.key;
      j.iv = r.iv;
      j.aad = {aad, r.aad_len};
      j.in = {in, r.in_len};
      j.out = static_cast<uint8_t*>(r.out);
      uint8_t tag[16];
      if (r.op == GPO_AES256_GCM_DECRYPT) std::memcpy(tag, dec_tag, 16);
      j.tag = tag;
      uint8_t dummy;
      if (!j.out) j.out = &dummy;  // empty message: OpenSSL wants a pointer
      auto res = gpo::aes::cpu_run(j);
      if (res == gpo::aes::Result::auth_failed) return GPO_ERR_AUTH;
      if (res != gpo::aes::Result::ok) return GPO_ERR_INVALID;
      if (r.op == GPO_AES256_GCM_ENCRYPT) std::memcpy(r.tag, tag, 16);
      *out_len = r.in_len;
      return GPO_OK;
    }
    case GPO_SHA256:
      gpo::sha256::cpu_digest({in, r.in_len}, static_cast<uint8_t*>(r.out));
      *out_len = 32;
      return GPO_OK;
    case GPO_ZSTD_COMPRESS: {
      // A context per thread: the same frame as ZSTD_compress without a
      // context (and its page faults) per call.
      thread_local std::unique_ptr<ZSTD_CCtx, size_t (*)(ZSTD_CCtx*)> cctx{ZSTD_createCCtx(), ZSTD_freeCCtx};
      size_t n = cctx ? ZSTD_compressCCtx(cctx.get(), r.out, r.out_cap, in, r.in_len, r.level)
                      : ZSTD_compress(r.out, r.out_cap, in, r.in_len, r.level);
      if (ZSTD_isError(n))
        return ZSTD_getErrorCode(n) == ZSTD_error_dstSize_tooSmall ? GPO_ERR_DST_TOO_SMALL : GPO_ERR_INVALID;
      *out_len = n;
      return GPO_OK;
    }
    case GPO_ZSTD_DECOMPRESS: {
      thread_local std::unique_ptr<ZSTD_DCtx, size_t (*)(ZSTD_DCtx*)> dctx{ZSTD_createDCtx(), ZSTD_freeDCtx};
      size_t n = dctx ? ZSTD_decompressDCtx(dctx.get(), r.out, r.out_cap, in, r.in_len)
                      : ZSTD_decompress(r.out, r.out_cap, in, r.in_len);
      if (ZSTD_isError(n))
        return ZSTD_getErrorCode(n) == ZSTD_error_dstSize_tooSmall ? GPO_ERR_DST_TOO_SMALL : GPO_ERR_CORRUPT;
      *out_len = n;
      return GPO_OK;
    }
    case GPO_ZLIB_COMPRESS: {
      // zlib's own compress2 (kernels/zlib/zlib_real.h): never the shim.
      size_t n = 0;
      auto res = gpo::deflate::cpu_compress({in, r.in_len}, {static_cast<uint8_t*>(r.out), r.out_cap}, r.level, &n);
      if (res == gpo::deflate::Result::dst_too_small) return GPO_ERR_DST_TOO_SMALL;
      if (res != gpo::deflate::Result::ok) return GPO_ERR_INVALID;
      *out_len = n;
      return GPO_OK;
    }
    case GPO_CRC32: {
      const uint32_t c = gpo::crc32::cpu_crc32(r.crc, {in, r.in_len});
      for (int b = 0; b < 4; ++b) static_cast<uint8_t*>(r.out)[b] = uint8_t(c >> (8 * b));
      *out_len = 4;
      return GPO_OK;
    }
    case GPO_MEMCPY:
      if (r.in_len && r.out != in) std::memcpy(r.out, in, r.in_len);
      *out_len = r.in_len;
      return GPO_OK;
  }
  return GPO_ERR_INVALID;
}

}  // namespace

struct gpo_handle {
  gpo_request req{};
  std::shared_ptr<Conn> conn;  // null: computed at submit
  uint32_t job = 0;
  int result = GPO_OK;
  size_t out_len = 0;
};

namespace {

void free_job(Conn& c, uint32_t i) {
  std::lock_guard lk(c.mu);
  c.free_job_locked(i);
}

// Takes the job back from the agent (timeout, agent gone) and computes it here.
// Returns false when the agent finished it first (state DONE): use its result.
bool take_back(gpo_handle& h, std::atomic<uint64_t>& reason) {
  Conn& c = *h.conn;
  gpo_job* j = c.job(h.job);
  uint32_t s = GPO_JOB_SUBMITTED;
  bool zombie = false;
  if (!__atomic_compare_exchange_n(&j->state, &s, GPO_JOB_REVOKED, false, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
    if (s != GPO_JOB_RUNNING) return false;  // DONE
    if (!__atomic_compare_exchange_n(&j->state, &s, GPO_JOB_ABANDONED, false, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
      return false;  // DONE in between
    zombie = true;
  }
  // The input is still in the slab: the agent only writes the output area.
  const uint8_t* in = c.base + j->in_off;
  const uint8_t* aad = c.base + j->aad_off;
  h.result = compute_local(h.req, in, aad, j->tag, &h.out_len);
  reason++;
  g_count.local++;
  std::lock_guard lk(c.mu);
  if (zombie && !c.dead) c.zombies.push_back(h.job);
  else if (!zombie) c.free_job_locked(h.job);
  // zombie on a dead connection: the whole slab goes with the connection.
  return true;
}

void futex_wait(uint32_t* addr, uint32_t val, std::chrono::nanoseconds d) {
  timespec ts{time_t(d.count() / 1000000000), long(d.count() % 1000000000)};
  syscall(SYS_futex, addr, FUTEX_WAIT, val, &ts, nullptr, 0);
}

}  // namespace

extern "C" {

int gpo_submit(const gpo_request* req, gpo_handle** out) {
  if (!req || !out) return GPO_ERR_INVALID;
  *out = nullptr;
  int rc = check_request(*req);
  if (rc != GPO_OK) return rc;
  auto* h = new (std::nothrow) gpo_handle();
  if (!h) return GPO_ERR_NOMEM;
  h->req = *req;
  g_count.jobs++;
  auto local = [&](std::atomic<uint64_t>& reason) {
    h->conn.reset();
    h->result = compute_local(h->req, static_cast<const uint8_t*>(req->in), static_cast<const uint8_t*>(req->aad),
                              req->tag, &h->out_len);
    reason++;
    g_count.local++;
    *out = h;
    return GPO_OK;
  };
  switch (route(req->op, req->in_len)) {
    case Route::no_agent: return local(g_count.local_no_agent);
    case Route::local_by_plan: return local(g_count.local_by_plan);
    case Route::agent: break;
  }
  auto c = get_conn();
  if (!c) return local(g_count.local_no_agent);

  const int64_t t_in = mono_ns();
  uint32_t i;
  Conn::Bufs b;
  {
    std::lock_guard lk(c->mu);
    c->reap_zombies_locked();
    if (c->free_jobs.empty()) return local(g_count.local_no_room);
    bool ok = c->alloc.alloc(req->in_len, &b.in) && c->alloc.alloc(slab_out_bytes(*req), &b.out) &&
              (req->aad_len == 0 || c->alloc.alloc(req->aad_len, &b.aad));
    if (!ok) {
      for (uint64_t o : {b.in, b.out, b.aad})
        if (o != UINT64_MAX) c->alloc.release(o);
      return local(g_count.local_no_room);
    }
    i = c->free_jobs.back();
    c->free_jobs.pop_back();
    c->bufs[i] = b;
  }
  gpo_job* j = c->job(i);
  std::memset(reinterpret_cast<uint8_t*>(j) + sizeof(j->state), 0, sizeof(*j) - sizeof(j->state));
  j->op = uint16_t(req->op);
  j->level = req->level;
  j->crc = req->crc;
  j->in_off = b.in;
  j->in_len = req->in_len;
  j->out_off = b.out;
  j->out_cap = slab_out_bytes(*req);
  j->aad_off = req->aad_len ? b.aad : b.in;
  j->aad_len = req->aad_len;
  if (req->in_len) std::memcpy(c->base + b.in, req->in, req->in_len);
  if (req->aad_len) std::memcpy(c->base + b.aad, req->aad, req->aad_len);
  if (req->key) std::memcpy(j->key, req->key, 32);
  if (req->iv) {
    std::memcpy(j->iv, req->iv, req->iv_len);
    j->iv_len = uint8_t(req->iv_len);
  }
  if (req->op == GPO_AES256_GCM_DECRYPT) std::memcpy(j->tag, req->tag, 16);
  // What the agent checks of ranges and sizes: never ring for a descriptor
  // it would refuse. Levels are the agent's to judge (its limits are its
  // own; it answers REJECTED and the job runs here).
  if (gpo::ipc::check_job(c->layout, *j, uint32_t(req->op), req->in_len, {INT_MIN, INT_MAX, INT_MIN, INT_MAX})) {
    free_job(*c, i);
    return local(g_count.local_rejected);
  }
  j->rung_ns = uint64_t(mono_ns());
  __atomic_store_n(&j->state, GPO_JOB_SUBMITTED, __ATOMIC_RELEASE);
  h->conn = c;
  h->job = i;
  const int64_t t_ring = mono_ns();
  g_count.ns_copy_in += uint64_t(t_ring - t_in);
  g_count.sent++;

  if (c->doorbell == GPO_DOORBELL_UPROBE) {
    if (c->pid == g_loaded_by) gpo_doorbell(c->slab_id, i, uint32_t(req->op), req->in_len);
    else gpo_doorbell_forked(c->slab_id, i, uint32_t(req->op), req->in_len);
  } else {
    gpo_msg_doorbell m{GPO_MSG_DOORBELL, c->slab_id, i, uint32_t(req->op), req->in_len};
    if (send(c->fd, &m, sizeof(m), MSG_NOSIGNAL | MSG_DONTWAIT) != ssize_t(sizeof(m))) {
      int e = errno;
      bool full = e == EAGAIN || e == EWOULDBLOCK;
      if (!full) c->dead = true;
      // Not rung: nobody will take it; take it back now.
      if (take_back(*h, full ? g_count.local_no_room : g_count.local_agent_gone)) h->conn.reset();
    }
  }
  g_count.ns_ring += uint64_t(mono_ns() - t_ring);
  *out = h;
  return GPO_OK;
}

int gpo_wait(gpo_handle* h, size_t* out_len) {
  if (!h) return GPO_ERR_INVALID;
  if (h->conn && h->conn->pid != getpid()) {
    // Submitted before fork, waited in the child: the slot is the parent's to
    // consume. Compute from the input in the shared slab, leave the slot alone.
    Conn& c = *h->conn;
    gpo_job* j = c.job(h->job);
    h->result = compute_local(h->req, c.base + j->in_off, c.base + j->aad_off, j->tag, &h->out_len);
    g_count.local++;
    h->conn.reset();
  }
  if (h->conn) {
    Conn& c = *h->conn;
    gpo_job* j = c.job(h->job);
    auto deadline = Clock::now() + std::chrono::milliseconds(env_u64("GPO_TIMEOUT_MS", 2000));
    const int64_t t_wait = mono_ns();
    bool local = false;
    for (;;) {
      uint32_t s = __atomic_load_n(&j->state, __ATOMIC_ACQUIRE);
      if (s == GPO_JOB_DONE) break;
      if (c.check_dead()) {
        if (take_back(*h, g_count.local_agent_gone)) local = true;
        break;
      }
      auto now = Clock::now();
      if (now >= deadline) {
        if (take_back(*h, g_count.local_timeout)) local = true;
        break;
      }
      // Short slices so a dead agent is noticed quickly, not after the timeout.
      futex_wait(&j->state, s, std::min<Clock::duration>(deadline - now, std::chrono::milliseconds(20)));
    }
    const int64_t t_out = mono_ns();
    g_count.ns_wait += uint64_t(t_out - t_wait);
    if (!local && j->done_ns && int64_t(j->done_ns) <= t_out) {
      g_count.ns_woken += uint64_t(t_out - int64_t(j->done_ns));
      g_count.woken++;
    }
    if (!local) {
      // DONE: the agent's result.
      const gpo_request& r = h->req;
      uint8_t st = j->status;
      uint64_t n = j->out_len;
      if (st == GPO_JS_OK && n <= j->out_cap) {
        if (n > r.out_cap) {
          h->result = GPO_ERR_DST_TOO_SMALL;
        } else {
          if (n) std::memcpy(r.out, c.base + j->out_off, n);
          if (r.op == GPO_AES256_GCM_ENCRYPT) std::memcpy(r.tag, j->tag, 16);
          h->out_len = n;
          h->result = GPO_OK;
        }
        g_count.by_agent++;
      } else if (st == GPO_JS_AUTH_FAILED) {
        // As the local path leaves it: no unauthenticated plaintext.
        if (r.in_len) std::memset(r.out, 0, r.in_len);
        h->result = GPO_ERR_AUTH;
        g_count.by_agent++;
      } else {
        // Rejected or failed by the agent: same answer, computed here.
        h->result = compute_local(r, c.base + j->in_off, c.base + j->aad_off, j->tag, &h->out_len);
        g_count.local++;
        g_count.local_rejected++;
      }
      free_job(c, h->job);
      g_count.ns_copy_out += uint64_t(mono_ns() - t_out);
    }
  }
  int rc = h->result;
  if (out_len) *out_len = rc == GPO_OK ? h->out_len : 0;
  delete h;
  return rc;
}

int gpo_run(const gpo_request* req, size_t* out_len) {
  gpo_handle* h = nullptr;
  int rc = gpo_submit(req, &h);
  if (rc != GPO_OK) return rc;
  return gpo_wait(h, out_len);
}

int gpo_aes256_gcm_encrypt(const uint8_t key[32], const uint8_t iv[12], const void* aad, size_t aad_len,
                           const void* in, size_t len, void* out, uint8_t tag[16]) {
  gpo_request r{GPO_AES256_GCM_ENCRYPT, in, len, out, len, key, iv, 12, aad, aad_len, tag, 0, 0};
  return gpo_run(&r, nullptr);
}

int gpo_aes256_gcm_decrypt(const uint8_t key[32], const uint8_t iv[12], const void* aad, size_t aad_len,
                           const void* in, size_t len, void* out, const uint8_t tag[16]) {
  gpo_request r{GPO_AES256_GCM_DECRYPT, in, len, out, len, key, iv, 12, aad, aad_len, const_cast<uint8_t*>(tag), 0, 0};
  return gpo_run(&r, nullptr);
}

int gpo_aes256_ctr(const uint8_t key[32], const uint8_t iv[16], const void* in, size_t len, void* out) {
  gpo_request r{GPO_AES256_CTR, in, len, out, len, key, iv, 16, nullptr, 0, nullptr, 0, 0};
  return gpo_run(&r, nullptr);
}

int gpo_sha256_batch(const void* const* msgs, const size_t* lens, size_t n, uint8_t* digests) {
  if (n && (!msgs || !lens || !digests)) return GPO_ERR_INVALID;
  std::vector<gpo_handle*> hs(n, nullptr);
  int rc = GPO_OK;
  for (size_t i = 0; i < n; ++i) {
    gpo_request r{GPO_SHA256, msgs[i], lens[i], digests + 32 * i, 32, nullptr, nullptr, 0, nullptr, 0, nullptr, 0, 0};
    int e = gpo_submit(&r, &hs[i]);
    if (e != GPO_OK) rc = e;
  }
  for (size_t i = 0; i < n; ++i)
    if (hs[i]) {
      int e = gpo_wait(hs[i], nullptr);
      if (e != GPO_OK) rc = e;
    }
  return rc;
}

int gpo_zstd_compress(void* dst, size_t dst_cap, const void* src, size_t len, int level, size_t* out_len) {
  gpo_request r{GPO_ZSTD_COMPRESS, src, len, dst, dst_cap, nullptr, nullptr, 0, nullptr, 0, nullptr, level, 0};
  return gpo_run(&r, out_len);
}

int gpo_zstd_decompress(void* dst, size_t dst_cap, const void* src, size_t len, size_t* out_len) {
  gpo_request r{GPO_ZSTD_DECOMPRESS, src, len, dst, dst_cap, nullptr, nullptr, 0, nullptr, 0, nullptr, 0, 0};
  return gpo_run(&r, out_len);
}

size_t gpo_zstd_compress_bound(size_t len) { return ZSTD_compressBound(len); }

int gpo_zlib_compress(void* dst, size_t dst_cap, const void* src, size_t len, int level, size_t* out_len) {
  gpo_request r{GPO_ZLIB_COMPRESS, src, len, dst, dst_cap, nullptr, nullptr, 0, nullptr, 0, nullptr, level, 0};
  return gpo_run(&r, out_len);
}

size_t gpo_zlib_compress_bound(size_t len) { return gpo::deflate::bound(len); }

int gpo_crc32(uint32_t crc, const void* buf, size_t len, uint32_t* out) {
  if (!out) return GPO_ERR_INVALID;
  uint8_t le[4];
  gpo_request r{GPO_CRC32, buf, len, le, 4, nullptr, nullptr, 0, nullptr, 0, nullptr, 0, crc};
  int rc = gpo_run(&r, nullptr);
  if (rc == GPO_OK) *out = uint32_t(le[0]) | uint32_t(le[1]) << 8 | uint32_t(le[2]) << 16 | uint32_t(le[3]) << 24;
  return rc;
}

int gpo_memcpy(void* dst, const void* src, size_t len) {
  gpo_request r{GPO_MEMCPY, src, len, dst, len, nullptr, nullptr, 0, nullptr, 0, nullptr, 0, 0};
  return gpo_run(&r, nullptr);
}

void gpo_get_stats(gpo_client_stats* out) {
  if (!out) return;
  *out = gpo::client::counts();
  std::lock_guard lk(g_mu);
  out->connected = g_conn && !g_conn->dead ? 1 : 0;
  out->doorbell = out->connected ? g_conn->doorbell : 0;
  out->slab_id = out->connected ? g_conn->slab_id : 0;
}

void gpo_set_socket(const char* path) {
  std::lock_guard lk(g_mu);
  g_socket_set = path != nullptr;
  g_socket = path ? path : "";
  g_conn.reset();
  g_next_try = Clock::time_point{};
  plan_recheck();
}

int gpo_would_offload(int op, size_t len) { return route(op, len) == Route::agent ? 1 : 0; }

}  // extern "C"

// --- gpo_offload_range, gpo_offload_reason ----------------------------------------
// For callers with a fast in-process path of their own (the provider, the shim):
// the same plan page as route(), asked before any request is built, so a call
// that stays in the process costs a few loads and no IPC.
namespace {

// The data area of the slab this process registers (connect_agent's layout).
uint64_t slab_data_bytes() {
  uint64_t slab = std::max<uint64_t>(env_u64("GPO_SLAB_MB", 64) << 20, 1u << 20);
  uint64_t data_off = (4096 + uint64_t(kJobs) * sizeof(gpo_job) + 4095) / 4096 * 4096;
  return slab > data_off ? slab - data_off : 0;
}

}  // namespace

extern "C" void gpo_offload_range(int op, size_t* min_bytes, size_t* max_bytes) {
  static const uint64_t min_env = env_u64("GPO_OFFLOAD_MIN_BYTES", 65536);
  size_t lo = SIZE_MAX, hi = 0;
  if (route(op, SIZE_MAX) == Route::agent) {  // the agent serves and takes op at some size
    const gpo_plan_page* p = g_plan.page.load(std::memory_order_acquire);
    const uint64_t plan_min = __atomic_load_n(&p->min_bytes[op], __ATOMIC_ACQUIRE);
    // One job's input and output share the data area (64-byte aligned pieces).
    const uint64_t room = slab_data_bytes() - 4096;
    uint64_t top = room / 2;
    if (op == GPO_ZSTD_COMPRESS || op == GPO_ZLIB_COMPRESS) top -= top / 128 + 1024;  // their output bounds
    if (gpo::backend::is_op(uint32_t(op)) && gpo::backend::op_params(gpo::backend::OpId(op)).out ==
                                                 gpo::backend::OpParams::Out::fixed)
      top = room - 256;  // a digest, a crc
    lo = size_t(std::max<uint64_t>({plan_min, min_env, uint64_t(1)}));
    hi = size_t(top & ~uint64_t(63));
    if (lo > hi) lo = SIZE_MAX, hi = 0;
  }
  if (min_bytes) *min_bytes = lo;
  if (max_bytes) *max_bytes = hi;
}

extern "C" int gpo_offload_ready(void) { return get_conn() ? 1 : 0; }

extern "C" int gpo_offload_reason(int op) {
  switch (route(op, SIZE_MAX)) {
    case Route::agent: {
      // Served at some size, unless no job of any size fits this process's slab.
      size_t lo = 0;
      gpo_offload_range(op, &lo, nullptr);
      return lo == SIZE_MAX ? GPO_PATH_CPU_TOO_LARGE : GPO_PATH_OFFLOAD;
    }
    case Route::local_by_plan: return GPO_PATH_CPU_PLAN;
    case Route::no_agent: break;
  }
  return GPO_PATH_CPU_NO_AGENT;
}

gpo_client_stats gpo::client::counts() {
  gpo_client_stats s{};
  s.jobs = g_count.jobs;
  s.by_agent = g_count.by_agent;
  s.local = g_count.local;
  s.local_no_agent = g_count.local_no_agent;
  s.local_timeout = g_count.local_timeout;
  s.local_agent_gone = g_count.local_agent_gone;
  s.local_rejected = g_count.local_rejected;
  s.local_no_room = g_count.local_no_room;
  s.local_by_plan = g_count.local_by_plan;
  s.connects = g_count.connects;
  return s;
}
