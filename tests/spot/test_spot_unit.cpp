// Spotting, the parts without BPF: ld.so.cache parsing, /proc/PID/maps lines,
// thresholds, the per-process aggregate and the gain model.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <set>
#include <string>

#include "spot/aggregate.h"
#include "planner/profile.h"
#include "spot/gain.h"
#include "spot/libs.h"
#include "spot/ops.h"
#include "spot/probe_site.h"
#include "spot/sampler.h"
#include "spot/windows.h"

using namespace gpo::spot;

namespace {

void put32(std::vector<uint8_t>& v, size_t off, uint32_t x) { std::memcpy(v.data() + off, &x, 4); }

// A cache in glibc's new format with the given (soname, path, flags) entries,
// optionally behind an old-format header with nold entries.
std::vector<uint8_t> make_cache(const std::vector<CacheEntry>& entries, uint32_t nold = 0) {
  std::vector<uint8_t> v;
  size_t base = 0;
  if (nold) {
    v.resize(15 + nold * 12);
    std::memcpy(v.data(), "ld.so-1.7.0", 11);
    put32(v, 11, nold);
    base = (v.size() + 7) & ~size_t(7);
  }
  size_t strings = base + 48 + entries.size() * 24;
  v.resize(strings);
  std::memcpy(v.data() + base, "glibc-ld.so.cache1.1", 20);
  put32(v, base + 20, uint32_t(entries.size()));
  for (size_t i = 0; i < entries.size(); i++) {
    size_t e = base + 48 + i * 24;
    put32(v, e, entries[i].flags);
    put32(v, e + 4, uint32_t(v.size() - base));
    v.insert(v.end(), entries[i].soname.begin(), entries[i].soname.end());
    v.push_back(0);
    put32(v, e + 8, uint32_t(v.size() - base));
    v.insert(v.end(), entries[i].path.begin(), entries[i].path.end());
    v.push_back(0);
  }
  return v;
}

gpo_spot_event ev(uint32_t tgid, uint32_t op, uint64_t len, uint64_t ts, const char* comm = "proc") {
  gpo_spot_event e{};
  e.tgid = e.pid = tgid;
  e.op = op;
  e.len = len;
  e.ts_ns = ts;
  std::strncpy(e.comm, comm, sizeof e.comm - 1);
  return e;
}

}  // namespace

TEST(SpotLdSoCache, ParsesNewFormat) {
  std::vector<CacheEntry> in = {{"libcrypto.so.3", "/lib/x86_64-linux-gnu/libcrypto.so.3", 0x0303},
                                {"libz.so.1", "/lib/i386-linux-gnu/libz.so.1", 0x0003}};
  auto out = parse_ld_so_cache(make_cache(in));
  ASSERT_TRUE(out);
  ASSERT_EQ(out->size(), 2u);
  EXPECT_EQ((*out)[0].soname, "libcrypto.so.3");
  EXPECT_EQ((*out)[0].path, "/lib/x86_64-linux-gnu/libcrypto.so.3");
  EXPECT_EQ((*out)[1].path, "/lib/i386-linux-gnu/libz.so.1");
#if defined(__x86_64__)
  EXPECT_TRUE(cache_entry_is_native((*out)[0]));
  EXPECT_FALSE(cache_entry_is_native((*out)[1]));
#endif
}

TEST(SpotLdSoCache, ParsesNewFormatBehindOldHeader) {
  auto out = parse_ld_so_cache(make_cache({{"libzstd.so.1", "/usr/lib/libzstd.so.1", 0x0303}}, 3));
  ASSERT_TRUE(out);
  ASSERT_EQ(out->size(), 1u);
  EXPECT_EQ((*out)[0].path, "/usr/lib/libzstd.so.1");
}

