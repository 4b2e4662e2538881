// The environment that preloads one of the project's libraries (the shim) into a program.
// In a sanitizer build the library needs the sanitizer runtime: a program built here has it
// linked in, a foreign one (python3, git, ...) gets the runtime's shared object preloaded
// first, with leak checking off (the foreign program's own leaks are not ours to report).
#pragma once
#include <string>
#include <vector>

namespace gpo::test {

enum class Program { ours, foreign };

inline std::vector<std::string> preload_env(const std::string& lib, Program p) {
#ifdef GPO_SANITIZER_PRELOAD
  if (p == Program::foreign)
    return {"LD_PRELOAD=" GPO_SANITIZER_PRELOAD ":" + lib, "ASAN_OPTIONS=detect_leaks=0"};
#endif
  (void)p;
  return {"LD_PRELOAD=" + lib};
}

}  // namespace gpo::test
