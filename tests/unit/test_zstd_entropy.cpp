// zstd stage 2 on the CPU: the block encoder that the GPU runs
// (zstd_entropy_block.h), fed with sequences from libzstd's own parser
// (ZSTD_generateSequences) and from stage 1's CPU finder; every frame must
// decompress with libzstd to the input, over the data kinds and sizes of
// zstd_entropy_data.h, and come within a few percent of zstd's own entropy coding.
#define ZSTD_STATIC_LINKING_ONLY
#include <gtest/gtest.h>
#include <zstd.h>

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "unit/zstd_entropy_data.h"
#include "kernels/zstd/zstd_entropy_block.h"
#include "kernels/zstd/zstd_entropy.h"
#include "kernels/zstd/zstd_find.h"

namespace {

using gpo::zstd::gpu::BlockDesc;
using gpo::zstd::gpu::Sequence;
namespace ent = gpo::zstd::entropy;
namespace data = gpo::test::zstd_data;

struct Parsed {
  std::vector<BlockDesc> blocks;
  std::vector<Sequence> seqs;
  uint32_t window_log = ent::kWindowLog;
};

// libzstd's parse at level: its blocks and sequences in stage 1's layout.
Parsed parse_with_libzstd(const std::vector<uint8_t>& in, int level) {
  Parsed p;
  if (in.empty()) return p;
  ZSTD_CCtx* cc = ZSTD_createCCtx();
  ZSTD_CCtx_setParameter(cc, ZSTD_c_compressionLevel, level);
  std::vector<ZSTD_Sequence> zs(in.size() + in.size() / 1024 + 16);
  const size_t n = ZSTD_generateSequences(cc, zs.data(), zs.size(), in.data(), in.size());
  ZSTD_freeCCtx(cc);
  EXPECT_FALSE(ZSTD_isError(n)) << ZSTD_getErrorName(n);
  if (ZSTD_isError(n)) return p;
  BlockDesc cur{};
  uint64_t pos = 0, maxoff = 1;
  cur.seq_first = 0;
  for (size_t i = 0; i < n; ++i) {
    const ZSTD_Sequence& s = zs[i];
    if (s.offset == 0 && s.matchLength == 0) {  // block delimiter: trailing literals
      cur.len += s.litLength;
      cur.trailing_literals = s.litLength;
      cur.src = pos;
      cur.pos = uint32_t(pos);
      pos += cur.len;
      p.blocks.push_back(cur);
      cur = BlockDesc{};
      cur.seq_first = uint32_t(p.seqs.size());
      continue;
    }
    p.seqs.push_back({s.litLength, s.matchLength, s.offset});
    cur.seq_count++;
    cur.len += s.litLength + s.matchLength;
    maxoff = std::max<uint64_t>(maxoff, s.offset);
  }
  // libzstd reports no sequences for a tail it stores raw: literals only.
  while (pos < in.size()) {
    BlockDesc b{};
    b.len = uint32_t(std::min<uint64_t>(in.size() - pos, 128 * 1024));
    b.src = pos;
    b.pos = uint32_t(pos);
    b.seq_first = uint32_t(p.seqs.size());
    b.trailing_literals = b.len;
    p.blocks.push_back(b);
    pos += b.len;
  }
  p.window_log = 17;
  while ((uint64_t(1) << p.window_log) < maxoff) p.window_log++;
  return p;
}

// Stage 1's CPU finder (the GPU finder's twin).
Parsed parse_with_stage1(const std::vector<uint8_t>& in) {
  data::ParsedInput s = data::stage1_parse("", in);
  return {std::move(s.blocks), std::move(s.seqs)};
}

std::vector<uint8_t> encode(const std::vector<uint8_t>& in, const Parsed& p) {
  std::vector<uint8_t> out(ent::frame_bound(in.size()));
  const size_t n = ent::cpu_encode_frame(in.data(), p.blocks, p.seqs.data(), in.size(), p.window_log, out.data(),
                                         out.size());
  EXPECT_GT(n, 0u);
  out.resize(n);
  return out;
}

void expect_round_trip(const std::vector<uint8_t>& in, const std::vector<uint8_t>& frame, const std::string& what) {
  EXPECT_EQ(ZSTD_getFrameContentSize(frame.data(), frame.size()), in.size()) << what;
  std::vector<uint8_t> back(in.size() + 1);
  const size_t r = ZSTD_decompress(back.data(), back.size(), frame.data(), frame.size());
  ASSERT_FALSE(ZSTD_isError(r)) << what << ": " << ZSTD_getErrorName(r);
  ASSERT_EQ(r, in.size()) << what;
  back.resize(r);
  EXPECT_TRUE(back == in) << what << ": content differs";
}

size_t zstd_size(const std::vector<uint8_t>& in, int level) {
  std::vector<uint8_t> c(ZSTD_compressBound(in.size()));
  return ZSTD_compress(c.data(), c.size(), in.data(), in.size(), level);
}

TEST(ZstdEntropy, RoundTripLibzstdSequencesAllKindsAndSizes) {
  for (const auto& k : data::kinds())
    for (size_t n : data::sizes()) {
      const auto in = k.make(n);
      const auto frame = encode(in, parse_with_libzstd(in, 1));
      expect_round_trip(in, frame, std::string(k.name) + " " + std::to_string(n));
      EXPECT_LE(frame.size(), ent::frame_bound(n));
    }
}

TEST(ZstdEntropy, RoundTripStage1Sequences) {
  for (const auto& k : data::kinds())
    for (size_t n : data::sizes()) {
      const auto in = k.make(n);
      const auto frame = encode(in, parse_with_stage1(in));
      expect_round_trip(in, frame, std::string(k.name) + " " + std::to_string(n) + " (stage 1)");
    }
}

// Bigger inputs through libzstd level 3's parse (longer matches, repcodes).
TEST(ZstdEntropy, RoundTripLevel3Parse) {
  for (const auto& k : data::kinds()) {
    const auto in = k.make((2 << 20) + 3);
    expect_round_trip(in, encode(in, parse_with_libzstd(in, 3)), std::string(k.name) + " level-3 parse");
  }
}

// Fed libzstd's own level-1 parse, the entropy stage alone must come close to
// zstd -1 (independent blocks cost a little: no table reuse across blocks).
TEST(ZstdEntropy, RatioCloseToLibzstdOnSameParse) {
  for (const char* name : {"text", "binary", "mixed"}) {
    const auto& k = *std::find_if(data::kinds().begin(), data::kinds().end(),
                                  [&](const data::Kind& x) { return std::string(x.name) == name; });
    const auto in = k.make(4 << 20);
    const size_t ours = encode(in, parse_with_libzstd(in, 1)).size();
    const size_t ref = zstd_size(in, 1);
    const size_t s1 = encode(in, parse_with_stage1(in)).size();
    std::printf("%-8s in %zu  zstd -1 %zu  ours(libzstd parse) %zu (%.3f)  ours(stage-1 parse) %zu (%.3f)  zstd -3 %zu\n",
                name, in.size(), ref, ours, double(ours) / double(ref), s1, double(s1) / double(ref), zstd_size(in, 3));
    EXPECT_LE(double(ours), 1.05 * double(ref)) << name;
  }
}

// The frames go through the `zstd` command line tool too (streaming decoder,
// window limits of a real reader) when it is installed.
TEST(ZstdEntropy, ZstdCliDecompresses) {
  if (access("/usr/bin/zstd", X_OK) != 0) GTEST_SKIP() << "no /usr/bin/zstd";
  char dir[] = "/tmp/gpo-zstd-entropy-XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  for (const char* name : {"text", "binary", "mixed"}) {
    const auto& k = *std::find_if(data::kinds().begin(), data::kinds().end(),
                                  [&](const data::Kind& x) { return std::string(x.name) == name; });
    for (size_t n : {size_t(0), size_t(200 * 1024), size_t(5 << 20) + 7}) {
      const auto in = k.make(n);
      const auto frame = encode(in, parse_with_stage1(in));
      const std::string zf = std::string(dir) + "/f.zst", raw = std::string(dir) + "/f";
      FILE* f = std::fopen(zf.c_str(), "wb");
      ASSERT_NE(f, nullptr);
      const size_t wrote = std::fwrite(frame.data(), 1, frame.size(), f);
      ASSERT_EQ(wrote, frame.size());
      std::fclose(f);
      const std::string cmd = "/usr/bin/zstd -q -d -f " + zf + " -o " + raw;
      ASSERT_EQ(std::system(cmd.c_str()), 0) << name << " " << n;
      const auto back = data::read_prefix(raw, n + 1);
      EXPECT_TRUE(back == in) << name << " " << n;
      std::remove(zf.c_str());
      std::remove(raw.c_str());
    }
  }
  rmdir(dir);
}