TEST(SpotLdSoCache, RejectsGarbageAndTruncation) {
  EXPECT_FALSE(parse_ld_so_cache(std::vector<uint8_t>{}));
  EXPECT_FALSE(parse_ld_so_cache(std::vector<uint8_t>(100, 'x')));
  auto good = make_cache({{"libz.so.1", "/lib/libz.so.1", 0x0303}});
  for (size_t cut : {size_t(30), size_t(60), good.size() - 3}) {
    std::vector<uint8_t> t(good.begin(), good.begin() + cut);
    EXPECT_FALSE(parse_ld_so_cache(t)) << "cut at " << cut;
  }
}

// The machine's own cache says what `ldconfig -p` says.
TEST(SpotLdSoCache, MatchesLdconfigOnThisMachine) {
  std::ifstream f("/etc/ld.so.cache", std::ios::binary);
  if (!f) GTEST_SKIP() << "no /etc/ld.so.cache";
  std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  auto entries = parse_ld_so_cache(bytes);
  ASSERT_TRUE(entries) << "this machine's /etc/ld.so.cache did not parse";
  FILE* p = popen("ldconfig -p 2>/dev/null || /sbin/ldconfig -p 2>/dev/null", "r");
  ASSERT_NE(p, nullptr);
  std::set<std::string> from_ldconfig;
  char line[4096];
  while (fgets(line, sizeof line, p)) {
    const char* arrow = std::strstr(line, "=> ");
    if (!arrow) continue;
    std::string path = arrow + 3;
    while (!path.empty() && (path.back() == '\n' || path.back() == ' ')) path.pop_back();
    from_ldconfig.insert(path);
  }
  pclose(p);
  if (from_ldconfig.empty()) GTEST_SKIP() << "ldconfig -p printed nothing";
  std::set<std::string> parsed;
  for (const auto& e : *entries) parsed.insert(e.path);
  EXPECT_EQ(parsed, from_ldconfig);
}

TEST(SpotLibs, ClassifiesByBaseName) {
  EXPECT_EQ(classify_library("/lib/x86_64-linux-gnu/libcrypto.so.3"), LibKind::crypto);
  EXPECT_EQ(classify_library("libzstd.so.1.5.4"), LibKind::zstd);
  EXPECT_EQ(classify_library("/usr/lib/libz.so.1"), LibKind::zlib);
  EXPECT_FALSE(classify_library("/usr/lib/libzip.so.4"));
  EXPECT_FALSE(classify_library("/usr/lib/libssl.so.3"));
  EXPECT_FALSE(classify_library("/opt/libcrypto.so.3/other.so"));
}

TEST(SpotLibs, MapsLinePath) {
  EXPECT_EQ(maps_line_path("7f1c2a000000-7f1c2a0a0000 r--p 00000000 fe:01 393449                     "
                           "/usr/lib/x86_64-linux-gnu/libcrypto.so.3\n"),
            "/usr/lib/x86_64-linux-gnu/libcrypto.so.3");
  EXPECT_EQ(maps_line_path("7f00-7f01 r-xp 00000000 fe:01 12 /opt/my lib/libz.so.1"), "/opt/my lib/libz.so.1");
  EXPECT_FALSE(maps_line_path("7ffd-7ffe rw-p 00000000 00:00 0                          [stack]"));
  EXPECT_FALSE(maps_line_path("7ffd-7ffe rw-p 00000000 00:00 0"));
  EXPECT_FALSE(maps_line_path("7f00-7f01 r-xp 00000000 fe:01 12 /tmp/libz.so.1 (deleted)"));
}

TEST(SpotOps, NamesRoundTrip) {
  for (uint32_t op = 0; op < kOps; op++) EXPECT_EQ(op_from_name(op_name(op)), op);
  EXPECT_FALSE(op_from_name("nope"));
  // Every uprobe program maps to a library family, and every family has entry points.
  std::set<LibKind> kinds;
  for (const auto& s : uprobe_specs()) kinds.insert(s.lib);
  EXPECT_EQ(kinds.size(), 3u);
  // The spec table is indexed by the attach cookie up_entry switches on.
  ASSERT_EQ(uprobe_specs().size(), size_t(GPO_SPOT_ENTRY_MAX));
  for (uint32_t i = 0; i < uprobe_specs().size(); i++) EXPECT_EQ(uprobe_specs()[i].entry, i);
  for (uint32_t op = 1; op < kSampleOps; op++) EXPECT_EQ(sample_op_from_name(sample_op_name(op)), op);
}

