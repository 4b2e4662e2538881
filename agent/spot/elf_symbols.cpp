#include "spot/elf_symbols.h"

#include <fcntl.h>
#include <gelf.h>
#include <libelf.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>

namespace gpo::spot {

std::optional<std::vector<FuncSymbol>> read_function_symbols(const std::string& path, std::string* err) {
  auto fail = [&](const std::string& why) -> std::optional<std::vector<FuncSymbol>> {
    if (err) *err = path + ": " + why;
    return std::nullopt;
  };
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return fail(std::strerror(errno));
  elf_version(EV_CURRENT);
  Elf* elf = elf_begin(fd, ELF_C_READ_MMAP, nullptr);
  if (!elf || elf_kind(elf) != ELF_K_ELF) {
    if (elf) elf_end(elf);
    close(fd);
    return fail("not an ELF file");
  }
  // Loadable segments: a symbol's value is a virtual address; its file offset
  // is where the segment holding it starts in the file plus the distance.
  struct Seg { uint64_t vaddr, memsz, offset; };
  std::vector<Seg> segs;
  size_t nph = 0;
  elf_getphdrnum(elf, &nph);
  for (size_t i = 0; i < nph; i++) {
    GElf_Phdr ph;
    if (gelf_getphdr(elf, int(i), &ph) && ph.p_type == PT_LOAD && (ph.p_flags & PF_X))
      segs.push_back({ph.p_vaddr, ph.p_memsz, ph.p_offset});
  }
  Elf_Scn* symtab = nullptr;
  Elf_Scn* dynsym = nullptr;
  for (Elf_Scn* scn = elf_nextscn(elf, nullptr); scn; scn = elf_nextscn(elf, scn)) {
    GElf_Shdr sh;
    if (!gelf_getshdr(scn, &sh)) continue;
    if (sh.sh_type == SHT_SYMTAB) symtab = scn;
    if (sh.sh_type == SHT_DYNSYM) dynsym = scn;
  }
  std::map<std::string, FuncSymbol> by_name;
  for (Elf_Scn* scn : {symtab, dynsym}) {
    if (!scn) continue;
    GElf_Shdr sh;
    gelf_getshdr(scn, &sh);
    Elf_Data* data = elf_getdata(scn, nullptr);
    if (!data || !sh.sh_entsize) continue;
    size_t n = sh.sh_size / sh.sh_entsize;
    for (size_t i = 0; i < n; i++) {
      GElf_Sym sym;
      if (!gelf_getsym(data, int(i), &sym)) continue;
      int type = GELF_ST_TYPE(sym.st_info);
      if ((type != STT_FUNC && type != STT_GNU_IFUNC) || sym.st_shndx == SHN_UNDEF || sym.st_value == 0) continue;
      const char* name = elf_strptr(elf, sh.sh_link, sym.st_name);
      if (!name || !*name) continue;
      for (const auto& s : segs) {
        if (sym.st_value < s.vaddr || sym.st_value >= s.vaddr + s.memsz) continue;
        by_name.emplace(name, FuncSymbol{name, sym.st_value - s.vaddr + s.offset, sym.st_size});
        break;
      }
    }
    if (!by_name.empty()) break;  // .symtab is a superset of .dynsym
  }
  elf_end(elf);
  close(fd);
  std::vector<FuncSymbol> out;
  out.reserve(by_name.size());
  for (auto& [name, s] : by_name) out.push_back(std::move(s));
  std::sort(out.begin(), out.end(), [](const FuncSymbol& a, const FuncSymbol& b) { return a.offset < b.offset; });
  return out;
}

std::vector<uint8_t> read_file_bytes(const std::string& path, uint64_t offset, size_t n) {
  std::vector<uint8_t> out(n);
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return {};
  ssize_t got = pread(fd, out.data(), n, off_t(offset));
  close(fd);
  out.resize(got > 0 ? size_t(got) : 0);
  return out;
}

}  // namespace gpo::spot
