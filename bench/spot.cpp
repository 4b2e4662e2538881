// Suite "spot": what spotting costs the spotted process, per mode, in one run.
//
// A single thread calls EVP_EncryptUpdate (AES-256-CTR) with small and large
// buffers and zlib crc32 with small buffers in a loop: the worst case for
// per-call probes. Each case runs without an agent, then with the agent's
// spotter (the same gpo::spot::Spotter `run` uses, on its own event loop
// thread) in sample mode and in probe mode, then without again.
//
// Sample mode finds this thread hot within a few seconds and measures it with
// a probe window; the phase runs long enough for that to happen, and reports
// the mean over the whole phase (window included) next to the median round,
// the window's cost, and that cost spread over the re-measure period.
//
// A second table probes single entry points at their first instruction and
// where the agent moves the probe (probe_site.h): what single-stepping costs.
//
// Root. Settings (--set): small=BYTES (256), large=BYTES (1 MiB); --quick
// shortens the phases (about 25 s instead of 50 s).
#include <bpf/bpf.h>
#include <fmt/format.h>
#include <openssl/evp.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <numeric>
#include <string>
#include <thread>
#include <vector>

#include "bench/bench.h"
#include "loop/event_loop.h"
#include "spot/probes.h"
#include "spot/spotter.h"
#include "util/log.h"

namespace gpo::bench {
namespace {

using clk = std::chrono::steady_clock;
using gpo::spot::Mode;

struct Case {
  std::string name;
  size_t size;
  std::function<void(int)> calls;  // runs n calls
};

struct Phase {
  double median = 0;  // ns per call, median round
  double mean = 0;    // ns per call over the whole phase
  uint64_t calls = 0;
  double seconds = 0;
  uint64_t windows = 0, window_calls = 0;
  double window_ms = 0;
  double prog_ns = 0;     // mean run time of the BPF program of the mode (up_entry or sample_cpu)
  uint64_t prog_runs = 0;
  double cpu_found = 0;   // sample mode: the share of a CPU sampling saw in the op
  uint64_t mean_len = 0;  // ... and the mean size its window measured
};

// This thread's CPU time: what the calls cost it, traps and sampling
// interrupts included, without the time other work on a shared machine takes
// the CPU away (wall time would count that too).
double thread_ns() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return double(ts.tv_sec) * 1e9 + double(ts.tv_nsec);
}

// Rounds of about 20 ms for `seconds` (wall); per round CPU ns per call.
Phase run_case(const Case& c, double seconds) {
  // Calls per round from a short calibration.
  int n = 64;
  for (;;) {
    auto t0 = clk::now();
    c.calls(n);
    double s = std::chrono::duration<double>(clk::now() - t0).count();
    if (s > 0.005 || n > (1 << 26)) {
      n = std::max(1, int(n * 0.02 / std::max(s, 1e-9)));
      break;
    }
    n *= 4;
  }
  std::vector<double> per;
  Phase p;
  auto start = clk::now();
  double cpu0 = thread_ns();
  while (std::chrono::duration<double>(clk::now() - start).count() < seconds) {
    double t0 = thread_ns();
    c.calls(n);
    per.push_back((thread_ns() - t0) / n);
    p.calls += uint64_t(n);
  }
  p.seconds = (thread_ns() - cpu0) * 1e-9;  // CPU seconds of the phase
  p.mean = p.seconds * 1e9 / double(p.calls);
  std::sort(per.begin(), per.end());
  p.median = per[per.size() / 2];
  return p;
}

// The agent: a spotter in `mode` on its own event loop thread while fn runs.
Phase with_agent(Mode mode, const std::function<Phase()>& fn, uint32_t sample_op) {
  gpo::spot::SpotOptions o;
  o.mode = mode;
  o.kernel = false;
  o.libraries.scan_processes = false;
  o.rescan = std::chrono::milliseconds(0);
  o.ignore_tgid = 0;  // this process is the spotted one
  auto spotter = gpo::spot::Spotter::attach(o);
  gpo::loop::EventLoop loop;
  spotter->register_with(loop);
  std::thread agent([&] { loop.run(false); });
  Phase p = fn();
  loop.stop();
  agent.join();
  if (spotter->open_windows()) spotter->close_window(uint32_t(getpid()), "stop");
  p.windows = spotter->windows_opened();
  std::pair<uint64_t, uint64_t> runs{0, 0};
  if (mode == Mode::sample && spotter->sampler()) runs = spotter->sampler()->prog_runs();
  for (const auto& s : spotter->prog_stats())
    if (mode == Mode::probe && s.name == gpo::spot::kUprobeProgram) runs = {s.run_cnt, s.run_time_ns};
  p.prog_runs = runs.first;
  p.prog_ns = runs.first ? double(runs.second) / double(runs.first) : 0;
  if (const auto* proc = spotter->aggregate().process(uint32_t(getpid()))) {
    if (proc->window) {
      p.window_calls = proc->window->calls;
      p.window_ms = double(proc->window->ended_ns - proc->window->started_ns) / 1e6;
    }
    if (auto it = proc->sampled.find(sample_op); it != proc->sampled.end()) p.cpu_found = it->second.cpu_period;
    uint64_t calls = 0, bytes = 0;
    for (uint32_t op : gpo::spot::probe_ops_of(sample_op))
      if (auto it = proc->sizes.find(op); it != proc->sizes.end()) {
        calls += it->second.calls;
        bytes += it->second.bytes;
      }
    p.mean_len = calls ? bytes / calls : 0;
  }
  return p;
}

}  // namespace