// Entry instructions of Debian 12's libcrypto, libzstd and zlib (objdump), and
// where the probe goes: emulated instructions stay, others move forward to the
// first emulated one when the arguments are still intact there.
TEST(SpotProbeSite, MovesToTheFirstEmulatedInstruction) {
  struct Case {
    const char* what;
    std::vector<uint8_t> code;
    uint64_t skip;
    bool emulated;
    bool tail_call;
    const char* insn;
  };
  std::vector<Case> cases = {
      {"push %rbx (EVP_EncryptUpdate)", {0x53, 0x48, 0x83, 0xec, 0x10}, 0, true, false, "push"},
      {"push %r15 (ZSTD_compress)", {0x41, 0x57, 0x41, 0x56}, 0, true, false, "push"},
      {"mov 0x10(%rdi),%eax; test; je (EVP_CipherUpdate)", {0x8b, 0x47, 0x10, 0x85, 0xc0, 0x74, 0x09}, 5, true, false,
       "jcc"},
      {"test %rdx,%rdx; je rel32 (EVP_DigestUpdate)", {0x48, 0x85, 0xd2, 0x74, 0x7b}, 3, true, false, "jcc"},
      {"sub $8,%rsp; push %r9 (ZSTD_compressCCtx)", {0x48, 0x83, 0xec, 0x08, 0x41, 0x51}, 4, true, false, "push"},
      {"test %rdi,%rdi; je rel32 (deflate)", {0x48, 0x85, 0xff, 0x0f, 0x84, 0xd7, 0x17, 0, 0}, 3, true, false, "jcc"},
      // mov %edx,%edx writes an argument register: the probe cannot move past it.
      {"mov %edx,%edx; jmp (crc32 -> crc32_z)", {0x89, 0xd2, 0xe9, 0x69, 0xe8, 0xff, 0xff}, 0, false, true, "other"},
      {"mov $-1,%r8d; jmp (compress -> compress2)", {0x41, 0xb8, 0xff, 0xff, 0xff, 0xff, 0xe9, 0, 0, 0, 0}, 0, false,
       true, "other"},
      // A load into an argument register, then an emulated instruction: stays put.
      {"mov (%rdi),%rsi; push", {0x48, 0x8b, 0x37, 0x53}, 0, false, false, "other"},
      // Unknown instruction (SIB memory operand): stays put.
      {"mov (%rsp),%rax; push", {0x48, 0x8b, 0x04, 0x24, 0x53}, 0, false, false, "other"},
      // CET builds (Ubuntu) start functions with endbr64, which is not emulated.
      {"endbr64; push %rbp", {0xf3, 0x0f, 0x1e, 0xfa, 0x55}, 4, true, false, "push"},
      {"endbr64; test %rdi,%rdi; je", {0xf3, 0x0f, 0x1e, 0xfa, 0x48, 0x85, 0xff, 0x74, 0x10}, 7, true, false, "jcc"},
      {"empty", {}, 0, false, false, "other"},
  };
  for (const auto& c : cases) {
    auto site = choose_probe_site(c.code);
    EXPECT_EQ(site.skip, c.skip) << c.what;
    EXPECT_EQ(site.emulated, c.emulated) << c.what;
    EXPECT_EQ(site.tail_call, c.tail_call) << c.what;
    EXPECT_EQ(site.insn, c.insn) << c.what;
  }
}

