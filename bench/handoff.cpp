// Suite "handoff": what it costs this machine to hand work from one thread to
// another, the step a job sent to the agent takes three times (the client's
// doorbell wakes the agent's loop, the loop a worker, the worker's completion
// the client). One thread stamps the time and wakes the other, which stamps
// it again when it runs:
//   sleeping, other CPU   the woken thread waits in FUTEX_WAIT on another
//                         CPU that has had time to go idle (the service's
//                         case: a client waiting for its result);
//   sleeping, same CPU    both on one CPU: the waker wakes it, then waits
//                         itself, and the woken thread runs in its place;
//   spinning, other CPU   the woken thread polls the word: the cache line's
//                         trip alone, the floor.
// On bare metal a sleeping thread is woken in microseconds; in a virtual
// machine whose idle vCPUs halt, each wake of one is a trip through the
// hypervisor. The machine's cpuidle driver is printed with the table.
// --set samples=N (400; 40 with --quick), --set idle_us=U,V (how long the
// waiter's CPU is left idle before each wake: 300 us, and 3000 us, about
// what a client waits for a 1 MiB job).
#include <fmt/format.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <numeric>
#include <thread>

#include "bench/bench.h"

namespace gpo::bench {
namespace {

int64_t now_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

void futex_wait(std::atomic<uint32_t>* w, uint32_t val) {
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(w), FUTEX_WAIT_PRIVATE, val, nullptr, nullptr, 0);
}
void futex_wake(std::atomic<uint32_t>* w) {
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(w), FUTEX_WAKE_PRIVATE, 1, nullptr, nullptr, 0);
}

bool pin(unsigned cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  return pthread_setaffinity_np(pthread_self(), sizeof set, &set) == 0;
}

void spin_for(int64_t ns) {
  const int64_t until = now_ns() + ns;
  while (now_ns() < until) {
  }
}

enum class Mode { sleeping, same_cpu, spinning };

// One-way latencies in ns, `samples` of them, or empty when a thread could
// not be placed. Round k: the waiter publishes k in `ready` and waits for
// `go` to become k; the waker sees `ready`, leaves the waiter's CPU idle for
// idle_ns, stamps t0 and sets `go` (with a wake unless the waiter spins).
std::vector<double> measure(Mode mode, unsigned waker_cpu, unsigned waiter_cpu, int samples, int64_t idle_ns) {
  std::atomic<uint32_t> ready{0}, go{0}, back{0};
  std::atomic<int64_t> t0{0};
  std::atomic<bool> placed{true};
  std::vector<double> got;
  std::thread waiter([&] {
    if (!pin(waiter_cpu)) placed = false;
    for (uint32_t k = 1; k <= uint32_t(samples); ++k) {
      ready.store(k, std::memory_order_release);
      if (mode == Mode::spinning) {
        while (go.load(std::memory_order_acquire) != k) {
        }
      } else {
        while (go.load(std::memory_order_acquire) != k) futex_wait(&go, k - 1);
      }
      const int64_t t1 = now_ns();
      got.push_back(double(t1 - t0.load(std::memory_order_acquire)));
      back.store(k, std::memory_order_release);
      futex_wake(&back);
    }
  });
  // The calling thread is the waker: pinned for the measurement, then given
  // its mask back (threads it starts later, the next suites', inherit it).
  cpu_set_t mask;
  const bool had_mask = pthread_getaffinity_np(pthread_self(), sizeof mask, &mask) == 0;
  if (!pin(waker_cpu)) placed = false;
  for (uint32_t k = 1; k <= uint32_t(samples); ++k) {
    // The same CPU: the waiter must be asleep before the waker stamps, and
    // the waker cannot poll for that (it would hold the CPU): it sleeps too.
    if (mode == Mode::same_cpu) {
      while (ready.load(std::memory_order_acquire) != k) std::this_thread::yield();
      std::this_thread::sleep_for(std::chrono::nanoseconds(idle_ns));
    } else {
      while (ready.load(std::memory_order_acquire) != k) {
      }
      spin_for(idle_ns);
    }
    t0.store(now_ns(), std::memory_order_release);
    go.store(k, std::memory_order_release);
    if (mode != Mode::spinning) futex_wake(&go);
    // The waiter's stamp is taken before it answers: waiting here (asleep on
    // the same CPU, so that it runs) does not add to the figure.
    while (back.load(std::memory_order_acquire) != k) futex_wait(&back, k - 1);
  }
  waiter.join();
  if (had_mask) pthread_setaffinity_np(pthread_self(), sizeof mask, &mask);
  if (!placed) got.clear();
  return got;
}

