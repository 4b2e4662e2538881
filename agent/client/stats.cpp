// Per-op accounting (gpo_account) and its JSON dump (gpo_stats_write; at exit
// into GPO_STATS_DIR/PID.json), read by `gpuoffload-agent exec`.
//
// The provider and the shim record every call they see, small ones included,
// so the path must cost next to nothing: each thread adds into its own block
// with relaxed loads and stores (no locked instruction), and a writer sums all
// blocks. A block whose thread exited is handed to the next new thread, so its
// counts stay in the sum. A forked child starts from zero.
#include <pthread.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>

#include "client_counts.h"
#include "gpuoffload.h"

namespace {

constexpr int kOps = 16;  // op ids of gpuoffload.h, with room

struct Cell {
  std::atomic<uint64_t> calls{0}, bytes{0}, ns{0};
};

struct Block {
  Cell cell[kOps][GPO_PATH_COUNT];
  std::atomic<bool> in_use{true};
  Block* next = nullptr;
};

std::atomic<Block*> g_blocks{nullptr};
std::once_flag g_atfork_once;

struct Holder {
  Block* b = nullptr;
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
// belong to the parent.
void atfork_child() {
  for (Block* b = g_blocks.load(); b; b = b->next) {
    for (auto& row : b->cell)
      for (auto& c : row) c.calls = 0, c.bytes = 0, c.ns = 0;
    if (b != t_holder.b) b->in_use.store(false);
  }
}

Block* my_block() {
  if (t_holder.b) return t_holder.b;
  std::call_once(g_atfork_once, [] { pthread_atfork(nullptr, nullptr, atfork_child); });
  for (Block* b = g_blocks.load(std::memory_order_acquire); b; b = b->next) {
    bool free = false;
    if (b->in_use.compare_exchange_strong(free, true)) return t_holder.b = b;
  }
  auto* b = new Block();
  b->next = g_blocks.load(std::memory_order_relaxed);
  while (!g_blocks.compare_exchange_weak(b->next, b, std::memory_order_release, std::memory_order_relaxed)) {
  }
  return t_holder.b = b;
}

const char* op_name(int op) {
  switch (op) {
#define GPO_OP_NAME_(NAME, id, ident, name, family, gpu) \
  case id: return name;
    GPO_OPS(GPO_OP_NAME_)
#undef GPO_OP_NAME_
  }
  return "unknown";
}

std::string json_str(const std::string& s) {
  std::string o = "\"";
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      o += '\\';
      o += char(c);
    } else if (c < 0x20) {
      char b[8];
      std::snprintf(b, sizeof b, "\\u%04x", c);
      o += b;
    } else {
      o += char(c);
    }
  }
  return o + "\"";
}

std::string read_link(const char* p) {
  char b[4096];
  ssize_t n = readlink(p, b, sizeof b - 1);
  return n > 0 ? std::string(b, size_t(n)) : std::string();
}

std::string argv0() {
  FILE* f = std::fopen("/proc/self/cmdline", "r");
  if (!f) return "";
  std::string s;
  for (int c; (c = std::fgetc(f)) != EOF && c != 0;) s += char(c);
  std::fclose(f);
  return s;
}

// One op and path summed over every thread's block.
struct Total {
  uint64_t calls = 0, bytes = 0, ns = 0;
};
Total total_of(int op, int path) {
  Total t;
  for (Block* b = g_blocks.load(std::memory_order_acquire); b; b = b->next) {
    const Cell& c = b->cell[op][path];
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

__attribute__((destructor)) void write_at_exit() {
  // secure_getenv: a setuid program writes no file where its caller says.
  const char* dir = secure_getenv("GPO_STATS_DIR");
  if (!dir || !*dir || !anything_counted()) return;
  std::string path = std::string(dir) + "/" + std::to_string(getpid()) + ".json";
  gpo_stats_write(path.c_str());
}

}  // namespace

extern "C" {

void gpo_account(int op, int path, uint64_t calls, uint64_t bytes, uint64_t ns) {
  if (t_hold || op <= 0 || op >= kOps || path < 0 || path >= GPO_PATH_COUNT) return;
  Cell& c = my_block()->cell[op][path];
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
  std::string out = "{\"pid\": " + std::to_string(getpid()) + ", \"ppid\": " + std::to_string(getppid()) +
                    ", \"exe\": " + json_str(read_link("/proc/self/exe")) + ", \"argv0\": " + json_str(argv0()) +
                    ", \"ops\": [";
  bool first = true;
  for (int op = 1; op < kOps; ++op)
    for (int p = 0; p < GPO_PATH_COUNT; ++p) {
      const Total t = total_of(op, p);
      if (!t.calls) continue;
      out += std::string(first ? "" : ", ") + "{\"op\": \"" + op_name(op) + "\", \"path\": \"" + gpo_path_name(p) +
             "\", \"calls\": " + std::to_string(t.calls) + ", \"bytes\": " + std::to_string(t.bytes) +
             ", \"ns\": " + std::to_string(t.ns) + "}";
      first = false;
    }
  // Counters only: this also runs at exit, after the connection is destroyed.
  const gpo_client_stats s = gpo::client::counts();
  out += "], \"client\": {\"jobs\": " + std::to_string(s.jobs) + ", \"by_agent\": " + std::to_string(s.by_agent) +
         ", \"local\": " + std::to_string(s.local) + ", \"local_no_agent\": " + std::to_string(s.local_no_agent) +
         ", \"local_timeout\": " + std::to_string(s.local_timeout) +
         ", \"local_agent_gone\": " + std::to_string(s.local_agent_gone) +
         ", \"local_rejected\": " + std::to_string(s.local_rejected) +
         ", \"local_no_room\": " + std::to_string(s.local_no_room) + ", \"connects\": " + std::to_string(s.connects) +
         "}}\n";
  // Whole file or nothing: written aside, then renamed into place.
  std::string tmp = std::string(path) + ".tmp";
  FILE* f = std::fopen(tmp.c_str(), "w");
  if (!f) return -1;
  bool ok = std::fwrite(out.data(), 1, out.size(), f) == out.size();
  ok = std::fclose(f) == 0 && ok;
  if (!ok || std::rename(tmp.c_str(), path) != 0) {
    std::remove(tmp.c_str());
    return -1;
  }
  return 0;
}

}  // extern "C"
