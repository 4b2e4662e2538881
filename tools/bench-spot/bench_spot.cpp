// bench-spot: what spotting costs the spotted process. Times libcrypto calls
// (EVP_EncryptUpdate, AES-256-CTR) of a small size (below the threshold:
// histogram only) and a large one (over it: histogram + ring buffer
// descriptor), in this process, without probes, with the agent's spotter
// attached (the same gpo::spot::Spotter `run` uses, its ring buffer drained by
// a second thread as the agent's loop does), and without again, in one run.
//
//   bench-spot [--small BYTES] [--large BYTES] [--rounds N]   (root)
#include <bpf/bpf.h>
#include <fmt/format.h>
#include <openssl/evp.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "spot/spotter.h"
#include "util/log.h"

namespace {

using clk = std::chrono::steady_clock;

struct Case {
  const char* name;
  size_t size;
  int calls;
};

// Median over rounds of the mean ns per call of `calls` back-to-back calls.
double time_evp(EVP_CIPHER_CTX* ctx, std::vector<unsigned char>& in, std::vector<unsigned char>& out,
                const Case& c, int rounds) {
  std::vector<double> per;
  for (int r = 0; r < rounds; r++) {
    int outl = 0;
    auto t0 = clk::now();
    for (int i = 0; i < c.calls; i++)
      if (EVP_EncryptUpdate(ctx, out.data(), &outl, in.data(), int(c.size)) != 1) std::abort();
    auto t1 = clk::now();
    per.push_back(std::chrono::duration<double, std::nano>(t1 - t0).count() / c.calls);
  }
  std::sort(per.begin(), per.end());
  return per[per.size() / 2];
}

double time_crc(std::vector<unsigned char>& in, const Case& c, int rounds) {
  std::vector<double> per;
  volatile uLong sink = 0;
  for (int r = 0; r < rounds; r++) {
    auto t0 = clk::now();
    for (int i = 0; i < c.calls; i++) sink = crc32(sink, in.data(), uInt(c.size));
    auto t1 = clk::now();
    per.push_back(std::chrono::duration<double, std::nano>(t1 - t0).count() / c.calls);
  }
  std::sort(per.begin(), per.end());
  return per[per.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  size_t small = 256, large = 1 << 20;
  int rounds = 7;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i];
    if (a == "--small") small = std::strtoull(argv[i + 1], nullptr, 10);
    else if (a == "--large") large = std::strtoull(argv[i + 1], nullptr, 10);
    else if (a == "--rounds") rounds = std::atoi(argv[i + 1]);
    else {
      std::fprintf(stderr, "usage: bench-spot [--small BYTES] [--large BYTES] [--rounds N]\n");
      return 2;
    }
  }
  if (geteuid() != 0) {
    std::fprintf(stderr, "bench-spot: attaching uprobes needs root: run with sudo\n");
    return 3;
  }
  gpo::log::set_level(gpo::log::Level::warn);
  std::vector<unsigned char> in(large, 0x5a), out(large + 64);
  unsigned char key[32] = {1}, iv[16] = {2};
  EVP_CIPHER_CTX* ctx = EVP_CIPHER_CTX_new();
  EVP_EncryptInit_ex(ctx, EVP_aes_256_ctr(), nullptr, key, iv);

  // About 50-100 ms per round each.
  Case evp_small{"EVP_EncryptUpdate small", small, 50000};
  Case evp_large{"EVP_EncryptUpdate large", large, std::max(4, int((64u << 20) / large))};
  Case crc_small{"crc32 small", small, 50000};
  struct Row { Case c; bool evp; double off1 = 0, on = 0, off2 = 0; };
  std::vector<Row> rows = {{evp_small, true}, {evp_large, true}, {crc_small, false}};
  auto measure = [&](Row& r) {
    return r.evp ? time_evp(ctx, in, out, r.c, rounds) : time_crc(in, r.c, rounds);
  };

  for (auto& r : rows) measure(r);  // warm up
  for (auto& r : rows) r.off1 = measure(r);

  uint64_t hist_calls = 0, events = 0, dropped = 0;
  std::vector<std::string> prog_lines;
  {
    gpo::spot::SpotOptions opts;
    opts.kernel = false;
    opts.libraries.scan_processes = false;
    opts.rescan = std::chrono::milliseconds(0);
    opts.ignore_tgid = 0;  // this process is the spotted one
    // Run-time stats of the BPF programs, to split the cost: program vs uprobe trap.
    int stats_fd = bpf_enable_stats(BPF_STATS_RUN_TIME);
    auto spotter = gpo::spot::Spotter::attach(opts);
    std::atomic<bool> stop{false};
    std::thread drain([&] {
      while (!stop.load()) spotter->poll(100);
    });
    for (auto& r : rows) measure(r);  // warm up with probes
    for (auto& r : rows) r.on = measure(r);
    stop = true;
    drain.join();
    auto h = spotter->read_hist();
    hist_calls = h[GPO_SPOT_EVP_ENCRYPT].calls + h[GPO_SPOT_ZLIB_CRC32].calls;
    auto st = spotter->read_stats();
    events = st.events;
    dropped = st.dropped;
    for (const auto& p : spotter->prog_stats())
      if (p.run_cnt && (p.name == "up_evp_encrypt_update" || p.name == "up_crc32"))
        prog_lines.push_back(fmt::format("  {:<24} {:>9} runs, {:>6.0f} ns per run inside the BPF program",
                                         p.name, p.run_cnt, double(p.run_time_ns) / double(p.run_cnt)));
    if (stats_fd >= 0) close(stats_fd);
  }
  for (auto& r : rows) r.off2 = measure(r);

  std::printf("bench-spot: ns per call in this process (median of %d rounds), threshold %d bytes\n", rounds,
              GPO_SPOT_DEFAULT_THRESHOLD);
  std::printf("%-26s %10s %12s %12s %12s %12s\n", "call", "bytes", "no probes", "spotted", "no probes", "overhead");
  for (const auto& r : rows) {
    double base = (r.off1 + r.off2) / 2;
    std::printf("%-26s %10zu %12.0f %12.0f %12.0f %+11.0f ns (%+.1f%%)\n", r.c.name, r.c.size, r.off1, r.on, r.off2,
                r.on - base, 100.0 * (r.on - base) / base);
  }
  std::printf("while spotted: %llu calls in the histograms, %llu descriptors, %llu dropped\n",
              (unsigned long long)hist_calls, (unsigned long long)events, (unsigned long long)dropped);
  for (const auto& l : prog_lines) std::printf("%s\n", l.c_str());
  EVP_CIPHER_CTX_free(ctx);
  return 0;
}