double percentile(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[std::min(v.size() - 1, size_t(p * double(v.size())))];
}

std::string cpuidle_driver() {
  std::ifstream f("/sys/devices/system/cpu/cpuidle/current_driver");
  std::string s;
  return std::getline(f, s) ? s : "unknown (no cpuidle in sysfs)";
}

}  // namespace

int run_handoff(const Options& opt, std::vector<Table>& out) {
  const int samples = std::max(1, std::stoi(setting(opt, "samples", opt.quick ? "40" : "400")));
  const auto idle_us = setting_list(opt, "idle_us", {300, 3000});
  if (idle_us.empty()) {
    fmt::print(stderr, "handoff: --set idle_us needs at least one value\n");
    return 1;
  }
  // Two CPUs of this process's mask: the first and the last it may use.
  cpu_set_t mask;
  std::vector<unsigned> cpus;
  if (sched_getaffinity(0, sizeof mask, &mask) == 0)
    for (unsigned c = 0; c < CPU_SETSIZE; ++c)
      if (CPU_ISSET(c, &mask)) cpus.push_back(c);
  if (cpus.empty()) cpus.push_back(0);
  const unsigned a = cpus.front(), b = cpus.back();
  Table t;
  t.title = "Handing work to another thread: from the waker's stamp to the woken thread running, microseconds";
  t.columns = {"the woken thread", "idle before, us", "CPUs", "median", "mean", "p90", "p99", "samples"};
  struct Case {
    const char* name;
    Mode mode;
    unsigned waker, waiter;
    uint32_t idle_us;
  };
  std::vector<Case> cases;
  for (uint32_t idle : idle_us) {
    if (a != b) cases.push_back({"sleeping, other CPU", Mode::sleeping, a, b, idle});
    cases.push_back({"sleeping, same CPU", Mode::same_cpu, a, a, idle});
  }
  if (a != b) cases.push_back({"spinning, other CPU", Mode::spinning, a, b, idle_us.front()});
  for (const auto& c : cases) {
    const std::string pair = fmt::format("{} -> {}", c.waker, c.waiter);
    const auto v = measure(c.mode, c.waker, c.waiter, samples, int64_t(c.idle_us) * 1000);
    if (v.empty()) {
      t.rows.push_back({c.name, std::to_string(c.idle_us), pair, "not run: could not pin", "-", "-", "-", "0"});
      continue;
    }
    auto us = [](double ns) { return fmt::format("{:.1f}", ns / 1e3); };
    const double mean = std::accumulate(v.begin(), v.end(), 0.0) / double(v.size());
    t.rows.push_back({c.name, std::to_string(c.idle_us), pair, us(median(v)), us(mean),
                      us(percentile(v, 0.9)), us(percentile(v, 0.99)), std::to_string(v.size())});
  }
  t.notes.push_back(fmt::format("{} CPUs to run on; cpuidle driver: {} (none: an idle CPU halts, and in a virtual "
                                "machine waking it goes through the hypervisor)",
                                cpus.size(), cpuidle_driver()));
  t.notes.push_back("idle before: how long the woken thread's CPU was left idle before each wake (--set "
                    "idle_us=U,V); a job sent to the agent takes three such hand-offs (doorbell to the agent's loop, "
                    "loop to a worker, completion to the client), and the client has waited about as long as its "
                    "job runs (docs/offload.md)");
  if (a == b) t.notes.push_back("one CPU: the cross-CPU rows are not run");
  out.push_back(std::move(t));
  return 0;
}

}  // namespace gpo::bench
