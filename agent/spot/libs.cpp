#include "spot/libs.h"

#include <dirent.h>
#include <sys/stat.h>

#include <cstring>
#include <fstream>
#include <iterator>
#include <set>
#include <utility>

namespace gpo::spot {
namespace {

constexpr char kOldMagic[] = "ld.so-1.7.0";         // 11 bytes, no NUL in the file
constexpr char kNewMagic[] = "glibc-ld.so.cache1.1"; // magic + version, 20 bytes
constexpr size_t kOldHeader = 11 + 4;                 // magic, nlibs
constexpr size_t kOldEntry = 12;                      // flags, key, value
constexpr size_t kNewHeader = 48;
constexpr size_t kNewEntry = 24;                      // flags, key, value, osversion, hwcap

uint32_t rd32(std::span<const uint8_t> d, size_t off) {
  uint32_t v;
  std::memcpy(&v, d.data() + off, 4);
  return v;
}

// A NUL-terminated string at offset off of d, or nullopt when it runs past the end.
std::optional<std::string> cstr(std::span<const uint8_t> d, size_t off) {
  if (off >= d.size()) return std::nullopt;
  const void* end = std::memchr(d.data() + off, 0, d.size() - off);
  if (!end) return std::nullopt;
  return std::string(reinterpret_cast<const char*>(d.data() + off), static_cast<const uint8_t*>(end) - (d.data() + off));
}

}  // namespace

std::optional<std::vector<CacheEntry>> parse_ld_so_cache(std::span<const uint8_t> data) {
  size_t base = 0;
  if (data.size() >= kOldHeader && std::memcmp(data.data(), kOldMagic, 11) == 0) {
    // Old format first: the new one follows, 8-byte aligned, after the old entries.
    uint64_t nold = rd32(data, 11);
    uint64_t end = kOldHeader + nold * kOldEntry;
    base = (end + 7) & ~uint64_t(7);
  }
  if (base + kNewHeader > data.size() || std::memcmp(data.data() + base, kNewMagic, 20) != 0)
    return std::nullopt;
  auto d = data.subspan(base);  // string offsets are relative to the new header
  uint64_t nlibs = rd32(d, 20);
  if (kNewHeader + nlibs * kNewEntry > d.size()) return std::nullopt;
  std::vector<CacheEntry> out;
  out.reserve(nlibs);
  for (uint64_t i = 0; i < nlibs; i++) {
    size_t e = kNewHeader + i * kNewEntry;
    auto key = cstr(d, rd32(d, e + 4));
    auto value = cstr(d, rd32(d, e + 8));
    if (!key || !value) return std::nullopt;
    out.push_back({std::move(*key), std::move(*value), rd32(d, e)});
  }
  return out;
}

bool cache_entry_is_native(const CacheEntry& e) {
  uint32_t arch = e.flags & 0xff00;
#if defined(__x86_64__)
  return arch == 0x0300;  // FLAG_X8664_LIB64
#elif defined(__aarch64__)
  return arch == 0x0a00;  // FLAG_AARCH64_LIB64
#else
  (void)arch;
  return true;
#endif
}

std::optional<LibKind> classify_library(std::string_view path) {
  auto slash = path.rfind('/');
  std::string_view base = slash == std::string_view::npos ? path : path.substr(slash + 1);
  if (base.starts_with("libcrypto.so")) return LibKind::crypto;
  if (base.starts_with("libzstd.so")) return LibKind::zstd;
  if (base.starts_with("libz.so")) return LibKind::zlib;
  return std::nullopt;
}

std::optional<std::string> maps_line_path(std::string_view line) {
  // address perms offset dev inode [path]: the path starts after the 5th field.
  size_t pos = 0;
  for (int field = 0; field < 5; field++) {
    while (pos < line.size() && line[pos] == ' ') pos++;
    while (pos < line.size() && line[pos] != ' ') pos++;
  }
  while (pos < line.size() && line[pos] == ' ') pos++;
  if (pos >= line.size() || line[pos] != '/') return std::nullopt;
  std::string_view path = line.substr(pos);
  while (!path.empty() && (path.back() == '\n' || path.back() == ' ')) path.remove_suffix(1);
  constexpr std::string_view kDeleted = " (deleted)";
  if (path.ends_with(kDeleted)) return std::nullopt;  // the file is gone; nothing new can map it
  return std::string(path);
}

std::vector<Library> discover_libraries(const DiscoverOptions& opts) {
  std::vector<Library> out;
  std::set<std::pair<dev_t, ino_t>> seen;
  auto add = [&](LibKind kind, const std::string& path, const std::string& source) {
    struct stat st {};
    if (stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) return;
    if (!seen.insert({st.st_dev, st.st_ino}).second) return;
    out.push_back({kind, path, source, st.st_dev, st.st_ino});
  };

  for (const auto& p : opts.extra)
    if (auto k = classify_library(p)) add(*k, p, "--spot-lib");

  std::ifstream f(opts.ld_so_cache, std::ios::binary);
  if (f) {
    std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    if (auto entries = parse_ld_so_cache(bytes))
      for (const auto& e : *entries)
        if (cache_entry_is_native(e))
          if (auto k = classify_library(e.soname)) add(*k, e.path, "ld.so.cache");
  }

  if (!opts.scan_processes) return out;
  DIR* dir = opendir(opts.proc.c_str());
  if (!dir) return out;
  while (dirent* de = readdir(dir)) {
    if (de->d_name[0] < '0' || de->d_name[0] > '9') continue;
    std::string pid = de->d_name;
    std::ifstream maps(opts.proc + "/" + pid + "/maps");
    std::string line;
    std::set<std::string> paths;
    while (std::getline(maps, line))
      if (auto p = maps_line_path(line))
        if (classify_library(*p)) paths.insert(*p);
    for (const auto& p : paths) {
      // The path is in the process's mount namespace: reach it through its root.
      add(*classify_library(p), opts.proc + "/" + pid + "/root" + p, "pid " + pid);
    }
  }
  closedir(dir);
  return out;
}

}  // namespace gpo::spot