int run_spot(const Options& opt, std::vector<Table>& tables) {
  const size_t small = std::stoull(setting(opt, "small", "256"));
  const size_t large = std::stoull(setting(opt, "large", std::to_string(1 << 20)));
  const bool quick = opt.quick;
  if (geteuid() != 0) {
    std::fprintf(stderr, "bench spot: sampling and uprobes need root: run with sudo\n");
    return 1;
  }
  const auto saved_level = gpo::log::level();
  gpo::log::set_level(gpo::log::Level::warn);  // the spotter narrates every attach
  std::vector<unsigned char> in(std::max(small, large), 0x5a), out(std::max(small, large) + 64);
  unsigned char key[32] = {1}, iv[16] = {2};
  EVP_CIPHER_CTX* ctx = EVP_CIPHER_CTX_new();
  EVP_EncryptInit_ex(ctx, EVP_aes_256_ctr(), nullptr, key, iv);
  volatile uLong sink = 0;
  auto evp = [&](size_t n) {
    return [&, n](int calls) {
      int outl = 0;
      for (int i = 0; i < calls; i++)
        if (EVP_EncryptUpdate(ctx, out.data(), &outl, in.data(), int(n)) != 1) std::abort();
    };
  };
  auto crc = [&](size_t n) {
    return [&, n](int calls) {
      for (int i = 0; i < calls; i++) sink = crc32(sink, in.data(), uInt(n));
    };
  };
  auto digest = [&](size_t n) {
    EVP_MD_CTX* md = EVP_MD_CTX_new();
    EVP_DigestInit_ex(md, EVP_sha256(), nullptr);
    return [&, md, n](int calls) {
      for (int i = 0; i < calls; i++) EVP_DigestUpdate(md, in.data(), n);
    };
  };
  struct Row {
    Case c;
    uint32_t sample_op;
    Phase off1, sample, probe, off2;
  };
  std::vector<Row> rows = {
      {{"EVP_EncryptUpdate", small, evp(small)}, GPO_SAMPLE_CIPHER, {}, {}, {}, {}},
      {{"EVP_EncryptUpdate", large, evp(large)}, GPO_SAMPLE_CIPHER, {}, {}, {}, {}},
      {{"crc32", small, crc(small)}, GPO_SAMPLE_ZLIB_CRC32, {}, {}, {}, {}},
  };
  double off_s = quick ? 1 : 2, sample_s = quick ? 5 : 7, probe_s = quick ? 1 : 2;
  int stats_fd = bpf_enable_stats(BPF_STATS_RUN_TIME);  // what the BPF programs themselves cost
  for (auto& r : rows) {
    run_case(r.c, 0.2);  // warm up
    r.off1 = run_case(r.c, off_s);
    r.sample = with_agent(Mode::sample, [&] { return run_case(r.c, sample_s); }, r.sample_op);
    r.probe = with_agent(Mode::probe, [&] { return run_case(r.c, probe_s); }, r.sample_op);
    r.off2 = run_case(r.c, off_s);
  }

  const uint32_t remeasure_s = gpo::spot::WindowConfig{}.cooldown.count();
  Table cost;
  cost.title = "Spotting cost: CPU ns per call of this thread, median round (mean over the phase)";
  // "noise": how far the two no-agent phases (before, after) are apart; an
  // overhead within it is not one this run can tell from zero.
  cost.columns = {"call", "bytes", "no agent", "noise", "sample mode", "overhead", "probe mode", "overhead"};
  for (const auto& r : rows) {
    double base = (r.off1.median + r.off2.median) / 2;
    double base_mean = (r.off1.mean + r.off2.mean) / 2;
    cost.rows.push_back({r.c.name, std::to_string(r.c.size), fmt::format("{:.0f} ({:.0f})", base, base_mean),
                         fmt::format("{:.1f}%", 100 * std::abs(r.off1.median - r.off2.median) / base),
                         fmt::format("{:.0f} ({:.0f})", r.sample.median, r.sample.mean),
                         fmt::format("{:+.1f}%", 100 * (r.sample.median - base) / base),
                         fmt::format("{:.0f} ({:.0f})", r.probe.median, r.probe.mean),
                         fmt::format("{:+.1f}%", 100 * (r.probe.median - base) / base)});
  }
  cost.notes.push_back(fmt::format("{}: no agent {:.0f} s before and after (averaged), sample mode {:.0f} s, probe mode "
                                   "{:.0f} s per case; noise: the two no-agent phases' medians apart",
                                   quick ? "quick" : "full", off_s, sample_s, probe_s));
  cost.notes.push_back(fmt::format(
      "BPF program time per run (bpf_stats): sample_cpu {}; up_entry (probe mode) {}",
      rows.empty() ? "-" : fmt::format("{:.0f} ns x {} runs", rows[0].sample.prog_ns, rows[0].sample.prog_runs),
      rows.empty() ? "-" : fmt::format("{:.0f} ns x {} runs", rows[0].probe.prog_ns, rows[0].probe.prog_runs)));
  tables.push_back(std::move(cost));

  Table found;
  found.title = "Sample mode, per case: what sampling found, the window that measured it, and its cost";
  found.columns = {"call", "bytes", "sampled op", "share of a CPU", "windows", "window calls", "window ms",
                   "mean B", "phase excess ms", "phase CPU s", "excess of phase", "over re-measure period"};
  for (const auto& r : rows) {
    double excess_ms = std::max(0.0, (r.sample.mean - r.sample.median) * double(r.sample.calls) / 1e6);
    found.rows.push_back({r.c.name, std::to_string(r.c.size), std::string(gpo::spot::sample_op_name(r.sample_op)),
                          fmt::format("{:.0f}%", 100 * r.sample.cpu_found), std::to_string(r.sample.windows),
                          std::to_string(r.sample.window_calls), fmt::format("{:.0f}", r.sample.window_ms),
                          std::to_string(r.sample.mean_len), fmt::format("{:.0f}", excess_ms),
                          fmt::format("{:.1f}", r.sample.seconds),
                          fmt::format("{:.2f}%", 100 * excess_ms / (r.sample.seconds * 1000)),
                          fmt::format("{:.3f}%", 100 * excess_ms / (remeasure_s * 1000.0))});
  }
  found.notes.push_back(fmt::format("the re-measure period: {} s (a hot thread's window opens again after it)",
                                    remeasure_s));
  tables.push_back(std::move(found));

  // Where the probe sits: first instruction (what the kernel decodes there) vs
  // the site the agent picks. Pid-filtered to this process, probe mode's program.
  Table site;
  site.title = "Probe site: ns per call with one probe at the function's first instruction vs where the agent puts it";
  site.columns = {"symbol", "bytes", "no probe", "at entry", "entry site", "at the agent's site", "agent site"};
  struct Site {
    const char* symbol;
    gpo::spot::LibKind lib;
    Case c;
  };
  std::vector<Site> sites = {
      {"EVP_EncryptUpdate", gpo::spot::LibKind::crypto, {"EVP_EncryptUpdate", small, evp(small)}},
      {"EVP_DigestUpdate", gpo::spot::LibKind::crypto, {"EVP_DigestUpdate", small, digest(small)}},
      {"crc32", gpo::spot::LibKind::zlib, {"crc32", small, crc(small)}},
      {"crc32_z", gpo::spot::LibKind::zlib, {"crc32 (via crc32_z)", small, crc(small)}},
  };
  gpo::spot::DiscoverOptions dopts;
  dopts.scan_processes = false;
  auto libs = gpo::spot::discover_libraries(dopts);
  for (const auto& s : sites) {
    auto lib = std::find_if(libs.begin(), libs.end(), [&](const auto& l) { return l.kind == s.lib; });
    if (lib == libs.end()) continue;
    double none = run_case(s.c, probe_s / 2).median;
    std::vector<std::string> row{s.symbol, std::to_string(s.c.size), fmt::format("{:.0f}", none)};
    for (bool at_entry : {true, false}) {
      gpo::spot::ProbeSetOptions po;
      po.kernel = false;
      po.at_entry = at_entry;
      auto ps = gpo::spot::ProbeSet::load(po);
      std::vector<std::string> attached, skipped, only = {s.symbol};
      auto a = ps->attach_library(*lib, {}, getpid(), attached, skipped, &only);
      if (a->probes() == 0) {
        row.insert(row.end(), {"not probed", skipped.empty() ? "?" : skipped.front()});
        continue;
      }
      double t = run_case(s.c, probe_s / 2).median;
      std::string where = attached.front().substr(attached.front().find(':') + 1);
      row.insert(row.end(), {fmt::format("{:.0f} (+{:.0f})", t, t - none), where});
    }
    site.rows.push_back(std::move(row));
  }
  site.notes.push_back("one probe, pid-filtered to this process, probe mode's program; a probe on an instruction the "
                       "kernel cannot emulate single-steps (what moving the probe saves)");
  tables.push_back(std::move(site));
  if (stats_fd >= 0) close(stats_fd);
  EVP_CIPHER_CTX_free(ctx);
  gpo::log::set_level(saved_level);
  return 0;
}

}  // namespace gpo::bench
