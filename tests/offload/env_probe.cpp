// A client for the access tests: runs one offloadable call and prints how many
// jobs the agent did, so a test can run it plainly and as a process whose
// environment must not be trusted (AT_SECURE: setuid, or real uid != effective
// uid) and compare.
//   env_probe library            gpo_sha256_batch on 100 KB (the socket from GPO_SOCKET)
//   env_probe shim SOCKET SHIM   SHA256() through the shim's symbol on 1000 bytes,
//                                the library pointed at SOCKET (GPO_SHIM_MIN_BYTES decides)
#include <dlfcn.h>
#include <sys/auxv.h>

#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "gpuoffload.h"

int main(int argc, char** argv) {
  if (argc < 2) return 2;
  const std::string mode = argv[1];
  std::vector<unsigned char> msg(mode == "shim" ? 1000 : 100000, 'm');
  unsigned char d[32];
  if (mode == "library") {
    const void* p = msg.data();
    size_t n = msg.size();
    if (gpo_sha256_batch(&p, &n, 1, d) != GPO_OK) return 3;
  } else if (mode == "shim" && argc >= 4) {
    gpo_set_socket(argv[2]);
    void* h = dlopen(argv[3], RTLD_NOW | RTLD_LOCAL);
    if (!h) return 4;
    using Sha = unsigned char* (*)(const unsigned char*, size_t, unsigned char*);
    auto sha = reinterpret_cast<Sha>(dlsym(h, "SHA256"));
    if (!sha || !sha(msg.data(), msg.size(), d)) return 5;
  } else {
    return 2;
  }
  gpo_client_stats s{};
  gpo_get_stats(&s);
  std::printf("secure=%lu by_agent=%llu\n", getauxval(AT_SECURE), (unsigned long long)s.by_agent);
  return 0;
}