// Literals with more than 128 distinct weights force FSE-compressed Huffman
// weights; a small alphabet gives direct weights; one value gives RLE.
TEST(ZstdEntropy, LiteralModes) {
  for (int alphabet : {2, 5, 40, 120, 200, 256}) {
    std::vector<uint8_t> in(100000);
    std::mt19937 rng(alphabet);
    std::geometric_distribution<int> g(0.03);
    for (auto& b : in) b = uint8_t(std::min(alphabet - 1, g(rng)) * (256 / alphabet));
    for (auto& b : in) b = uint8_t(b + (alphabet == 256 ? 0 : 0));
    const auto frame = encode(in, parse_with_libzstd(in, 1));
    expect_round_trip(in, frame, "alphabet " + std::to_string(alphabet));
  }
}

// The Huffman builder: lengths <= 11, a complete prefix code (Kraft sum 1),
// even for the skewed counts that make a plain Huffman tree deeper than 11.
TEST(ZstdEntropy, HuffmanLengthLimitAndKraft) {
  for (int kind = 0; kind < 3; ++kind) {
    uint32_t hist[256] = {};
    uint32_t f0 = 1, f1 = 1;
    for (int s = 0; s < 256; ++s) {
      if (kind == 0) {  // Fibonacci counts: a plain Huffman tree ~ 40 deep
        hist[s] = s < 30 ? f0 : 0;
        const uint32_t t = f0 + f1;
        f0 = f1;
        f1 = t;
      } else if (kind == 1) {
        hist[s] = 1;
      } else {
        hist[s] = (s % 7 == 0) ? 100000 : (s % 3);
      }
    }
    gpo::zstd::enc::HufTable t;
    gpo::zstd::enc::huf_build(hist, t);
    uint64_t kraft = 0;
    for (int s = 0; s < 256; ++s) {
      if (hist[s] == 0) {
        EXPECT_EQ(t.len[s], 0);
        continue;
      }
      ASSERT_GE(t.len[s], 1);
      ASSERT_LE(t.len[s], gpo::zstd::enc::kHufMaxBits);
      kraft += uint64_t(1) << (gpo::zstd::enc::kHufMaxBits - t.len[s]);
    }
    EXPECT_EQ(kraft, uint64_t(1) << gpo::zstd::enc::kHufMaxBits) << "kind " << kind;
  }
}

