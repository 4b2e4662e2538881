// The suite registry: every suite of gpuoffload-bench, in the order a run of
// all of them takes. A new suite: a new bench/<name>.cpp that defines its
// run_<name>(), declared and listed here.
#include "bench/bench.h"

namespace gpo::bench {

int run_zlib_crc32_memcpy(const Options&, std::vector<Table>&);
int run_match(const Options&, std::vector<Table>&);
int run_crypto(const Options&, std::vector<Table>&);
int run_cpu_pool(const Options&, std::vector<Table>&);
int run_handoff(const Options&, std::vector<Table>&);
int run_planner(const Options&, std::vector<Table>&);
int run_classify(const Options&, std::vector<Table>&);
int run_xdp(const Options&, std::vector<Table>&);
int run_rules_load(const Options&, std::vector<Table>&);
int run_spot(const Options&, std::vector<Table>&);
#ifdef GPUOFFLOAD_HAVE_CUDA
int run_zstd(const Options&, std::vector<Table>&);
int run_zstd_stage2(const Options&, std::vector<Table>&);
#endif

namespace {
const Suite kSuites[] = {
    {"zlib-crc32-memcpy",
     "CRC-32 (GPU kernel, end to end, zlib 1/all cores), memcpy through the GPU vs libc, zlib compress2", false,
     run_zlib_crc32_memcpy},
    {"match", "payload multi-pattern matching: GPU kernel / e2e, CPU Aho-Corasick, Hyperscan", false, run_match},
    {"crypto", "AES-256-GCM/CTR and SHA-256: GPU kernel, GPU end to end, OpenSSL 1 core and all cores", false,
     run_crypto},
    {"cpu-pool",
     "small jobs on the CPU pool of N threads against per-thread loops over the same jobs (own buffer, own "
     "slice, chunks from one counter): what each step costs (--set threads=8,16 chunk=BYTES rounds=N)",
     false, run_cpu_pool},
    {"handoff",
     "handing work to another thread: a sleeping thread woken on another CPU and on the same CPU, a spinning one; "
     "the step a job sent to the agent takes three times (--set samples=N idle_us=U,V)",
     false, run_handoff},
    {"planner",
     "mixed workload CPU-only vs GPU-only vs planned, per job size; fails when planned is more than "
     "--set tolerance=5 (%) slower than the better (--set profile=PATH, objective=time|cpu, doubt=10)",
     true, run_planner},
    {"classify", "packet classifier: GPU kernel / e2e vs CPU classifier, Hyperscan, rte_acl", false, run_classify},
    {"xdp",
     "packet filter on veth: zero-loss rates (cached flows inline/host, the agent path) next to "
     "XDP_DROP of the same veth; new flows decided per second and per agent core, CPU and GPU "
     "classifier, 1..N workers (root)",
     false, run_xdp},
    {"rules-load", "ET-shaped 10K and 50K rule sets: load time, memory, classification CPU vs GPU", false,
     run_rules_load},
    {"spot",
     "what spotting costs the spotted thread: ns per EVP_EncryptUpdate / crc32 call without an agent, in sample "
     "and in probe mode; probe at entry vs where the agent puts it (root; --set small=B --set large=B)",
     false, run_spot},
#ifdef GPUOFFLOAD_HAVE_CUDA
    {"zstd", "zstd compression: GPU match finding + libzstd entropy (stage 1) vs zstd -1/-3", true, run_zstd},
    {"zstd-stage2", "zstd with GPU entropy coding (stage 2): ratio vs zstd -1/-3, GB/s vs libzstd", true,
     run_zstd_stage2},
#endif
};
}  // namespace

std::span<const Suite> suites() { return kSuites; }

const Suite* find_suite(std::string_view name) {
  for (const auto& s : suites())
    if (s.name == name) return &s;
  return nullptr;
}

}  // namespace gpo::bench
