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
