// The glue between sequences found beforehand (by the GPU, or any source with
// zstd_find.h's layout) and libzstd: a block-level sequence producer
// (ZSTD_registerSequenceProducer, static-linking-only API, exported by
// libzstd.so since 1.5.4) that hands libzstd the sequences of the block it is
// compressing. libzstd does the rest (repcodes, Huffman, FSE, frame), so the
// output is a standard frame by construction.
#define ZSTD_STATIC_LINKING_ONLY
#include <zstd.h>

#include <algorithm>
#include <memory>

#include "kernels/zstd/zstd_find.h"

namespace gpo::zstd::gpu {
namespace {

struct ProducerState {
  const uint8_t* in = nullptr;
  size_t in_size = 0;
  std::span<const BlockDesc> blocks;
  const Sequence* seqs = nullptr;
  size_t next = 0;  // the block libzstd most likely asks for next
  unsigned fallbacks = 0;
};

const BlockDesc* block_at(ProducerState& st, uint64_t pos) {
  if (st.next < st.blocks.size() && st.blocks[st.next].pos == pos) return &st.blocks[st.next++];
  // libzstd skips the producer for tiny blocks, and could cut differently: search.
  auto it = std::lower_bound(st.blocks.begin(), st.blocks.end(), pos,
                             [](const BlockDesc& b, uint64_t p) { return b.pos < p; });
  if (it == st.blocks.end() || it->pos != pos) return nullptr;
  st.next = size_t(it - st.blocks.begin()) + 1;
  return &*it;
}

size_t produce(void* state, ZSTD_Sequence* out, size_t cap, const void* src, size_t src_size, const void* /*dict*/,
               size_t dict_size, int /*level*/, size_t window) {
  auto& st = *static_cast<ProducerState*>(state);
  const auto* s = static_cast<const uint8_t*>(src);
  // One-shot ZSTD_compress2 compresses from the caller's buffer, so src lies in
  // the input; anything else (a copy, a dictionary) goes to libzstd's finder.
  if (s < st.in || s + src_size > st.in + st.in_size || dict_size) {
    st.fallbacks++;
    return ZSTD_SEQUENCE_PRODUCER_ERROR;
  }
  const uint64_t pos = uint64_t(s - st.in);
  const BlockDesc* b = block_at(st, pos);
  if (!b || b->len != src_size || size_t(b->seq_count) + 1 > cap) {
    st.fallbacks++;
    return ZSTD_SEQUENCE_PRODUCER_ERROR;
  }
  const Sequence* q = st.seqs + b->seq_first;
  uint64_t at = pos;  // input offset where the next sequence's match starts, after its literals
  for (uint32_t i = 0; i < b->seq_count; ++i) {
    at += q[i].lit_len;
    if (q[i].offset == 0 || q[i].offset > window || q[i].offset > at || q[i].match_len < ZSTD_MINMATCH_MIN) {
      st.fallbacks++;
      return ZSTD_SEQUENCE_PRODUCER_ERROR;
    }
    out[i] = ZSTD_Sequence{q[i].offset, q[i].lit_len, q[i].match_len, 0};
    at += q[i].match_len;
  }
  if (at + b->trailing_literals != pos + src_size) {
    st.fallbacks++;
    return ZSTD_SEQUENCE_PRODUCER_ERROR;
  }
  // The last literals: a sequence with no match (and offset 0).
  out[b->seq_count] = ZSTD_Sequence{0, b->trailing_literals, 0, 0};
  return size_t(b->seq_count) + 1;
}

struct FreeCCtx {
  void operator()(ZSTD_CCtx* c) const { ZSTD_freeCCtx(c); }
};

}  // namespace

size_t compress_with_sequences(std::span<const uint8_t> in, std::span<const BlockDesc> blocks,
                               const Sequence* seqs, std::span<uint8_t> out, int level, bool* error,
                               unsigned* fallbacks) {
  thread_local std::unique_ptr<ZSTD_CCtx, FreeCCtx> ctx{ZSTD_createCCtx()};
  *error = true;
  if (!ctx) return 0;
  ProducerState st;
  st.in = in.data();
  st.in_size = in.size();
  st.blocks = blocks;
  st.seqs = seqs;
  ZSTD_CCtx* c = ctx.get();
  ZSTD_CCtx_reset(c, ZSTD_reset_session_and_parameters);
  if (ZSTD_isError(ZSTD_CCtx_setParameter(c, ZSTD_c_compressionLevel, level)) ||
      ZSTD_isError(ZSTD_CCtx_setParameter(c, ZSTD_c_enableSeqProducerFallback, 1)) ||
      // Not supported with a sequence producer; off by default for these windows, said explicitly.
      ZSTD_isError(ZSTD_CCtx_setParameter(c, ZSTD_c_enableLongDistanceMatching, ZSTD_ps_disable)))
    return 0;
  ZSTD_registerSequenceProducer(c, &st, produce);
  const size_t r = ZSTD_compress2(c, out.data(), out.size(), in.data(), in.size());
  // The state lives on this stack: leave no pointer to it in the thread's context.
  ZSTD_registerSequenceProducer(c, nullptr, nullptr);
  if (fallbacks) *fallbacks = st.fallbacks;
  if (ZSTD_isError(r)) return 0;
  *error = false;
  return r;
}

}  // namespace gpo::zstd::gpu
