// zstd-blocks: the block compressor of mksquashfs (squashfs-tools, `-comp zstd
// -b 1M`), alone: files read into memory, cut into blocks (each file into
// blocks of --block bytes, its tail shorter), and --threads threads compressing
// blocks with one-shot ZSTD_compressCCtx calls, a context per thread. It
// knows nothing of gpuoffload: run it plain, then under
// LD_PRELOAD=libgpuoffload-shim.so, and compare. Prints one line of
// key=value figures for the compression phase (the loading is not timed):
// wall time, CPU time of the process, bytes in and out; --check decompresses
// every block afterwards and compares. --copies N copies each block N times
// through buffers of the compressing thread before compressing the last copy:
// what the copies of a service that takes the input out of the program cost
// the same program, with nothing else of the service (its floor).
//
//   zstd-blocks [--threads N] [--block BYTES] [--level L] [--repeat R]
//               [--copies N] [--check] [--synthetic BYTES] [PATH...]
#include <sys/resource.h>
#include <zstd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

namespace {

struct Block {
  size_t off, len;
};

double cpu_seconds(int who) {
  rusage u{};
  getrusage(who, &u);
  return double(u.ru_utime.tv_sec) + double(u.ru_utime.tv_usec) / 1e6 + double(u.ru_stime.tv_sec) +
         double(u.ru_stime.tv_usec) / 1e6;
}

double user_seconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return double(u.ru_utime.tv_sec) + double(u.ru_utime.tv_usec) / 1e6;
}

// Text-like bytes (compress about 3:1), deterministic.
void synthetic(std::vector<uint8_t>& data, size_t n) {
  static const char* words[] = {"block ", "squash ", "inode ", "fragment ", "table ", "zstd ", "level ", "super\n"};
  data.resize(n);
  uint64_t x = 0x9e3779b97f4a7c15ull;
  for (size_t i = 0; i < n;) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    const char* w = words[(x >> 8) & 7];
    for (; *w && i < n; ++w) data[i++] = uint8_t((x & 31) == 0 ? uint8_t(x >> 24) : uint8_t(*w));
  }
}

void usage() {
  std::fprintf(stderr,
               "usage: zstd-blocks [--threads N] [--block BYTES] [--level L] [--repeat R] [--copies N]\n"
               "                   [--check] [--synthetic BYTES] [PATH...]\n"
               "Compresses the files under PATH (or BYTES of synthetic text) in blocks with one-shot\n"
               "ZSTD_compressCCtx calls from N threads, as mksquashfs -comp zstd does.\n"
               "--copies N: copy each block N times (memcpy, buffers of the thread) and compress the\n"
               "last copy, to measure what copies alone cost (0-4, default 0).\n");
}

}  // namespace

