// Function symbols of a shared library file, with file offsets: what uprobes
// attach to (a uprobe's offset is a file offset) and what sampled IPs are
// matched against (the sampler turns an IP into a file offset through its
// mapping). Read with libelf; .symtab when the file has one, else .dynsym
// (distribution libraries ship .dynsym only).
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace gpo::spot {

struct FuncSymbol {
  std::string name;
  uint64_t offset = 0;  // file offset of the first instruction
  uint64_t size = 0;    // bytes (0 when the symbol table does not say)
};

// Defined function symbols (STT_FUNC and STT_GNU_IFUNC) of path, one per name
// (the first definition wins), sorted by offset. nullopt and why in err when
// the file cannot be read as ELF.
std::optional<std::vector<FuncSymbol>> read_function_symbols(const std::string& path, std::string* err = nullptr);

// n bytes of path at a file offset (fewer at the end of the file; empty on error).
std::vector<uint8_t> read_file_bytes(const std::string& path, uint64_t offset, size_t n);

}  // namespace gpo::spot
