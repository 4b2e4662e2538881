#include "cli/exec_target.h"

#include <elf.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

namespace gpo::cli {
namespace {

std::string which(const std::string& name) {
  if (name.find('/') != std::string::npos) return name;
  const char* p = getenv("PATH");
  std::stringstream ss(p && *p ? p : "/usr/local/bin:/usr/bin:/bin");
  for (std::string dir; std::getline(ss, dir, ':');) {
    const std::string f = (dir.empty() ? "." : dir) + "/" + name;
    if (access(f.c_str(), X_OK) == 0) {
      struct stat st{};
      if (stat(f.c_str(), &st) == 0 && S_ISREG(st.st_mode)) return f;
    }
  }
  return "";
}

bool read_at(int fd, uint64_t off, void* buf, size_t n) { return pread(fd, buf, n, off_t(off)) == ssize_t(n); }

struct Elf {
  bool ok = false, has_interp = false;
  std::vector<std::string> needed;
};

// Program headers and the dynamic section of a 64-bit ELF file: enough to
// know whether it has a dynamic loader and which libraries it names.
Elf read_elf(const std::string& path) {
  Elf e;
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return e;
  Elf64_Ehdr h{};
  if (!read_at(fd, 0, &h, sizeof h) || std::memcmp(h.e_ident, ELFMAG, SELFMAG) != 0 ||
      h.e_ident[EI_CLASS] != ELFCLASS64 || h.e_phentsize != sizeof(Elf64_Phdr)) {
    close(fd);
    return e;
  }
  e.ok = true;
  std::vector<Elf64_Phdr> ph(h.e_phnum);
  if (!ph.empty() && !read_at(fd, h.e_phoff, ph.data(), ph.size() * sizeof(Elf64_Phdr))) {
    close(fd);
    return e;
  }
  const Elf64_Phdr* dyn = nullptr;
  for (const auto& p : ph) {
    if (p.p_type == PT_INTERP) e.has_interp = true;
    if (p.p_type == PT_DYNAMIC) dyn = &p;
  }
  // Virtual address -> file offset through the PT_LOAD segments.
  auto file_off = [&](uint64_t va, uint64_t* off) {
    for (const auto& p : ph)
      if (p.p_type == PT_LOAD && va >= p.p_vaddr && va < p.p_vaddr + p.p_filesz) {
        *off = p.p_offset + (va - p.p_vaddr);
        return true;
      }
    return false;
  };
  if (dyn && dyn->p_filesz < (1u << 20)) {
    std::vector<Elf64_Dyn> d(dyn->p_filesz / sizeof(Elf64_Dyn));
    if (read_at(fd, dyn->p_offset, d.data(), d.size() * sizeof(Elf64_Dyn))) {
      uint64_t strtab = 0, stroff = 0;
      for (const auto& x : d)
        if (x.d_tag == DT_STRTAB) strtab = x.d_un.d_ptr;
      if (strtab && file_off(strtab, &stroff))
        for (const auto& x : d) {
          if (x.d_tag == DT_NULL) break;
          if (x.d_tag != DT_NEEDED) continue;
          char name[256] = {};
          if (pread(fd, name, sizeof name - 1, off_t(stroff + x.d_un.d_val)) > 0) e.needed.emplace_back(name);
        }
    }
  }
  close(fd);
  return e;
}

// The interpreter of a #! script ("/usr/bin/env python3" resolves python3), or "".
std::string shebang(const std::string& path) {
  std::ifstream f(path);
  std::string line;
  if (!std::getline(f, line) || line.rfind("#!", 0) != 0) return "";
  std::stringstream ss(line.substr(2));
  std::string interp, arg;
  ss >> interp >> arg;
  if (interp == "/usr/bin/env" || interp == "/bin/env") return which(arg);
  return interp;
}

}  // namespace

bool links_offloadable_library(const std::vector<std::string>& needed) {
  for (const auto& n : needed)
    for (const char* lib : {"libcrypto.so", "libssl.so", "libzstd.so", "libz.so", "libgpuoffload"})
      if (n.rfind(lib, 0) == 0) return true;
  return false;
}

ExecTarget inspect_target(const std::string& name) {
  ExecTarget t;
  t.path = which(name);
  if (t.path.empty()) {
    t.refusal = name + ": command not found";
    t.refusal_code = 127;
    return t;
  }
  std::string cur = t.path;
  for (int depth = 0; depth < 4; ++depth) {
    struct stat st{};
    if (stat(cur.c_str(), &st) != 0) {
      t.refusal = cur + ": " + std::strerror(errno);
      t.refusal_code = errno == ENOENT ? 127 : 126;
      return t;
    }
    if (!S_ISREG(st.st_mode) || access(cur.c_str(), X_OK) != 0) {
      t.refusal = cur + ": not an executable file";
      t.refusal_code = 126;
      return t;
    }
    // Secure execution: the loader drops LD_PRELOAD, libcrypto ignores OPENSSL_CONF.
    if (((st.st_mode & S_ISUID) && st.st_uid != getuid()) || ((st.st_mode & S_ISGID) && st.st_gid != getgid())) {
      t.refusal = cur + " is set-user-ID or set-group-ID: it runs in secure-execution mode, where the dynamic loader "
                        "ignores LD_PRELOAD and OpenSSL ignores OPENSSL_CONF, so neither the shim nor the provider "
                        "can be put in place. Run an unprivileged copy of it instead.";
      t.refusal_code = 126;
      return t;
    }
    if (getuid() != 0 && getxattr(cur.c_str(), "security.capability", nullptr, 0) > 0) {
      t.refusal = cur + " has file capabilities: it runs in secure-execution mode, where the dynamic loader ignores "
                        "LD_PRELOAD and OpenSSL ignores OPENSSL_CONF. Run a copy without capabilities instead.";
      t.refusal_code = 126;
      return t;
    }
    Elf e = read_elf(cur);
    if (e.ok) {
      if (!e.has_interp) {
        t.refusal = cur + " is statically linked (no program interpreter): its libcrypto, libzstd and zlib, if any, "
                          "are compiled into it, and no dynamic loader runs to preload the shim or to load the "
                          "OpenSSL provider. Nothing in it can be offloaded; a dynamically linked build can be.";
        t.refusal_code = 126;
        return t;
      }
      t.needed = e.needed;
      return t;
    }
    const std::string next = shebang(cur);
    if (next.empty()) return t;  // not ELF, not a script: let execve say what it is
    t.interpreter = next;
    cur = next;
  }
  return t;
}

}  // namespace gpo::cli
