// Stage 2 on the CPU: the same block encoder as the GPU (zstd_entropy_block.h),
// one block after the other. The reference the GPU test compares bit for bit.
#include <vector>

#include "kernels/zstd/zstd_entropy_block.h"
#include "kernels/zstd/zstd_entropy.h"

namespace gpo::zstd::entropy {

size_t frame_bound(uint64_t n) { return enc::frame_bound(n); }

size_t cpu_encode_frame(const uint8_t* in, std::span<const BlockDesc> blocks, const Sequence* seqs,
                        uint64_t input_size, uint32_t window_log, uint8_t* out, size_t cap) {
  if (cap < enc::frame_bound(input_size)) return 0;
  size_t p = enc::write_frame_header(out, input_size, window_log);
  if (blocks.empty()) {
    enc::write_block_header(out + p, true, 0, 0);
    return p + 3;
  }
  std::vector<uint8_t> lits(enc::kMaxBlock);
  std::vector<uint32_t> ofv(enc::kMaxBlock / 3 + 1);
  const enc::BlockScratch ws{lits.data(), ofv.data()};
  for (const BlockDesc& b : blocks) {
    const bool last = uint64_t(b.pos) + b.len == input_size;
    p += enc::encode_block(in + b.src, b.len, seqs + b.seq_first, b.seq_count, b.pos == 0, last, ws, out + p);
  }
  return p;
}

}  // namespace gpo::zstd::entropy
