// Finding the shared libraries to put uprobes on: the dynamic linker's cache
// (/etc/ld.so.cache, what `ldconfig -p` prints) and the maps of running
// processes (copies outside the cache: containers, bundled libraries).
// A uprobe attaches to a file (inode), so one attachment per distinct file
// covers every process that maps it, including processes started later.
#pragma once
#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "spot/ops.h"

namespace gpo::spot {

struct CacheEntry {
  std::string soname;  // "libcrypto.so.3"
  std::string path;    // "/lib/x86_64-linux-gnu/libcrypto.so.3"
  uint32_t flags = 0;  // glibc's FLAG_* (type in the low byte, architecture in 0xff00)
};

// Parses the binary /etc/ld.so.cache ("glibc-ld.so.cache1.1", optionally
// behind the old "ld.so-1.7.0" header). Returns nullopt if the data is not a
// cache it understands (never reads out of bounds).
std::optional<std::vector<CacheEntry>> parse_ld_so_cache(std::span<const uint8_t> data);

// True when the entry's architecture bits are this process's (x86-64 libs on x86-64).
bool cache_entry_is_native(const CacheEntry& e);

// The library family of a file, by its base name: libcrypto.so*, libzstd.so*, libz.so*.
std::optional<LibKind> classify_library(std::string_view path);

// The mapped file of one /proc/PID/maps line, or nullopt (anonymous, [heap], ...).
// " (deleted)" suffixes are kept out.
std::optional<std::string> maps_line_path(std::string_view line);

struct Library {
  LibKind kind;
  std::string path;    // path to open/attach from this mount namespace
  std::string source;  // "ld.so.cache" or "pid 1234"
  dev_t dev = 0;
  ino_t ino = 0;
};

struct DiscoverOptions {
  std::string ld_so_cache = "/etc/ld.so.cache";
  std::string proc = "/proc";
  bool scan_processes = true;
  std::vector<std::string> extra;  // explicit library paths (classified by name)
};

// Distinct library files (by device and inode) of the three families.
std::vector<Library> discover_libraries(const DiscoverOptions& opts);

}  // namespace gpo::spot