TEST(SpotSampleRanges, ClassifiedFunctionsMergedPerOp) {
  std::vector<FuncSymbol> syms = {
      {"EVP_EncryptUpdate", 0x1000, 0x100}, {"CRYPTO_ctr128_encrypt", 0x1200, 0x80},  // one cipher run
      {"BN_add", 0x1300, 0x40},                                                        // not classified
      {"SHA256_Update", 0x2000, 0x100},     {"SHA256_Final", 0x2100, 0x80},
      {"AES_encrypt", 0x3000, 0},  // no size: up to the next symbol
      {"OPENSSL_cleanse", 0x3050, 0x10},
  };
  auto r = library_ranges(LibKind::crypto, syms);
  ASSERT_EQ(r.size(), 3u);
  EXPECT_EQ(r[0].start, 0x1000u);
  EXPECT_EQ(r[0].end, 0x1280u);  // the gap between two cipher functions holds no other symbol
  EXPECT_EQ(r[0].op, uint32_t(GPO_SAMPLE_CIPHER));
  EXPECT_EQ(r[1].start, 0x2000u);
  EXPECT_EQ(r[1].end, 0x2180u);
  EXPECT_EQ(r[1].op, uint32_t(GPO_SAMPLE_DIGEST));
  EXPECT_EQ(r[2].start, 0x3000u);
  EXPECT_EQ(r[2].end, 0x3050u);
  EXPECT_EQ(classify_function(LibKind::zlib, "crc32_z"), uint32_t(GPO_SAMPLE_ZLIB_CRC32));
  EXPECT_EQ(classify_function(LibKind::zlib, "inflate"), uint32_t(GPO_SAMPLE_NONE));
  EXPECT_EQ(classify_function(LibKind::zstd, "ZSTD_decompressDCtx"), uint32_t(GPO_SAMPLE_ZSTD_DECOMPRESS));
}

TEST(SpotSampleRanges, KernelFromKallsyms) {
  std::string text =
      "ffffffff81000000 T _stext\n"
      "ffffffff81001000 t aesni_enc\n"
      "ffffffff81001100 T aesni_gcm_enc_update\n"
      "ffffffff81001200 t sha256_update\n"
      "ffffffff81001300 D some_data\n"
      "ffffffff81002000 T zstd_compress_cctx\n"
      "ffffffff81002400 t ZSTD_compressBlock_fast\n"
      "ffffffff81002800 T vfs_write\n"
      "0000000000000000 T hidden_when_kptr_restricted\n";
  auto r = kernel_ranges(text);
  ASSERT_EQ(r.size(), 2u);
  EXPECT_EQ(r[0].start, 0xffffffff81001000u);
  EXPECT_EQ(r[0].end, 0xffffffff81001200u);
  EXPECT_EQ(r[0].op, uint32_t(GPO_SAMPLE_KERN_CIPHER));
  EXPECT_EQ(r[1].start, 0xffffffff81002000u);
  EXPECT_EQ(r[1].end, 0xffffffff81002800u);
  EXPECT_EQ(r[1].op, uint32_t(GPO_SAMPLE_KERN_ZSTD_COMPRESS));
  EXPECT_TRUE(kernel_ranges("0000000000000000 T aesni_enc\n0000000000000000 T vfs_write\n").empty());
}

namespace {
constexpr uint64_t kSec = 1000000000ull;
}