int main(int argc, char** argv) {
  unsigned threads = std::max(1u, std::thread::hardware_concurrency());
  size_t block = 1 << 20, synth = 0;
  int level = 1, repeat = 1, copies = 0;
  bool check = false;
  std::vector<std::string> paths;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> const char* {
      if (i + 1 >= argc) {
        usage();
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--threads") threads = unsigned(std::max(1, std::atoi(next())));
    else if (a == "--block") block = std::max<size_t>(4096, std::strtoull(next(), nullptr, 10));
    else if (a == "--level") level = std::atoi(next());
    else if (a == "--repeat") repeat = std::max(1, std::atoi(next()));
    else if (a == "--copies") copies = std::clamp(std::atoi(next()), 0, 4);
    else if (a == "--synthetic") synth = std::strtoull(next(), nullptr, 10);
    else if (a == "--check") check = true;
    else if (a == "-h" || a == "--help") return usage(), 0;
    else if (!a.empty() && a[0] == '-') return usage(), 2;
    else paths.push_back(a);
  }
  if (paths.empty() && synth == 0) return usage(), 2;

  // Load: every regular file, in path order, each cut into blocks.
  std::vector<uint8_t> data;
  std::vector<Block> blocks;
  size_t files = 0;
  auto add_file = [&](const std::filesystem::path& p) {
    std::ifstream f(p, std::ios::binary);
    if (!f) return;
    const size_t at = data.size();
    f.seekg(0, std::ios::end);
    const auto len = size_t(std::max<std::streamoff>(0, f.tellg()));
    f.seekg(0);
    data.resize(at + len);
    f.read(reinterpret_cast<char*>(data.data() + at), std::streamsize(len));
    data.resize(at + size_t(f.gcount()));
    for (size_t o = at; o < data.size(); o += block) blocks.push_back({o, std::min(block, data.size() - o)});
    ++files;
  };
  if (synth) {
    synthetic(data, synth);
    for (size_t o = 0; o < data.size(); o += block) blocks.push_back({o, std::min(block, data.size() - o)});
  }
  std::error_code ec;
  for (const auto& p : paths) {
    if (std::filesystem::is_regular_file(p, ec)) {
      add_file(p);
      continue;
    }
    for (auto it = std::filesystem::recursive_directory_iterator(
             p, std::filesystem::directory_options::skip_permission_denied, ec);
         it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
      if (ec) break;
      if (it->is_regular_file(ec) && !it->is_symlink(ec)) add_file(it->path());
    }
  }
  if (blocks.empty()) {
    std::fprintf(stderr, "zstd-blocks: no data\n");
    return 1;
  }

  const size_t bound = ZSTD_compressBound(block);
  std::vector<uint8_t> out(blocks.size() * bound);
  std::vector<size_t> out_len(blocks.size());
  std::vector<double> walls;
  double user = 0, cpu = 0;
  std::atomic<int> errors{0};
  // Allocated and touched before the clock starts, as a service's slab is.
  std::vector<std::vector<std::vector<uint8_t>>> staging(
      threads, std::vector<std::vector<uint8_t>>(size_t(copies), std::vector<uint8_t>(block, 1)));
  for (int r = 0; r < repeat; ++r) {
    std::atomic<size_t> next{0};
    const double c0 = cpu_seconds(RUSAGE_SELF), u0 = user_seconds();
    const auto t0 = std::chrono::steady_clock::now();
    std::vector<std::thread> ts;
    for (unsigned t = 0; t < threads; ++t)
      ts.emplace_back([&, t] {
        ZSTD_CCtx* cctx = ZSTD_createCCtx();
        for (size_t b; (b = next.fetch_add(1)) < blocks.size();) {
          const uint8_t* src = data.data() + blocks[b].off;
          for (auto& s : staging[t]) src = static_cast<const uint8_t*>(std::memcpy(s.data(), src, blocks[b].len));
          const size_t n = ZSTD_compressCCtx(cctx, out.data() + b * bound, bound, src, blocks[b].len, level);
          if (ZSTD_isError(n)) {
            errors++;
            out_len[b] = 0;
          } else {
            out_len[b] = n;
          }
        }
        ZSTD_freeCCtx(cctx);
      });
    for (auto& t : ts) t.join();
    walls.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    cpu += cpu_seconds(RUSAGE_SELF) - c0;
    user += user_seconds() - u0;
  }
  std::sort(walls.begin(), walls.end());
  size_t bytes_out = 0;
  for (size_t n : out_len) bytes_out += n;
  std::string checked = "no";
  if (check) {
    std::vector<uint8_t> back(block);
    bool ok = errors == 0;
    for (size_t b = 0; b < blocks.size() && ok; ++b) {
      const size_t n = ZSTD_decompress(back.data(), back.size(), out.data() + b * bound, out_len[b]);
      ok = !ZSTD_isError(n) && n == blocks[b].len &&
           std::memcmp(back.data(), data.data() + blocks[b].off, n) == 0;
    }
    checked = ok ? "ok" : "FAILED";
  }
  const double wall = walls[walls.size() / 2];
  std::printf("zstd-blocks threads=%u block=%zu level=%d files=%zu blocks=%zu bytes_in=%zu bytes_out=%zu ratio=%.3f "
              "repeat=%d copies=%d wall_s=%.4f best_wall_s=%.4f GB_s=%.3f user_s=%.3f cpu_s=%.3f check=%s errors=%d\n",
              threads, block, level, files, blocks.size(), data.size(), bytes_out,
              double(data.size()) / double(std::max<size_t>(1, bytes_out)), repeat, copies, wall, walls.front(),
              double(data.size()) / wall / 1e9, user / repeat, cpu / repeat, checked.c_str(), errors.load());
  return checked == "FAILED" || errors ? 1 : 0;
}
