// Per-op accounting (gpo_account) and its JSON dump (gpo_stats_write; at exit
// into GPO_STATS_DIR/PID.json), read by `gpuoffload-agent exec`.
//
// The provider and the shim record every call they see, small ones included,
// so the path must cost next to nothing: each thread adds into its own block
// with relaxed loads and stores (no locked instruction), and a writer sums all
// blocks. A block whose thread exited is handed to the next new thread, so its
// counts stay in the sum. A forked child starts from zero.
//
// Under exec (GPO_STATS_DIR set) the blocks live in a file mapped shared
// (stats_file.h), so what a process counted is on record even when it is
// killed (a multiprocessing pool's workers, a command under `timeout`).
//
// The report is written at exit, and also from _exit() when the shim is
// preloaded (its front interposes _exit and calls gpo_stats_exit_flush): it
// adds what only the end knows (the client's job counts) and names the counts
// file it replaces. _exit may be called from a signal handler, so writing
// allocates nothing: the document is built in a fixed buffer and written with
// system calls.
#include <dlfcn.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "backend/op_table.h"
#include "client_counts.h"
#include "stats_file.h"
#include "gpuoffload.h"

namespace {

using gpo::client::kCountOps;
constexpr int kOps = kCountOps;

struct Cell {
  std::atomic<uint64_t> calls{0}, bytes{0}, ns{0};
};
struct Cells {
  Cell cell[kOps][GPO_PATH_COUNT];
};
static_assert(sizeof(Cells) == sizeof(gpo::client::CountsBlock), "a block of cells is the file's block");

// A thread's cells: a block of the counts file when the process has one,
// else on the heap.
struct Block {
  Cells* cells = nullptr;
  std::atomic<bool> in_use{true};
  Block* next = nullptr;
};

std::atomic<Block*> g_blocks{nullptr};
// The process whose counts the blocks hold: set at load and in a forked
// child. A vfork child (no fork handlers run) shares the parent's memory and
// must not report the parent's counts as its own.
std::atomic<pid_t> g_owner{0};

// The counts file (stats_file.h), made at the first count when GPO_STATS_DIR
// is set: the tallies live in it, so a killed process's counts are there for
// `exec` to read. Threads past its blocks count on the heap (reported at exit
// only).
constexpr uint32_t kFileBlocks = 64;
constexpr size_t kFileBytes = gpo::client::kCountsHeaderBytes + kFileBlocks * sizeof(Cells);
enum MapState { kMapNotTried, kMapMaking, kMapReady, kMapNone };
std::atomic<int> g_map_state{kMapNotTried};
uint8_t* g_map = nullptr;                 // kFileBytes, shared with the file
std::atomic<uint32_t> g_map_used{0};      // blocks of the file handed out
char g_dir[3072];                         // GPO_STATS_DIR, read once
char g_counts_name[64];                   // the file's name in g_dir

// Appends decimal v at p; the end.
char* put_num(char* p, uint64_t v) {
  char t[24];
  size_t i = sizeof t;
  do t[--i] = char('0' + v % 10);
  while (v /= 10);
  std::memcpy(p, t + i, sizeof t - i);
  return p + (sizeof t - i);
}

// The executable's path and argv[0], into b (size cap): their lengths.
size_t read_exe(char* b, size_t cap) {
  const ssize_t n = readlink("/proc/self/exe", b, cap);
  return n > 0 ? size_t(n) : 0;
}
size_t read_argv0(char* b, size_t cap) {
  const int fd = open("/proc/self/cmdline", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  const ssize_t n = read(fd, b, cap);
  close(fd);
  return n > 0 ? strnlen(b, size_t(n)) : 0;
}

// g_dir/g_counts_name into path (cap bytes); false when it does not fit.
bool counts_path(char* path, size_t cap) {
  const size_t dlen = std::strlen(g_dir), nlen = std::strlen(g_counts_name);
  if (dlen + 1 + nlen >= cap) return false;
  std::memcpy(path, g_dir, dlen);
  path[dlen] = '/';
  std::memcpy(path + dlen + 1, g_counts_name, nlen + 1);
  return true;
}

// Creates this process's counts file and maps it at `at` (nullptr: anywhere;
// else MAP_FIXED over the parent's mapping, in a forked child). System calls
// only: a forked child of a threaded program runs this. The mapping, or
// nullptr.
uint8_t* make_counts_file(void* at, const char* argv0) {
  char path[sizeof g_dir + sizeof g_counts_name + 2];
  int fd = -1;
  // PID.counts, or PID-N.counts where an image this pid ran before exec left one.
  for (unsigned n = 0; n < 8 && fd < 0; ++n) {
    char* e = put_num(g_counts_name, uint64_t(getpid()));
    if (n) *e++ = '-', e = put_num(e, n);
    std::memcpy(e, ".counts", 8);
    counts_path(path, sizeof path);
    fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0 && errno != EEXIST) break;
  }
  if (fd < 0) return nullptr;
  void* m = MAP_FAILED;
  if (ftruncate(fd, off_t(kFileBytes)) == 0)
    m = mmap(at, kFileBytes, PROT_READ | PROT_WRITE, MAP_SHARED | (at ? MAP_FIXED : 0), fd, 0);
  close(fd);
  if (m == MAP_FAILED) {
    unlink(path);
    return nullptr;
  }
  auto* h = static_cast<gpo::client::CountsHeader*>(m);
  h->magic = gpo::client::kCountsMagic;
  h->version = gpo::client::kCountsVersion;
  h->ops = kOps;
  h->paths = GPO_PATH_COUNT;
  h->blocks = kFileBlocks;
  h->pid = getpid();
  h->ppid = getppid();
  if (argv0) std::memcpy(h->argv0, argv0, sizeof h->argv0);
  else read_argv0(h->argv0, sizeof h->argv0 - 1);
  return static_cast<uint8_t*>(m);
}

// The counts file's next block, or nullptr (none: no GPO_STATS_DIR, it
// could not be made, or its blocks are all handed out).
Cells* file_block() {
  int st = g_map_state.load(std::memory_order_acquire);
  if (st == kMapNotTried && g_map_state.compare_exchange_strong(st, kMapMaking)) {
    const char* d = secure_getenv("GPO_STATS_DIR");
    const bool ok = d && *d && std::strlen(d) < sizeof g_dir;
    if (ok) std::memcpy(g_dir, d, std::strlen(d) + 1);
    g_map = ok ? make_counts_file(nullptr, nullptr) : nullptr;
    g_map_state.store(g_map ? kMapReady : kMapNone, std::memory_order_release);
  }
  while ((st = g_map_state.load(std::memory_order_acquire)) == kMapMaking) sched_yield();
  if (st != kMapReady) return nullptr;
  const uint32_t k = g_map_used.fetch_add(1, std::memory_order_relaxed);
  if (k >= kFileBlocks) return nullptr;
  return reinterpret_cast<Cells*>(g_map + gpo::client::kCountsHeaderBytes + k * sizeof(Cells));
}

struct Holder {
  Block* b = nullptr;
  Cells* cells = nullptr;  // b's, one load away on every count
  ~Holder() {
    if (b) b->in_use.store(false, std::memory_order_release);
  }
};
thread_local Holder t_holder;
thread_local unsigned t_hold = 0;  // gpo_account_hold's depth on this thread

void add(std::atomic<uint64_t>& a, uint64_t v) {
  a.store(a.load(std::memory_order_relaxed) + v, std::memory_order_relaxed);
}

// In the child only the forking thread lives: its counts and everyone else's
// belong to the parent. The parent's counts file stays the parent's: the
// child maps a file of its own over it (zeros, at the same address, so every
// block keeps its place), or plain zeros when it cannot make one.
void atfork_child() {
  g_owner.store(getpid(), std::memory_order_relaxed);
  const int st = g_map_state.load(std::memory_order_relaxed);
  if (st == kMapReady) {
    char argv0[sizeof gpo::client::CountsHeader::argv0];
    std::memcpy(argv0, reinterpret_cast<gpo::client::CountsHeader*>(g_map)->argv0, sizeof argv0);
    if (!make_counts_file(g_map, argv0)) {
      g_counts_name[0] = 0;
      mmap(g_map, kFileBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
    }
  } else if (st == kMapMaking) {  // the thread making it is not in the child
    g_map_state.store(kMapNone, std::memory_order_relaxed);
  }
  const uint8_t* file = st == kMapReady ? g_map : nullptr;
  for (Block* b = g_blocks.load(); b; b = b->next) {
    // The file's blocks are fresh zeros already (writing them would only
    // give a child that goes on to exec pages of the file).
    const auto* at = reinterpret_cast<const uint8_t*>(b->cells);
    if (!file || at < file || at >= file + kFileBytes)
      for (auto& row : b->cells->cell)
        for (auto& c : row) c.calls = 0, c.bytes = 0, c.ns = 0;
    if (b != t_holder.b) b->in_use.store(false);
  }
}

Cells& take(Block* b) {
  t_holder.b = b;
  return *(t_holder.cells = b->cells);
}

Cells& my_cells() {
  if (t_holder.cells) return *t_holder.cells;
  for (Block* b = g_blocks.load(std::memory_order_acquire); b; b = b->next) {
    bool free = false;
    if (b->in_use.compare_exchange_strong(free, true)) return take(b);
  }
  auto* b = new Block();
  b->cells = file_block();
  if (!b->cells) b->cells = new Cells();
  b->next = g_blocks.load(std::memory_order_relaxed);
  while (!g_blocks.compare_exchange_weak(b->next, b, std::memory_order_release, std::memory_order_relaxed)) {
  }
  return take(b);
}

// A JSON document in a fixed buffer (nothing allocated: see the top). A
// document that does not fit is not written.
struct Doc {
  char buf[24576];
  size_t n = 0;
  bool full = false;
  void put(const char* s, size_t len) {
    if (full || len > sizeof buf - n) {
      full = true;
      return;
    }
    std::memcpy(buf + n, s, len);
    n += len;
  }
  void put(const char* s) { put(s, std::strlen(s)); }
  void num(uint64_t v) {
    char t[24];
    put(t, size_t(put_num(t, v) - t));
  }
  void str(const char* s, size_t len) {
    put("\"");
    for (size_t i = 0; i < len; ++i) {
      const unsigned char c = static_cast<unsigned char>(s[i]);
      if (c == '"' || c == '\\') {
        put("\\", 1);
        put(s + i, 1);
      } else if (c < 0x20) {
        const char esc[] = {'\\', 'u', '0', '0', "0123456789abcdef"[c >> 4], "0123456789abcdef"[c & 15]};
        put(esc, sizeof esc);
      } else {
        put(s + i, 1);
      }
    }
    put("\"");
  }
  void field(const char* name, uint64_t v) {
    put(", \"");
    put(name);
    put("\": ");
    num(v);
  }
};

// One op and path summed over every thread's block.
struct Total {
  uint64_t calls = 0, bytes = 0, ns = 0;
};
Total total_of(int op, int path) {
  Total t;
  for (Block* b = g_blocks.load(std::memory_order_acquire); b; b = b->next) {
    const Cell& c = b->cells->cell[op][path];
    t.calls += c.calls.load(std::memory_order_relaxed);
    t.bytes += c.bytes.load(std::memory_order_relaxed);
    t.ns += c.ns.load(std::memory_order_relaxed);
  }
  return t;
}

// A process that made no call and sent no job has nothing to report: it
// writes no file, and so costs a run of many small processes (a build, a
// shell script) no file each.
bool anything_counted() {
  for (int op = 1; op < kOps; ++op)
    for (int p = 0; p < GPO_PATH_COUNT; ++p)
      if (total_of(op, p).calls) return true;
  const gpo_client_stats s = gpo::client::counts();
  return s.jobs || s.local_by_plan || s.connects;
}

// GPO_STATS_DIR/PID.json, or false when the process does not report
// (secure_getenv: a set-user-ID program writes no file where its caller says).
bool report_path(char* path, size_t cap) {
  const char* dir = secure_getenv("GPO_STATS_DIR");
  if (!dir || !*dir || !anything_counted()) return false;
  const int n = std::snprintf(path, cap, "%s/%ld.json", dir, long(getpid()));
  return n > 0 && size_t(n) < cap;
}

// One writer at a time: the document's buffer is shared.
std::atomic_flag g_writing = ATOMIC_FLAG_INIT;
Doc g_doc;

// The shim's front, when preloaded: it calls gpo_stats_exit_flush from _exit
// while this library is loaded (the provider may unload it before).
using FrontHook = void (*)(void (*)());
FrontHook g_front_hook = nullptr;

__attribute__((constructor)) void start_counting() {
  g_owner.store(getpid(), std::memory_order_relaxed);
  pthread_atfork(nullptr, nullptr, atfork_child);
  g_front_hook = reinterpret_cast<FrontHook>(dlsym(RTLD_DEFAULT, "gpo_shim_front_on_exit"));
  if (g_front_hook) g_front_hook(gpo_stats_exit_flush);
}

__attribute__((destructor)) void write_at_exit() {
  if (g_front_hook) g_front_hook(nullptr);
  gpo_stats_exit_flush();
}

}  // namespace

extern "C" {

void gpo_account(int op, int path, uint64_t calls, uint64_t bytes, uint64_t ns) {
  if (t_hold || op <= 0 || op >= kOps || path < 0 || path >= GPO_PATH_COUNT) return;
  Cell& c = my_cells().cell[op][path];
  add(c.calls, calls);
  add(c.bytes, bytes);
  add(c.ns, ns);
}

void gpo_account_hold(int on) {
  if (on) ++t_hold;
  else if (t_hold) --t_hold;
}

int gpo_stats_write(const char* path) {
  if (!path) return -1;
  char tmp[4096];
  const size_t plen = std::strlen(path);
  if (plen + 5 >= sizeof tmp) return -1;
  std::memcpy(tmp, path, plen);
  std::memcpy(tmp + plen, ".tmp", 5);
  if (g_writing.test_and_set(std::memory_order_acquire)) return -1;
  Doc& d = g_doc;
  d.n = 0;
  d.full = false;
  char text[4096];
  d.put("{\"pid\": ");
  d.num(uint64_t(getpid()));
  d.field("ppid", uint64_t(getppid()));
  d.put(", \"exe\": ");
  d.str(text, read_exe(text, sizeof text));
  d.put(", \"argv0\": ");
  d.str(text, read_argv0(text, sizeof text));
  if (g_counts_name[0] && g_map_state.load(std::memory_order_acquire) == kMapReady) {
    // exec reads this report, not the counts file it names.
    d.put(", \"counts_file\": ");
    d.str(g_counts_name, std::strlen(g_counts_name));
  }
  d.put(", \"ops\": [");
  bool first = true;
  for (int op = 1; op < kOps; ++op)
    for (int p = 0; p < GPO_PATH_COUNT; ++p) {
      const Total t = total_of(op, p);
      if (!t.calls) continue;
      d.put(first ? "{\"op\": \"" : ", {\"op\": \"");
      const std::string_view name = gpo::backend::op_name(gpo::backend::OpId(op));
      d.put(name.data(), name.size());
      d.put("\", \"path\": \"");
      d.put(gpo_path_name(p));
      d.put("\"");
      d.field("calls", t.calls);
      d.field("bytes", t.bytes);
      d.field("ns", t.ns);
      d.put("}");
      first = false;
    }
  // Counters only: this also runs at exit, after the connection is destroyed.
  const gpo_client_stats s = gpo::client::counts();
  d.put("], \"client\": {\"jobs\": ");
  d.num(s.jobs);
  d.field("by_agent", s.by_agent);
  d.field("local", s.local);
  d.field("local_no_agent", s.local_no_agent);
  d.field("local_timeout", s.local_timeout);
  d.field("local_agent_gone", s.local_agent_gone);
  d.field("local_rejected", s.local_rejected);
  d.field("local_no_room", s.local_no_room);
  d.field("connects", s.connects);
  d.put("}}\n");
  // Whole file or nothing: written aside, then renamed into place.
  bool ok = !d.full;
  if (ok) {
    const int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    ok = fd >= 0;
    for (size_t off = 0; ok && off < d.n;) {
      const ssize_t w = write(fd, d.buf + off, d.n - off);
      if (w > 0) off += size_t(w);
      else ok = w < 0 && errno == EINTR;
    }
    if (fd >= 0 && close(fd) != 0) ok = false;
    if (!ok || rename(tmp, path) != 0) {
      unlink(tmp);
      ok = false;
    }
  }
  g_writing.clear(std::memory_order_release);
  return ok ? 0 : -1;
}

void gpo_stats_exit_flush(void) {
  // A vfork child, or a clone that ran no fork handlers, holds its parent's counts.
  if (getpid() != g_owner.load(std::memory_order_relaxed)) return;
  char path[4096];
  if (!report_path(path, sizeof path) || gpo_stats_write(path) != 0) return;
  // The report has the counts: the file is no longer needed (the report names
  // it too, so a process killed just here is not counted twice).
  if (g_counts_name[0] && g_map_state.load(std::memory_order_acquire) == kMapReady &&
      counts_path(path, sizeof path))
    unlink(path);
}

}  // extern "C"
