// What `gpuoffload-agent exec` needs to know about a program before running
// it: where it is (PATH), and whether LD_PRELOAD and OPENSSL_CONF can reach it
// at all (a static binary has no dynamic loader to preload into; a program
// that changes user or gains capabilities runs in secure-execution mode, where
// the loader ignores LD_PRELOAD and OpenSSL ignores OPENSSL_CONF).
#pragma once
#include <string>
#include <vector>

namespace gpo::cli {

struct ExecTarget {
  std::string path;                 // resolved, as execvp would find it
  std::vector<std::string> needed;  // DT_NEEDED of the binary (or of a script's interpreter)
  std::string interpreter;          // a script's interpreter, when path is a script
  std::string refusal;              // why it cannot be offloaded (empty: it can)
  int refusal_code = 0;             // 126: found but refused or not executable, 127: not found
};

// Resolves name like execvp and inspects it (a script: its interpreter, up
// to a few levels of #!).
ExecTarget inspect_target(const std::string& name);

// True when one of the libraries the offload reaches is in needed.
bool links_offloadable_library(const std::vector<std::string>& needed);

}  // namespace gpo::cli