// Hot means a share of one CPU over a whole period; one window per process,
// hottest first, none while cooling down or for "other" time.
TEST(SpotWindowPolicy, HotProcessesGetOneWindowThenCoolDown) {
  WindowConfig cfg;
  cfg.hot_cpu = 0.10;
  cfg.hot_ticks = 3;
  cfg.max_windows = 2;
  cfg.cooldown = std::chrono::seconds(60);
  WindowPolicy p(cfg, 100);
  const SampleKey busy{10, GPO_SAMPLE_DIGEST}, busy_other{10, GPO_SAMPLE_CIPHER}, idle{11, GPO_SAMPLE_CIPHER},
      other{12, GPO_SAMPLE_CRYPTO_OTHER}, second{13, GPO_SAMPLE_ZSTD_COMPRESS};
  // 100 Hz: 50 samples a second = half a CPU; 2 a second = 2%.
  for (int t = 0; t <= 3; t++) {
    p.observe({{busy, 50u * t}, {busy_other, 30u * t}, {idle, 2u * t}, {other, 90u * t}, {second, 20u * t}},
              uint64_t(t) * kSec);
    if (t < 3) EXPECT_TRUE(p.to_open(uint64_t(t) * kSec, 0, {}).empty()) << "a full period first, t=" << t;
  }
  EXPECT_NEAR(p.cpu_period(busy), 0.5, 1e-9);
  EXPECT_NEAR(p.cpu_last(idle), 0.02, 1e-9);
  auto open = p.to_open(3 * kSec, 0, {});
  ASSERT_EQ(open.size(), 2u);
  EXPECT_EQ(open[0], busy);    // hottest first; its cipher time waits (one window per process)
  EXPECT_EQ(open[1], second);  // 20% > 10%; "other" has nothing to measure it with
  EXPECT_EQ(p.to_open(3 * kSec, 1, {}).size(), 1u);  // max_windows counts the open ones
  EXPECT_EQ(p.to_open(3 * kSec, 0, {10}).front(), second);  // busy process skipped
  p.measured(busy, 3 * kSec);
  p.measured(second, 3 * kSec);
  open = p.to_open(4 * kSec, 0, {});
  ASSERT_EQ(open.size(), 1u);
  EXPECT_EQ(open[0], busy_other);
  EXPECT_TRUE(p.cooling(busy, 62 * kSec));
  EXPECT_FALSE(p.cooling(busy, 64 * kSec));
  // A process gone from the samples is forgotten.
  p.observe({{second, 999}}, 5 * kSec);
  EXPECT_EQ(p.cpu_period(busy), 0.0);
}

TEST(SpotOps, Thresholds) {
  auto t = default_thresholds();
  EXPECT_EQ(t[GPO_SPOT_SHA256], 65536u);
  EXPECT_EQ(apply_threshold(t, "sha256=4K"), "");
  EXPECT_EQ(t[GPO_SPOT_SHA256], 4096u);
  EXPECT_EQ(t[GPO_SPOT_ZSTD_COMPRESS], 65536u);
  EXPECT_EQ(apply_threshold(t, "all=1M"), "");
  EXPECT_EQ(t[GPO_SPOT_ZLIB_CRC32], 1u << 20);
  EXPECT_EQ(apply_threshold(t, "zstd_compress=100"), "");
  EXPECT_EQ(t[GPO_SPOT_ZSTD_COMPRESS], 100u);
  EXPECT_NE(apply_threshold(t, "sha256"), "");
  EXPECT_NE(apply_threshold(t, "sha512=1K"), "");
  EXPECT_NE(apply_threshold(t, "sha256=lots"), "");
  EXPECT_NE(apply_threshold(t, "sha256=1T"), "");
  EXPECT_EQ(t[GPO_SPOT_SHA256], 1u << 20);  // failed specs change nothing
}

TEST(SpotAggregate, Log2Slots) {
  EXPECT_EQ(log2_slot(0), 0u);
  EXPECT_EQ(log2_slot(1), 0u);
  EXPECT_EQ(log2_slot(1023), 9u);
  EXPECT_EQ(log2_slot(1024), 10u);
  EXPECT_EQ(log2_slot(~0ull), uint32_t(GPO_SPOT_HIST_SLOTS - 1));
}

