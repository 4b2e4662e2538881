// Spotting end to end (root): the real BPF programs on the system's real
// libcrypto, libzstd and zlib, driven by tests/spot/spot_workload, and the
// real agent binary's `top`.
#include <gtest/gtest.h>
#include <fcntl.h>
#include <linux/if_alg.h>
#include <poll.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <optional>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "common/proc.h"
#include "spot/spotter.h"
#include "spot/uprobe_multi.h"

using namespace gpo::spot;

namespace {

double now_s() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

// A child with its stdin, stdout and stderr on pipes, killed on destruction.
struct Child {
  pid_t pid = -1;
  int in = -1, out = -1, err = -1;
  std::string out_buf, err_buf;
  int status = -1;

  explicit Child(const std::vector<std::string>& argv) {
    int pi[2], po[2], pe[2];
    if (pipe2(pi, O_CLOEXEC) || pipe2(po, O_CLOEXEC) || pipe2(pe, O_CLOEXEC)) return;
    pid = fork();
    if (pid == 0) {
      dup2(pi[0], 0);
      dup2(po[1], 1);
      dup2(pe[1], 2);
      std::vector<char*> args;
      for (auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
      args.push_back(nullptr);
      execv(args[0], args.data());
      _exit(127);
    }
    close(pi[0]);
    close(po[1]);
    close(pe[1]);
    in = pi[1];
    out = po[0];
    err = pe[0];
  }
  ~Child() {
    if (pid > 0 && status < 0) {
      kill(pid, SIGKILL);
      waitpid(pid, nullptr, 0);
    }
    for (int fd : {in, out, err})
      if (fd >= 0) close(fd);
  }
  // Reads both pipes until pred() holds, the child's pipes close, or timeout.
  bool pump_until(const std::function<bool()>& pred, double timeout_s) {
    double deadline = now_s() + timeout_s;
    while (!pred()) {
      double left = deadline - now_s();
      if (left <= 0) return false;
      pollfd p[2] = {{out, POLLIN, 0}, {err, POLLIN, 0}};
      int n = poll(p, 2, int(left * 1000) + 1);
      if (n < 0 && errno == EINTR) continue;
      bool any = false;
      char buf[8192];
      for (int i = 0; i < 2; i++) {
        if (!(p[i].revents & (POLLIN | POLLHUP))) continue;
        ssize_t got = read(p[i].fd, buf, sizeof buf);
        if (got > 0) {
          (i ? err_buf : out_buf).append(buf, size_t(got));
          any = true;
        }
      }
      if (!any && (p[0].revents & POLLHUP) && (p[1].revents & POLLHUP)) return pred();
    }
    return true;
  }
  int wait_exit(double timeout_s) {
    pump_until([] { return false; }, timeout_s);
    double deadline = now_s() + 1;
    while (status < 0 && now_s() < deadline) {
      int st;
      if (waitpid(pid, &st, WNOHANG) == pid) status = WIFEXITED(st) ? WEXITSTATUS(st) : 128;
      else usleep(10000);
    }
    return status;
  }
};

struct Call {
  uint32_t op;
  uint64_t len;
  bool operator<(const Call& o) const { return op != o.op ? op < o.op : len < o.len; }
};

std::map<Call, int> events_of(const std::vector<gpo_spot_event>& evs, uint32_t tgid) {
  std::map<Call, int> m;
  for (const auto& e : evs)
    if (e.tgid == tgid) m[{e.op, e.len}]++;
  return m;
}

std::string describe(const std::map<Call, int>& m) {
  std::ostringstream s;
  for (const auto& [c, n] : m) s << op_name(c.op) << ":" << c.len << "x" << n << " ";
  return s.str();
}

SpotOptions test_options() {
  SpotOptions o;
  o.mode = Mode::probe;                 // every call: the tests count them
  o.kernel = false;                     // tests of the kernel path enable it
  o.libraries.scan_processes = false;  // the system's libraries are in ld.so.cache
  o.rescan = std::chrono::milliseconds(0);
  return o;
}

// Drains the ring buffer until it stays empty for a moment.
void drain(Spotter& s) {
  double deadline = now_s() + 5;
  while (now_s() < deadline)
    if (s.poll(100) == 0) break;
}

uint64_t slot_delta(const std::array<gpo_spot_hist, kOps>& a, const std::array<gpo_spot_hist, kOps>& b, uint32_t op,
                    uint64_t len) {
  uint32_t k = log2_slot(len);
  return b[op].slots[k] - a[op].slots[k];
}

// Encrypts len bytes with ctr(aes) through an AF_ALG socket: the kernel's
// crypto_skcipher_encrypt runs in this thread. False (why) when the kernel lacks it.
bool af_alg_encrypt(size_t len, std::string& why) {
  int tfm = socket(AF_ALG, SOCK_SEQPACKET, 0);
  if (tfm < 0) {
    why = std::string("no AF_ALG sockets: ") + strerror(errno);
    return false;
  }
  sockaddr_alg sa{};
  sa.salg_family = AF_ALG;
  std::strcpy(reinterpret_cast<char*>(sa.salg_type), "skcipher");
  std::strcpy(reinterpret_cast<char*>(sa.salg_name), "ctr(aes)");
  if (bind(tfm, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
    close(tfm);
    why = std::string("ctr(aes) not available through AF_ALG: ") + strerror(errno);
    return false;
  }
  unsigned char key[32] = {1};
  EXPECT_EQ(setsockopt(tfm, SOL_ALG, ALG_SET_KEY, key, sizeof key), 0) << strerror(errno);
  int op = accept(tfm, nullptr, nullptr);
  EXPECT_GE(op, 0) << strerror(errno);

  std::vector<unsigned char> in(len, 0x5a), out(len);
  char cbuf[CMSG_SPACE(sizeof(uint32_t)) + CMSG_SPACE(sizeof(af_alg_iv) + 16)] = {};
  msghdr msg{};
  msg.msg_control = cbuf;
  msg.msg_controllen = sizeof cbuf;
  cmsghdr* c = CMSG_FIRSTHDR(&msg);
  c->cmsg_level = SOL_ALG;
  c->cmsg_type = ALG_SET_OP;
  c->cmsg_len = CMSG_LEN(sizeof(uint32_t));
  uint32_t enc = ALG_OP_ENCRYPT;
  std::memcpy(CMSG_DATA(c), &enc, sizeof enc);
  c = CMSG_NXTHDR(&msg, c);
  c->cmsg_level = SOL_ALG;
  c->cmsg_type = ALG_SET_IV;
  c->cmsg_len = CMSG_LEN(sizeof(af_alg_iv) + 16);
  auto* iv = reinterpret_cast<af_alg_iv*>(CMSG_DATA(c));
  iv->ivlen = 16;
  std::memset(iv->iv, 0, 16);
  iovec io{in.data(), len};
  msg.msg_iov = &io;
  msg.msg_iovlen = 1;
  EXPECT_EQ(sendmsg(op, &msg, 0), ssize_t(len)) << strerror(errno);
  EXPECT_EQ(read(op, out.data(), len), ssize_t(len)) << strerror(errno);
  close(op);
  close(tfm);
  return true;
}

#define REQUIRE_ROOT() \
  if (!gpo::test::is_root()) GTEST_SKIP() << "needs root (BPF, uprobes)"

}  // namespace

// Each large call appears once, with the right pid, op and length; small calls
// only in the histogram; the aggregate matches. The workload starts after the
// probes are attached.
TEST(SpotIntegration, LargeCallsOnceSmallOnlyInHistogram) {
  REQUIRE_ROOT();
  auto opts = test_options();
  // Per-op thresholds from user space: every decompress call is "large", so
  // its (data-dependent) compressed length is checked too.
  ASSERT_EQ(apply_threshold(opts.thresholds, "zstd_decompress=1"), "");
  auto s = Spotter::attach(opts);
  ASSERT_GT(s->report().uprobes, 10) << "uprobes attached: " << s->report().uprobes;
  std::vector<gpo_spot_event> evs;
  s->on_event([&](const gpo_spot_event& e) { evs.push_back(e); });
  auto h0 = s->read_hist();

  std::vector<std::string> argv = {SPOT_WORKLOAD,
                                   "evp_encrypt:1048576x3", "evp_encrypt:1024x5",
                                   "evp_decrypt:262144x2",  "evp_decrypt:100x4",
                                   "evp_cipher:131072x2",   "evp_cipher:512x3",
                                   "evp_digest:65536x2",    "evp_digest:64x7",
                                   "sha256:200000",         "sha256:32x6",
                                   "zstd_compress:300000",  "zstd_compress:1000x2",
                                   "zstd_compress_cctx:70000", "zstd_compress2:80000",
                                   "zstd_stream:90000",     "zstd_decompress:500000",
                                   "zstd_decompress_dctx:400000", "deflate:100000",
                                   "compress2:110000",      "compress2:10x3",
                                   "crc32:120000x2",        "crc32:16x9"};
  auto r = gpo::test::run_proc(argv, 30);
  ASSERT_EQ(r.exit_code, 0) << r.out;
  int pid = 0;
  std::vector<uint64_t> frames;
  std::istringstream lines(r.out);
  for (std::string l; std::getline(lines, l);) {
    if (l.rfind("done ", 0) == 0) pid = std::stoi(l.substr(5));
    if (l.rfind("frame ", 0) == 0) frames.push_back(std::stoull(l.substr(6)));
  }
  ASSERT_GT(pid, 0) << r.out;
  ASSERT_EQ(frames.size(), 2u) << r.out;
  drain(*s);
  auto h1 = s->read_hist();

  std::map<Call, int> want = {
      {{GPO_SPOT_EVP_ENCRYPT, 1048576}, 3},
      {{GPO_SPOT_EVP_DECRYPT, 262144}, 2},
      {{GPO_SPOT_EVP_CIPHER, 131072}, 2},  // not also as encrypt: the nested call is skipped
      {{GPO_SPOT_EVP_DIGEST, 65536}, 2},   // at the threshold counts as large
      {{GPO_SPOT_SHA256, 200000}, 1},
      {{GPO_SPOT_ZSTD_COMPRESS, 300000}, 1},  // ZSTD_compress, not again as ZSTD_compressCCtx
      {{GPO_SPOT_ZSTD_COMPRESS, 70000}, 1},
      {{GPO_SPOT_ZSTD_COMPRESS, 80000}, 1},   // ZSTD_compress2, not again as ZSTD_compressStream2
      {{GPO_SPOT_ZSTD_STREAM, 90000}, 1},
      {{GPO_SPOT_ZSTD_COMPRESS, 500000}, 1},  // the workload's frame for the decompress calls
      {{GPO_SPOT_ZSTD_COMPRESS, 400000}, 1},
      {{GPO_SPOT_ZLIB_DEFLATE, 100000}, 1},
      {{GPO_SPOT_ZLIB_DEFLATE, 110000}, 1},   // compress2, not again as deflate
      {{GPO_SPOT_ZLIB_CRC32, 120000}, 2},
  };
  want[{GPO_SPOT_ZSTD_DECOMPRESS, frames[0]}]++;
  want[{GPO_SPOT_ZSTD_DECOMPRESS, frames[1]}]++;
  auto got = events_of(evs, uint32_t(pid));
  EXPECT_EQ(got.size(), want.size()) << "got  " << describe(got) << "\nwant " << describe(want);
  for (const auto& [c, n] : want)
    EXPECT_EQ(got[c], n) << op_name(c.op) << " of " << c.len << " bytes; got " << describe(got);

  for (const auto& e : evs) {
    if (e.tgid != uint32_t(pid)) continue;
    EXPECT_EQ(e.pid, e.tgid);  // single-threaded workload
    EXPECT_STREQ(std::string(e.comm, strnlen(e.comm, sizeof e.comm)).c_str(), "spot_workload");
    EXPECT_NE(e.cgroup_id, 0u);
    EXPECT_EQ(e.flags & GPO_SPOT_F_KERNEL, 0u);
  }

  // Small calls: only in the histogram (other processes may add to it, hence >=).
  EXPECT_GE(slot_delta(h0, h1, GPO_SPOT_EVP_ENCRYPT, 1024), 5u);
  EXPECT_GE(slot_delta(h0, h1, GPO_SPOT_EVP_DECRYPT, 100), 4u);
  EXPECT_GE(slot_delta(h0, h1, GPO_SPOT_EVP_CIPHER, 512), 3u);
  EXPECT_GE(slot_delta(h0, h1, GPO_SPOT_EVP_DIGEST, 64), 7u);
  EXPECT_GE(slot_delta(h0, h1, GPO_SPOT_SHA256, 32), 6u);
  EXPECT_GE(slot_delta(h0, h1, GPO_SPOT_ZSTD_COMPRESS, 1000), 2u);
  EXPECT_GE(slot_delta(h0, h1, GPO_SPOT_ZLIB_DEFLATE, 10), 3u);
  EXPECT_GE(slot_delta(h0, h1, GPO_SPOT_ZLIB_CRC32, 16), 9u);
  // ...and the large ones there too (the histogram covers every call).
  EXPECT_GE(slot_delta(h0, h1, GPO_SPOT_EVP_ENCRYPT, 1048576), 3u);
  EXPECT_GE(h1[GPO_SPOT_EVP_ENCRYPT].bytes - h0[GPO_SPOT_EVP_ENCRYPT].bytes, 3u * 1048576 + 5 * 1024);

  // The aggregate is what the events say.
  const auto* p = s->aggregate().process(uint32_t(pid));
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(p->comm, "spot_workload");
  std::map<uint32_t, std::pair<uint64_t, uint64_t>> per_op;  // calls, bytes
  for (const auto& [c, n] : want) {
    per_op[c.op].first += n;
    per_op[c.op].second += c.len * n;
  }
  EXPECT_EQ(p->ops.size(), per_op.size());
  for (const auto& [op, cb] : per_op) {
    ASSERT_TRUE(p->ops.count(op)) << op_name(op);
    EXPECT_EQ(p->ops.at(op).calls, cb.first) << op_name(op);
    EXPECT_EQ(p->ops.at(op).bytes, cb.second) << op_name(op);
  }
  EXPECT_EQ(s->read_stats().dropped, 0u);
}

// A process that mapped the libraries before the probes were attached is seen too.
TEST(SpotIntegration, ProcessRunningBeforeAttachIsSeen) {
  REQUIRE_ROOT();
  Child w({SPOT_WORKLOAD, "--wait", "evp_encrypt:1048576x2", "zstd_compress:200000"});
  ASSERT_TRUE(w.pump_until([&] { return w.out_buf.find("ready") != std::string::npos; }, 10)) << w.err_buf;
  auto s = Spotter::attach(test_options());
  std::vector<gpo_spot_event> evs;
  s->on_event([&](const gpo_spot_event& e) { evs.push_back(e); });
  ASSERT_EQ(write(w.in, "\n", 1), 1);
  ASSERT_EQ(w.wait_exit(20), 0) << w.err_buf;
  drain(*s);
  auto got = events_of(evs, uint32_t(w.pid));
  std::map<Call, int> want = {{{GPO_SPOT_EVP_ENCRYPT, 1048576}, 2}, {{GPO_SPOT_ZSTD_COMPRESS, 200000}, 1}};
  EXPECT_EQ(got.size(), want.size()) << describe(got);
  for (const auto& [c, n] : want) EXPECT_EQ(got[c], n) << op_name(c.op);
}

// A full ring buffer loses descriptors, never silently: each lost one is counted.
TEST(SpotIntegration, RingBufferOverflowIsCounted) {
  REQUIRE_ROOT();
  auto opts = test_options();
  opts.thresholds.fill(0);  // every call is an event
  auto s = Spotter::attach(opts);
  auto st0 = s->read_stats();
  // 4 MiB of 64-byte records holds 65536; nobody consumes while this runs.
  const int calls = 70000;
  auto r = gpo::test::run_proc({SPOT_WORKLOAD, "crc32:16x" + std::to_string(calls)}, 60);
  ASSERT_EQ(r.exit_code, 0) << r.out;
  auto st1 = s->read_stats();
  EXPECT_GT(st1.dropped - st0.dropped, 0u);
  EXPECT_GE((st1.events - st0.events) + (st1.dropped - st0.dropped), uint64_t(calls));
}

namespace {
nlohmann::json last_json_line(const std::string& out) {
  nlohmann::json j;
  std::istringstream lines(out);
  for (std::string l; std::getline(lines, l);)
    if (!l.empty() && l[0] == '{') j = nlohmann::json::parse(l);
  return j;
}
}  // namespace

// The agent binary: `top --once --json` spots a process started after it and
// its aggregate matches the calls made; on a kernel without kprobes it says so
// and keeps going.
TEST(SpotIntegration, AgentTopAggregatesProcessStartedAfterIt) {
  REQUIRE_ROOT();
  Child agent({AGENT_BIN, "top", "--own", "--spot-mode", "probe", "--once", "--json", "--interval", "4", "--spot-no-proc-scan",
               "--profile", "/nonexistent/profile.json"});
  ASSERT_TRUE(agent.pump_until([&] { return agent.err_buf.find("spotting ready") != std::string::npos; }, 20))
      << agent.err_buf;
  auto r = gpo::test::run_proc({SPOT_WORKLOAD, "evp_encrypt:1048576x4", "zstd_compress:200000x2", "sha256:100x10"},
                               20);
  ASSERT_EQ(r.exit_code, 0) << r.out;
  int pid = 0;
  std::istringstream lines(r.out);
  for (std::string l; std::getline(lines, l);)
    if (l.rfind("done ", 0) == 0) pid = std::stoi(l.substr(5));
  ASSERT_EQ(agent.wait_exit(20), 0) << agent.err_buf;
  auto j = last_json_line(agent.out_buf);
  ASSERT_TRUE(j.is_object()) << agent.out_buf;
  nlohmann::json proc;
  for (const auto& p : j["processes"])
    if (p["pid"] == pid) proc = p;
  ASSERT_TRUE(proc.is_object()) << "workload pid " << pid << " not in " << j.dump();
  EXPECT_EQ(proc["comm"], "spot_workload");
  EXPECT_EQ(proc["ops"]["evp_encrypt"]["calls"], 4);
  EXPECT_EQ(proc["ops"]["evp_encrypt"]["bytes"], 4 * 1048576);
  EXPECT_EQ(proc["ops"]["zstd_compress"]["calls"], 2);
  EXPECT_EQ(proc["ops"]["zstd_compress"]["bytes"], 400000);
  EXPECT_FALSE(proc["ops"].contains("sha256"));  // small calls: histogram only
  EXPECT_EQ(proc["ops"]["evp_encrypt"]["predicted_gain"], "no profile: run calibrate");
  EXPECT_GE(j["hist"]["sha256"]["calls"].get<uint64_t>(), 10u);
  EXPECT_GT(j["attach"]["uprobes"].get<int>(), 10);
  EXPECT_EQ(j["attach"]["kprobes_available"].get<bool>(), kprobes_available());
}

// Feature fallback: where the kernel has no kprobes, the agent starts, says
// kprobes are unavailable, and still spots user-space work (above).
TEST(SpotIntegration, NoKprobesReportedAndAgentKeepsGoing) {
  REQUIRE_ROOT();
  if (kprobes_available()) GTEST_SKIP() << "this kernel has kprobes; the fallback is not exercised here";
  auto r = gpo::test::run_proc({AGENT_BIN, "top", "--own", "--spot-mode", "probe", "--once", "--json", "--interval", "0.5",
                                "--spot-no-proc-scan"},
                               30);
  EXPECT_EQ(r.exit_code, 0) << r.out;
  EXPECT_NE(r.out.find("kprobes: unavailable on this kernel"), std::string::npos) << r.out;
  auto j = last_json_line(r.out);
  ASSERT_TRUE(j.is_object()) << r.out;
  EXPECT_FALSE(j["attach"]["kprobes_available"].get<bool>());
  EXPECT_EQ(j["attach"]["kprobes"], 0);
  EXPECT_GT(j["attach"]["uprobes"].get<int>(), 10);
}

// Kernel crypto through AF_ALG: a kprobe on crypto_skcipher_encrypt sees the
// request length. Runs where kprobes exist (the VM layer); skips here.
TEST(SpotIntegration, KernelSkcipherViaAfAlg) {
  REQUIRE_ROOT();
  if (!kprobes_available()) GTEST_SKIP() << "kprobes unavailable on this kernel (CONFIG_KPROBES off?)";
  auto opts = test_options();
  opts.kernel = true;
  ASSERT_EQ(apply_threshold(opts.thresholds, "kern_skcipher_encrypt=4K"), "");
  auto s = Spotter::attach(opts);
  // kprobes exist here: attaching none is a failure, not a missing prerequisite.
  ASSERT_GT(s->report().kprobes, 0) << "kprobes available, yet no kernel entry point attached: "
                                    << s->report().kernel_note;
  std::vector<gpo_spot_event> evs;
  s->on_event([&](const gpo_spot_event& e) { evs.push_back(e); });

  std::string why;
  const size_t len = 32768;
  if (!af_alg_encrypt(len, why)) GTEST_SKIP() << why;
  drain(*s);

  uint64_t bytes = 0;
  int n = 0;
  for (const auto& e : evs)
    if (e.tgid == uint32_t(getpid()) && e.op == GPO_SPOT_KERN_SKCIPHER_ENC) {
      bytes += e.len;
      n++;
      EXPECT_TRUE(e.flags & GPO_SPOT_F_KERNEL);
    }
  EXPECT_GE(n, 1);
  EXPECT_EQ(bytes, len);  // AF_ALG may split the request; the lengths add up
}

// Kernel zstd through zram: pages written to a zram device with the zstd
// compressor reach zstd_compress_cctx (no btrfs needed). A fresh device from
// zram-control, removed afterwards, so no existing zram (swap) is touched.
TEST(SpotIntegration, KernelZstdViaZram) {
  REQUIRE_ROOT();
  if (!kprobes_available()) GTEST_SKIP() << "kprobes unavailable on this kernel (CONFIG_KPROBES off?)";
  if (access("/sys/class/zram-control/hot_add", F_OK) != 0) {
    int rc = std::system("modprobe zram num_devices=0 >/dev/null 2>&1");
    (void)rc;  // the hot_add check below says whether it worked
  }
  std::ifstream add("/sys/class/zram-control/hot_add");
  int id = -1;
  if (!(add >> id) || id < 0) GTEST_SKIP() << "no zram on this kernel (modprobe zram failed)";
  const std::string sys = "/sys/block/zram" + std::to_string(id);
  struct Remove {
    int id;
    ~Remove() { std::ofstream("/sys/class/zram-control/hot_remove") << id; }
  } remove{id};
  if (!(std::ofstream(sys + "/comp_algorithm") << "zstd"))
    GTEST_SKIP() << "zram has no zstd compressor here";
  ASSERT_TRUE(std::ofstream(sys + "/disksize") << "8M");

  auto opts = test_options();
  opts.kernel = true;
  ASSERT_EQ(apply_threshold(opts.thresholds, "kern_zstd_compress=4K"), "");
  auto s = Spotter::attach(opts);
  // kprobes exist here: attaching none is a failure, not a missing prerequisite.
  ASSERT_GT(s->report().kprobes, 0) << "kprobes available, yet no kernel entry point attached: "
                                    << s->report().kernel_note;
  std::vector<gpo_spot_event> evs;
  s->on_event([&](const gpo_spot_event& e) { evs.push_back(e); });

  // 64 pages of compressible text that is not same-filled (zram stores
  // same-filled pages without compressing them). O_DIRECT: compressed now.
  const size_t page = 4096, pages = 64;
  void* buf = nullptr;
  ASSERT_EQ(posix_memalign(&buf, page, page * pages), 0);
  auto* p = static_cast<char*>(buf);
  for (size_t i = 0; i < page * pages; i++) p[i] = "gpuoffload zram zstd "[i % 21] + char(i / 4096 % 3);
  int fd = open(("/dev/zram" + std::to_string(id)).c_str(), O_WRONLY | O_DIRECT);
  ASSERT_GE(fd, 0) << strerror(errno);
  EXPECT_EQ(write(fd, buf, page * pages), ssize_t(page * pages)) << strerror(errno);
  fsync(fd);
  close(fd);
  free(buf);
  drain(*s);

  int n = 0;
  for (const auto& e : evs)
    if (e.op == GPO_SPOT_KERN_ZSTD_COMPRESS) {
      EXPECT_TRUE(e.flags & GPO_SPOT_F_KERNEL);
      EXPECT_EQ(e.len, page);  // zram compresses one page per call
      n++;
    }
  EXPECT_EQ(n, int(pages));
}

// ---- sample mode: CPU sampling first, probes only on hot processes ----

namespace {

SpotOptions sample_options() {
  SpotOptions o = test_options();
  o.mode = Mode::sample;
  o.auto_windows = false;  // the tests that want windows open them or turn this on
  return o;
}

// Ticks the spotter every 250 ms until pred() holds or timeout_s passes.
bool tick_until(Spotter& s, const std::function<bool()>& pred, double timeout_s) {
  double deadline = now_s() + timeout_s;
  while (now_s() < deadline) {
    s.poll(250);
    s.tick();
    if (pred()) return true;
  }
  return false;
}

uint64_t sampled(const Spotter& s, uint32_t tgid, uint32_t op) {
  const auto* p = s.aggregate().process(tgid);
  if (!p) return 0;
  auto it = p->sampled.find(op);
  return it == p->sampled.end() ? 0 : it->second.samples;
}

// The address where a library file offset is mapped in a process, from its maps.
uint64_t mapped_address(pid_t pid, const std::string& lib_name, uint64_t file_offset) {
  std::ifstream maps("/proc/" + std::to_string(pid) + "/maps");
  for (std::string line; std::getline(maps, line);) {
    if (line.find(lib_name) == std::string::npos) continue;
    uint64_t start = 0, end = 0, off = 0;
    char perms[8] = {};
    if (sscanf(line.c_str(), "%lx-%lx %7s %lx", &start, &end, perms, &off) != 4) continue;
    if (file_offset >= off && file_offset < off + (end - start)) return start + (file_offset - off);
  }
  return 0;
}

int byte_at(pid_t pid, uint64_t addr) {
  int fd = open(("/proc/" + std::to_string(pid) + "/mem").c_str(), O_RDONLY);
  if (fd < 0) return -1;
  uint8_t b = 0;
  ssize_t n = pread(fd, &b, 1, off_t(addr));
  close(fd);
  return n == 1 ? b : -1;
}

}  // namespace

// A process that spends most of its time in SHA-256, then one in zstd, is
// found from samples alone: no probe is attached, no call is counted.
TEST(SpotSample, FindsBusyProcessOpFromSamplesAlone) {
  REQUIRE_ROOT();
  auto s = Spotter::attach(sample_options());
  ASSERT_NE(s->sampler(), nullptr);
  EXPECT_EQ(s->probes_attached(), 0);
  struct Want { std::string spec; uint32_t op; };
  for (const auto& w : {Want{"sha256:1048576x100000", GPO_SAMPLE_DIGEST},
                        Want{"zstd_compress:1048576x100000", GPO_SAMPLE_ZSTD_COMPRESS}}) {
    Child c({SPOT_WORKLOAD, w.spec});
    ASSERT_GT(c.pid, 0);
    // 97 Hz per CPU: a busy process gets tens of samples a second, even on a loaded machine.
    bool found = tick_until(*s, [&] { return sampled(*s, uint32_t(c.pid), w.op) >= 30; }, 30);
    const auto* p = s->aggregate().process(uint32_t(c.pid));
    ASSERT_TRUE(found) << w.spec << ": " << sampled(*s, uint32_t(c.pid), w.op) << " samples in "
                       << sample_op_name(w.op) << "; sampler: " << s->report().sampler;
    uint64_t all = 0;
    for (const auto& [op, so] : p->sampled) all += so.samples;
    // Most of its library time lands on the right op (the rest: other library code, e.g. allocation).
    EXPECT_GE(sampled(*s, uint32_t(c.pid), w.op) * 10, all * 8) << w.spec;
    EXPECT_EQ(p->comm, "spot_workload");
    EXPECT_TRUE(p->sizes.empty()) << "no probe counted a call";
    EXPECT_EQ(s->probes_attached(), 0);
  }
  EXPECT_EQ(s->windows_opened(), 0u);
  EXPECT_EQ(s->read_hist()[GPO_SPOT_SHA256].calls, 0u);
}

// A library on overlayfs (containers, live systems): the kernel maps the underlying file,
// whose device and inode are not what stat() shows for the path the agent knows. Its
// samples are attributed all the same (the sampler learns the kernel's name for it).
TEST(SpotSample, LibraryOnOverlayfsIsAttributed) {
  REQUIRE_ROOT();
  const std::string crypto = "/usr/lib/x86_64-linux-gnu/libcrypto.so.3";
  if (!std::filesystem::exists(crypto)) GTEST_SKIP() << "no " << crypto;
  char tmpl[] = "/tmp/gpo-ovl-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  const std::string top = tmpl;
  ASSERT_EQ(mount("gpo-ovl", top.c_str(), "tmpfs", 0, "size=64m"), 0) << strerror(errno);
  struct Unmount {
    std::string top;
    ~Unmount() {
      umount2((top + "/merged").c_str(), MNT_DETACH);
      umount2(top.c_str(), MNT_DETACH);
      rmdir(top.c_str());
    }
  } unmount{top};
  for (const char* d : {"/lower", "/upper", "/work", "/merged"}) ASSERT_EQ(mkdir((top + d).c_str(), 0755), 0);
  std::filesystem::copy_file(crypto, top + "/lower/libcrypto.so.3");
  const std::string opts = "lowerdir=" + top + "/lower,upperdir=" + top + "/upper,workdir=" + top + "/work";
  if (mount("overlay", (top + "/merged").c_str(), "overlay", 0, opts.c_str()) != 0)
    GTEST_SKIP() << "this kernel cannot mount overlayfs: " << strerror(errno);

  auto o = sample_options();
  o.libraries.extra = {top + "/merged/libcrypto.so.3"};  // known by its overlay path, as a scan would find it
  auto s = Spotter::attach(o);
  ASSERT_NE(s->sampler(), nullptr);
  Child c({"/usr/bin/env", "LD_LIBRARY_PATH=" + top + "/merged", SPOT_WORKLOAD, "sha256:1048576x100000"});
  ASSERT_GT(c.pid, 0);
  bool found = tick_until(*s, [&] { return sampled(*s, uint32_t(c.pid), GPO_SAMPLE_DIGEST) >= 30; }, 30);
  std::ifstream maps("/proc/" + std::to_string(c.pid) + "/maps");
  std::string all((std::istreambuf_iterator<char>(maps)), std::istreambuf_iterator<char>());
  ASSERT_NE(all.find("libcrypto.so.3"), std::string::npos) << "the workload did not load libcrypto";
  EXPECT_EQ(all.find("/usr/lib/x86_64-linux-gnu/libcrypto.so.3"), std::string::npos)
      << "the workload loaded the system's libcrypto, not the overlay's";
  EXPECT_TRUE(found) << sampled(*s, uint32_t(c.pid), GPO_SAMPLE_DIGEST)
                     << " samples in digest from the library on overlayfs; sampler: " << s->report().sampler;
}

// A probe window on one process writes breakpoints into that process only:
// another process running the same calls from the same library file is
// neither trapped nor counted. The window ends after its call budget.
TEST(SpotSample, WindowSeesOnlyItsProcess) {
  REQUIRE_ROOT();
  auto opts = sample_options();
  opts.windows.max_calls = 2000;
  opts.windows.max_duration = std::chrono::milliseconds(20000);  // ends by calls
  auto s = Spotter::attach(opts);
  Child a({SPOT_WORKLOAD, "sha256:4096x100000000"}), b({SPOT_WORKLOAD, "sha256:4096x100000000"});
  ASSERT_GT(a.pid, 0);
  ASSERT_GT(b.pid, 0);
  // Both have mapped libcrypto once they are found calling SHA256.
  ASSERT_TRUE(tick_until(*s, [&] {
    return sampled(*s, uint32_t(a.pid), GPO_SAMPLE_DIGEST) > 0 && sampled(*s, uint32_t(b.pid), GPO_SAMPLE_DIGEST) > 0;
  }, 30)) << "sampling never saw both workloads in SHA-256";

  // Where SHA256's probe goes in libcrypto, and where that is in each process.
  DiscoverOptions d;
  d.scan_processes = false;
  std::optional<Library> crypto;
  for (const auto& l : discover_libraries(d))
    if (l.kind == LibKind::crypto) crypto = l;
  ASSERT_TRUE(crypto);
  uint64_t off = 0;
  for (const auto& r : resolve_entries(*crypto))
    if (r.symbol == "SHA256") off = r.offset;
  ASSERT_GT(off, 0u);
  std::string name = std::filesystem::path(crypto->path).filename();
  uint64_t addr_a = mapped_address(a.pid, name, off), addr_b = mapped_address(b.pid, name, off);
  ASSERT_NE(addr_a, 0u);
  ASSERT_NE(addr_b, 0u);
  int orig_a = byte_at(a.pid, addr_a);
  ASSERT_NE(orig_a, 0xcc);

  std::string err;
  ASSERT_TRUE(s->open_window(uint32_t(a.pid), GPO_SAMPLE_DIGEST, err)) << err;
  EXPECT_GT(s->probes_attached(), 0);
  EXPECT_EQ(byte_at(a.pid, addr_a), 0xcc) << "int3 in the measured process";
  EXPECT_EQ(byte_at(b.pid, addr_b), orig_a) << "the other process's code is untouched";
  ASSERT_TRUE(tick_until(*s, [&] { return s->open_windows() == 0; }, 30)) << "the window never reached its budget";
  EXPECT_EQ(s->probes_attached(), 0);
  EXPECT_EQ(byte_at(a.pid, addr_a), orig_a) << "breakpoint removed at the end of the window";

  const auto* pa = s->aggregate().process(uint32_t(a.pid));
  ASSERT_NE(pa, nullptr);
  ASSERT_TRUE(pa->window);
  EXPECT_EQ(pa->window->ended_by, "calls");
  EXPECT_GE(pa->window->calls, 2000u);
  // Every call the window counted is in the process's histograms, 4 KiB each.
  // A SHA256 call already under way when the probes went in is seen only at
  // its inner EVP_Digest, so at most one call of the budget is counted there.
  uint64_t calls = 0;
  for (const auto& [op, h] : pa->sizes) {
    EXPECT_TRUE(op == GPO_SPOT_SHA256 || op == GPO_SPOT_EVP_DIGEST) << "op " << op;
    EXPECT_EQ(h.bytes, h.calls * 4096) << "op " << op;
    calls += h.calls;
  }
  EXPECT_EQ(calls, pa->window->calls);
  ASSERT_TRUE(pa->sizes.count(GPO_SPOT_SHA256));
  EXPECT_GE(pa->sizes.at(GPO_SPOT_SHA256).calls, 2000u - 1);
  const auto* pb = s->aggregate().process(uint32_t(b.pid));
  EXPECT_TRUE(!pb || pb->sizes.empty()) << "the other process was counted";
}

// Nothing hot, nothing probed: a process making a few small calls is never
// measured and none of its calls hits a probe; without a window no probe is
// attached at all. (Other processes on a shared machine may be hot: any window
// opened must be on one the sampler found hot.)
TEST(SpotSample, IdleMachinePaysNothing) {
  REQUIRE_ROOT();
  auto opts = sample_options();
  opts.auto_windows = true;
  auto s = Spotter::attach(opts);
  EXPECT_EQ(s->probes_attached(), 0) << "sample mode attaches no probe up front";
  Child light({SPOT_WORKLOAD, "--wait", "sha256:64x2000", "crc32:64x2000"});
  ASSERT_TRUE(light.pump_until([&] { return light.out_buf.find("ready") != std::string::npos; }, 10));
  double end = now_s() + 5;
  bool fed = false;
  while (now_s() < end) {
    s->poll(250);
    s->tick();
    if (!fed) fed = write(light.in, "\n", 1) == 1;  // its calls happen while the spotter runs
    if (s->open_windows() == 0) {
      EXPECT_EQ(s->probes_attached(), 0);
    }
    for (const auto& [tgid, p] : s->aggregate().processes())
      if (p.window && p.window->open) {
        auto it = p.sampled.find(p.window->sample_op);
        ASSERT_NE(it, p.sampled.end()) << "window on pid " << tgid << " without samples";
      }
  }
  ASSERT_EQ(light.wait_exit(10), 0) << light.err_buf;
  const auto* p = s->aggregate().process(uint32_t(light.pid));
  EXPECT_TRUE(!p || !p->window) << "the light process got a window";
  EXPECT_TRUE(!p || p->sizes.empty()) << "a call of the light process hit a probe";
}

// Stopping under load: two processes trapping on every call (probe mode, all
// entry points) and the spotter is torn down. One uprobe_multi link per
// library file where the kernel has them, so detaching is a few grace
// periods, not one per probe.
TEST(SpotSample, ShutdownUnderLoadIsFast) {
  REQUIRE_ROOT();
  auto s = Spotter::attach(test_options());  // probe mode
  ASSERT_GT(s->report().uprobes, 10);
  if (s->report().uprobe_multi) {
    for (const auto& a : s->report().attached) {
      if (a.rfind("uprobe", 0) == 0) {
        EXPECT_NE(a.find("[uprobe_multi]"), std::string::npos) << a;
      }
    }
  }
  Child w1({SPOT_WORKLOAD, "crc32:64x100000000"}), w2({SPOT_WORKLOAD, "evp_digest:64x100000000"});
  ASSERT_TRUE(tick_until(*s, [&] { return s->read_hist()[GPO_SPOT_ZLIB_CRC32].calls > 1000; }, 20));
  auto t0 = std::chrono::steady_clock::now();
  s.reset();
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  RecordProperty("detach_seconds", std::to_string(secs));
  std::printf("detached %s under load in %.3f s\n", uprobe_multi_supported() ? "uprobe_multi links" : "per-probe links",
              secs);
  // Under a second where uprobe_multi exists; the bound leaves room for a loaded CI machine.
  EXPECT_LT(secs, uprobe_multi_supported() ? 3.0 : 60.0);
  // The workloads keep running, untrapped.
  EXPECT_EQ(kill(w1.pid, 0), 0);
  EXPECT_EQ(kill(w2.pid, 0), 0);
}

// Kernel work in sample mode: a window on a process measures its kernel AES
// calls with kprobes, counted for that process only. Runs where kprobes exist
// (the VM layer); skips here.
TEST(SpotSample, KernelWindowViaAfAlg) {
  REQUIRE_ROOT();
  if (!kprobes_available()) GTEST_SKIP() << "kprobes unavailable on this kernel (CONFIG_KPROBES off?)";
  auto opts = sample_options();
  opts.kernel = true;
  opts.windows.max_duration = std::chrono::milliseconds(30000);
  ASSERT_EQ(apply_threshold(opts.thresholds, "kern_skcipher_encrypt=4K"), "");
  auto s = Spotter::attach(opts);
  std::vector<gpo_spot_event> evs;
  s->on_event([&](const gpo_spot_event& e) { evs.push_back(e); });
  std::string err;
  ASSERT_TRUE(s->open_window(uint32_t(getpid()), GPO_SAMPLE_KERN_CIPHER, err)) << err;
  EXPECT_GT(s->probes_attached(), 0);
  std::string why;
  const size_t len = 32768;
  if (!af_alg_encrypt(len, why)) GTEST_SKIP() << why;
  drain(*s);
  s->close_window(uint32_t(getpid()), "test");
  EXPECT_EQ(s->probes_attached(), 0);
  uint64_t bytes = 0;
  for (const auto& e : evs)
    if (e.op == GPO_SPOT_KERN_SKCIPHER_ENC) {
      EXPECT_EQ(e.tgid, uint32_t(getpid())) << "a kprobe event of another process during the window";
      EXPECT_TRUE(e.flags & GPO_SPOT_F_KERNEL);
      bytes += e.len;
    }
  EXPECT_EQ(bytes, len);
  const auto* p = s->aggregate().process(uint32_t(getpid()));
  ASSERT_NE(p, nullptr);
  ASSERT_TRUE(p->sizes.count(GPO_SPOT_KERN_SKCIPHER_ENC));
  EXPECT_GE(p->sizes.at(GPO_SPOT_KERN_SKCIPHER_ENC).bytes, len);
}
