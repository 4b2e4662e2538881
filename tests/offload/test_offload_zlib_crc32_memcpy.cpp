// libgpuoffload's zlib compress2, CRC-32 and memcpy against zlib and the
// input, through the real agent component (in-process, CPU backend, socket
// doorbell) and without any agent: the CRC-32 check value, empty/odd/large
// sizes, chaining with a non-zero initial crc, compress2 byte-identical at
// levels -1..9 and read back by uncompress, the library's errors = zlib's.
#include <gtest/gtest.h>
#include <zlib.h>

#include "gpuoffload.h"
#include "offload/offload_fixture.h"

using namespace gpo::test;

namespace {

class OffloadZlibCrc32Memcpy : public OffloadPathTest {
 protected:
  OffloadZlibCrc32Memcpy() : OffloadPathTest("zlib-crc32-memcpy", true) {}
};

uint32_t zlib_crc(uint32_t init, const Bytes& b, size_t off = 0, size_t n = SIZE_MAX) {
  static const uint8_t empty = 0;
  n = std::min(n, b.size() - off);
  return uint32_t(crc32_z(init, n ? b.data() + off : &empty, n));
}

TEST_P(OffloadZlibCrc32Memcpy, Crc32CheckValueAndChaining) {
  const char* s = "123456789";
  uint32_t c = 0;
  ASSERT_EQ(gpo_crc32(0, s, 9, &c), GPO_OK);
  EXPECT_EQ(c, 0xCBF43926u);
  uint32_t a = 0, b = 0;
  ASSERT_EQ(gpo_crc32(0, s, 4, &a), GPO_OK);
  ASSERT_EQ(gpo_crc32(a, s + 4, 5, &b), GPO_OK);
  EXPECT_EQ(b, 0xCBF43926u) << "crc(\"1234\") continued over \"56789\"";
  ASSERT_EQ(gpo_crc32(0xdeadbeef, nullptr, 0, &c), GPO_OK);
  EXPECT_EQ(c, 0xdeadbeefu) << "no bytes: the crc passed in";
  EXPECT_EQ(gpo_crc32(0, s, 9, nullptr), GPO_ERR_INVALID);
}

TEST_P(OffloadZlibCrc32Memcpy, Crc32MatchesZlibOnEmptyOddAndLargeSizes) {
  Bytes data = random_bytes((size_t{3} << 20) + 64, 77);
  uint32_t seed = 1;
  for (size_t n : {size_t{0}, size_t{1}, size_t{3}, size_t{4}, size_t{63}, size_t{4095}, size_t{65536},
                   (size_t{1} << 20) + 7, size_t{3} << 20})
    for (size_t off : {size_t{0}, size_t{5}}) {
      const uint32_t init = off ? seed * 2654435761u : 0;
      ++seed;
      uint32_t c = 0;
      ASSERT_EQ(gpo_crc32(init, data.data() + off, n, &c), GPO_OK);
      EXPECT_EQ(c, zlib_crc(init, data, off, n)) << "len " << n << " init " << init;
    }
}

TEST_P(OffloadZlibCrc32Memcpy, Crc32AsyncManyInFlightWithInitialCrcs) {
  Bytes data = random_bytes(1 << 20, 5);
  constexpr int kJobs = 200;
  std::vector<gpo_handle*> hs(kJobs);
  std::vector<std::array<uint8_t, 4>> outs(kJobs);
  for (int i = 0; i < kJobs; ++i) {
    gpo_request r{};
    r.op = GPO_CRC32;
    r.in = data.data() + i * 997;
    r.in_len = size_t(i) * 331;  // 6.6 MB in all: fits the 16 MiB slab
    r.out = outs[i].data();
    r.out_cap = 4;
    r.crc = uint32_t(i) * 0x9e3779b9u;
    ASSERT_EQ(gpo_submit(&r, &hs[i]), GPO_OK);
  }
  for (int i = 0; i < kJobs; ++i) {
    size_t n = 0;
    ASSERT_EQ(gpo_wait(hs[i], &n), GPO_OK);
    EXPECT_EQ(n, 4u);
    const uint32_t got = uint32_t(outs[i][0]) | uint32_t(outs[i][1]) << 8 | uint32_t(outs[i][2]) << 16 |
                         uint32_t(outs[i][3]) << 24;
    EXPECT_EQ(got, zlib_crc(uint32_t(i) * 0x9e3779b9u, data, size_t(i) * 997, size_t(i) * 331)) << i;
  }
}

TEST_P(OffloadZlibCrc32Memcpy, ZlibCompressByteIdenticalAtEveryLevelAndRoundTrips) {
  for (size_t n : {size_t{0}, size_t{1}, size_t{100003}, size_t{1} << 20}) {
    Bytes in = text_bytes(n, uint32_t(n));
    for (int level = -1; level <= 9; ++level) {
      Bytes ref(compressBound(uLong(n)));
      uLongf rn = uLongf(ref.size());
      ASSERT_EQ(compress2(ref.data(), &rn, in.data(), uLong(n), level), Z_OK);
      ref.resize(rn);
      Bytes out(gpo_zlib_compress_bound(n));
      size_t on = 0;
      ASSERT_EQ(gpo_zlib_compress(out.data(), out.size(), in.data(), n, level, &on), GPO_OK) << n << " " << level;
      out.resize(on);
      EXPECT_EQ(out, ref) << "not byte-identical to compress2, len " << n << " level " << level;
      Bytes back(n + 1);
      uLongf bn = uLongf(back.size());
      ASSERT_EQ(uncompress(back.data(), &bn, out.data(), uLong(out.size())), Z_OK);
      back.resize(bn);
      EXPECT_EQ(back, in);
    }
  }
}

TEST_P(OffloadZlibCrc32Memcpy, ZlibCompressErrorsAreZlibs) {
  Bytes in = random_bytes(200000, 9), out(64);
  size_t n = 0;
  // compress2 says Z_BUF_ERROR; the library says the output does not fit.
  uLongf zn = uLongf(out.size());
  ASSERT_EQ(compress2(out.data(), &zn, in.data(), uLong(in.size()), 6), Z_BUF_ERROR);
  EXPECT_EQ(gpo_zlib_compress(out.data(), out.size(), in.data(), in.size(), 6, &n), GPO_ERR_DST_TOO_SMALL);
  // An invalid level: Z_STREAM_ERROR there, GPO_ERR_INVALID here.
  Bytes big(compressBound(uLong(in.size())));
  zn = uLongf(big.size());
  ASSERT_EQ(compress2(big.data(), &zn, in.data(), uLong(in.size()), 12), Z_STREAM_ERROR);
  EXPECT_EQ(gpo_zlib_compress(big.data(), big.size(), in.data(), in.size(), 12, &n), GPO_ERR_INVALID);
}

TEST_P(OffloadZlibCrc32Memcpy, MemcpyCopiesAndRefusesOverlap) {
  for (size_t n : {size_t{0}, size_t{1}, size_t{4097}, (size_t{1} << 20) + 3}) {
    Bytes in = random_bytes(n, uint32_t(n) + 1), out(n, 0xee);
    ASSERT_EQ(gpo_memcpy(out.data(), in.data(), n), GPO_OK);
    EXPECT_EQ(out, in) << n;
  }
  Bytes b = random_bytes(1000, 3);
  EXPECT_EQ(gpo_memcpy(b.data() + 10, b.data(), 500), GPO_ERR_INVALID) << "overlapping copy accepted";
}

INSTANTIATE_TEST_SUITE_P(Paths, OffloadZlibCrc32Memcpy, ::testing::Values(true, false),
                         [](const auto& i) { return i.param ? std::string("Agent") : std::string("NoAgent"); });

}  // namespace