TEST(SpotAggregate, PerProcessAndOp) {
  Aggregator a;
  a.tick(1'000'000'000);
  a.add(ev(10, GPO_SPOT_EVP_ENCRYPT, 1 << 20, 1'100'000'000, "nginx"));
  a.add(ev(10, GPO_SPOT_EVP_ENCRYPT, 1 << 16, 1'200'000'000, "nginx"));
  a.add(ev(10, GPO_SPOT_ZSTD_COMPRESS, 100000, 1'300'000'000, "nginx"));
  a.add(ev(20, GPO_SPOT_SHA256, 5 << 20, 1'400'000'000, "backup"));
  a.tick(3'000'000'000);  // 2 s later

  ASSERT_EQ(a.processes().size(), 2u);
  EXPECT_EQ(a.events(), 4u);
  const auto* p = a.process(10);
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(p->comm, "nginx");
  const auto& enc = p->ops.at(GPO_SPOT_EVP_ENCRYPT);
  EXPECT_EQ(enc.calls, 2u);
  EXPECT_EQ(enc.bytes, (1u << 20) + (1u << 16));
  EXPECT_EQ(enc.max_len, 1u << 20);
  EXPECT_EQ(enc.slots[20], 1u);
  EXPECT_EQ(enc.slots[16], 1u);
  EXPECT_DOUBLE_EQ(enc.rate_bps, ((1 << 20) + (1 << 16)) / 2.0);
  EXPECT_EQ(p->bytes(), (1u << 20) + (1u << 16) + 100000u);

  auto ranked = a.ranked();
  ASSERT_EQ(ranked.size(), 2u);
  EXPECT_EQ(ranked[0]->tgid, 20u);  // 5 MiB in 2 s beats 1.1 MiB

  a.tick(5'000'000'000);  // nothing new: rates drop to 0
  EXPECT_EQ(a.process(10)->rate_bps(), 0);

  auto j = a.to_json();
  ASSERT_EQ(j.size(), 2u);
  bool found = false;
  for (const auto& pj : j)
    if (pj["pid"] == 10) {
      found = true;
      EXPECT_EQ(pj["ops"]["evp_encrypt"]["calls"], 2);
      EXPECT_EQ(pj["ops"]["zstd_compress"]["bytes"], 100000);
      EXPECT_EQ(pj["ops"]["evp_encrypt"]["size_log2_hist"]["1048576"], 1);
    }
  EXPECT_TRUE(found);

  a.tick(400'000'000'000ull, 300'000'000'000ull);  // both idle for > 300 s
  EXPECT_TRUE(a.processes().empty());
}

TEST(SpotGain, NoProfileSaysCalibrate) {
  auto g = GainModel::load("/nonexistent/profile.json");
  EXPECT_FALSE(g.has_profile());
  EXPECT_EQ(g.describe(GPO_SPOT_EVP_ENCRYPT, 1 << 20), "no profile: run calibrate");
  EXPECT_EQ(g.describe(GPO_SPOT_ZLIB_CRC32, 1 << 20), "no GPU kernel");
}

TEST(SpotGain, NearestSizeOfProfile) {
  // The planner's profile (planner/profile.h), measured "on this machine".
  char path[] = "/tmp/gpo-spot-profile-XXXXXX";
  int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  close(fd);
  gpo::planner::Profile p;
  p.machine = gpo::planner::this_machine(0);
  auto& aes = p.ops["aes-256-gcm-encrypt"];
  aes.gpu_kernel = true;
  aes.points = {{4096, 1, 600, 500, 5000}, {4096, 16, 9600, 8000, 80000},  // largest batch per size counts
                {1048576, 4, 880000, 440000, 160000}};
  gpo::planner::save_profile(p, path);
  auto g = GainModel::load(path);
  unlink(path);
  ASSERT_TRUE(g.has_profile()) << g.error();
  EXPECT_NEAR(g.speedup(GPO_SPOT_EVP_ENCRYPT, 900000), 2.75, 1e-9);
  EXPECT_EQ(g.describe(GPO_SPOT_EVP_ENCRYPT, 900000), "2.8x faster on GPU");
  EXPECT_EQ(g.describe(GPO_SPOT_EVP_DECRYPT, 5000), "CPU faster (GPU 0.10x)");
  EXPECT_EQ(g.describe(GPO_SPOT_SHA256, 5000), "no sha256 in profile: run calibrate");
}

TEST(SpotGain, ProfileOfAnotherMachineIsIgnored) {
  char path[] = "/tmp/gpo-spot-profile-XXXXXX";
  int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  close(fd);
  gpo::planner::Profile p;
  p.machine = gpo::planner::this_machine(0);
  p.machine.cpu += " (another one)";
  p.ops["sha256"].points = {{4096, 1, 600, 500, 5000}};
  gpo::planner::save_profile(p, path);
  auto g = GainModel::load(path);
  unlink(path);
  EXPECT_FALSE(g.has_profile());
  EXPECT_NE(g.error().find("another machine"), std::string::npos) << g.error();
}