// The GPU ranks the symbols in parallel and hands the order to huf_build:
// the table must be the one the CPU builds from the histogram alone.
TEST(ZstdEntropy, HuffmanPresortedOrderSameTable) {
  std::mt19937 rng(5);
  for (int round = 0; round < 200; ++round) {
    uint32_t hist[256] = {};
    const int present = 2 + int(rng() % 255);
    for (int k = 0; k < present; ++k) hist[rng() % 256] = 1 + (round % 3 == 0 ? rng() % 4 : rng() % 5000);
    uint8_t order[256];
    gpo::zstd::enc::huf_rank_symbols(hist, order);  // the kernel's ranks
    gpo::zstd::enc::HufTable a, b;
    gpo::zstd::enc::huf_build(hist, a);
    gpo::zstd::enc::huf_build(hist, b, order);
    ASSERT_EQ(a.max_bits, b.max_bits);
    for (int s = 0; s < 256; ++s) {
      ASSERT_EQ(a.len[s], b.len[s]) << round << " " << s;
      ASSERT_EQ(a.code[s], b.code[s]) << round << " " << s;
    }
  }
}

// Codes by range arithmetic (what both encoders use) against the RFC's base
// and extra-bit tables, for every length a block can have; extra bits are the
// low bits of the value (every base is a multiple of 1 << bits).
TEST(ZstdEntropy, SequenceCodesMatchRfcTables) {
  namespace enc = gpo::zstd::enc;
  for (uint32_t ll = 0; ll < 131072; ++ll) {
    const uint32_t c = enc::ll_code(ll);
    ASSERT_LE(c, 35u) << ll;
    ASSERT_LE(enc::ll_base(c), ll) << ll;
    if (c < 35) {
      ASSERT_LT(ll, enc::ll_base(c + 1)) << ll;
    }
    ASSERT_EQ(enc::ll_code_bits(c), enc::ll_bits(c)) << c;
    ASSERT_EQ(ll - enc::ll_base(c), ll & ((1u << enc::ll_bits(c)) - 1)) << ll;
  }
  for (uint32_t ml = 3; ml < 131075; ++ml) {
    const uint32_t c = enc::ml_code(ml);
    ASSERT_LE(c, 52u) << ml;
    ASSERT_LE(enc::ml_base(c), ml) << ml;
    if (c < 52) {
      ASSERT_LT(ml, enc::ml_base(c + 1)) << ml;
    }
    ASSERT_EQ(enc::ml_code_bits(c), enc::ml_bits(c)) << c;
    ASSERT_EQ(ml - enc::ml_base(c), (ml - 3) & ((1u << enc::ml_bits(c)) - 1)) << ml;
  }
}

// The sequence shapes of the GPU test (the most sequences per block, one per
// block, RLE streams, long codes, none), through the CPU encoder and libzstd.
TEST(ZstdEntropy, RoundTripSequenceShapes) {
  for (int shape = 0; shape < data::kShapes; ++shape) {
    const data::Shaped sh = data::make_shape(shape);
    size_t b0 = 0;
    for (size_t i = 0; i < sh.inputs.size(); ++i) {
      size_t nb = 0;
      while (b0 + nb < sh.blocks.size() && sh.blocks[b0 + nb].input == i) nb++;
      std::vector<uint8_t> frame(ent::frame_bound(sh.inputs[i].size()));
      frame.resize(ent::cpu_encode_frame(sh.batch.data(), {sh.blocks.data() + b0, nb}, sh.seqs.data(),
                                         sh.inputs[i].size(), ent::kWindowLog, frame.data(), frame.size()));
      b0 += nb;
      expect_round_trip(sh.inputs[i], frame, "shape " + std::to_string(shape) + " input " + std::to_string(i));
      if (shape == 0 && sh.inputs[i].size() >= 131072) {
        EXPECT_LT(frame.size(), sh.inputs[i].size() / 2);
      }
    }
  }
}

}  // namespace
