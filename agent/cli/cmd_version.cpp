#include <bpf/libbpf.h>
#include <openssl/crypto.h>
#include <zstd.h>

#include <cstdio>

#include "cli/commands.h"
#include "version.h"

namespace gpo::cli {

void add_version(CLI::App& app) {
  auto* cmd = app.add_subcommand("version", "Print the agent's version and the versions of the libraries it was built with");
  cmd->callback([] {
    std::printf("gpuoffload-agent %s\n", GPUOFFLOAD_VERSION);
    std::printf("  libbpf %u.%u (static)\n", libbpf_major_version(), libbpf_minor_version());
    std::printf("  %s\n", OpenSSL_version(OPENSSL_VERSION));
    std::printf("  zstd %s\n", ZSTD_versionString());
#ifdef GPUOFFLOAD_HAVE_CUDA
    std::printf("  CUDA backend: built\n");
#else
    std::printf("  CUDA backend: not built (configure with -DGPUOFFLOAD_CUDA=ON)\n");
#endif
  });
}

}  // namespace gpo::cli
