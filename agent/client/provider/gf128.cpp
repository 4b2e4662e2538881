#include "provider/gf128.h"

#if defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>
#endif

namespace gpo::provider::gf128 {

U128 load(const uint8_t p[16]) {
  U128 v;
  for (int i = 0; i < 8; ++i) v.hi = v.hi << 8 | p[i];
  for (int i = 8; i < 16; ++i) v.lo = v.lo << 8 | p[i];
  return v;
}

void store(U128 v, uint8_t p[16]) {
  for (int i = 7; i >= 0; --i, v.hi >>= 8) p[i] = uint8_t(v.hi);
  for (int i = 15; i >= 8; --i, v.lo >>= 8) p[i] = uint8_t(v.lo);
}

U128 mul_bitwise(U128 x, U128 y) {
  U128 z, v = y;
  for (int i = 0; i < 128; ++i) {
    const uint64_t bit = i < 64 ? (x.hi >> (63 - i)) & 1 : (x.lo >> (127 - i)) & 1;
    if (bit) z = z ^ v;
    const uint64_t lsb = v.lo & 1;
    v.lo = (v.lo >> 1) | (v.hi << 63);
    v.hi >>= 1;
    if (lsb) v.hi ^= 0xe100000000000000ull;  // R = 11100001 || 0^120
  }
  return z;
}

#if defined(__x86_64__)
namespace {

// Intel's carry-less multiplication white paper (Gueron, Kounavis), Figure 5:
// the operands byte-reflected (U128's hi/lo as the two 64-bit lanes are exactly
// that), a 256-bit product by four PCLMULQDQs, shifted left by one for the
// bit reflection, reduced modulo x^128 + x^7 + x^2 + x + 1.
__attribute__((target("pclmul,sse4.1"))) U128 mul_clmul(U128 x, U128 y) {
  const __m128i a = _mm_set_epi64x(int64_t(x.hi), int64_t(x.lo));
  const __m128i b = _mm_set_epi64x(int64_t(y.hi), int64_t(y.lo));
  __m128i t3 = _mm_clmulepi64_si128(a, b, 0x00);
  __m128i t4 = _mm_clmulepi64_si128(a, b, 0x10);
  __m128i t5 = _mm_clmulepi64_si128(a, b, 0x01);
  __m128i t6 = _mm_clmulepi64_si128(a, b, 0x11);
  t4 = _mm_xor_si128(t4, t5);
  t5 = _mm_slli_si128(t4, 8);
  t4 = _mm_srli_si128(t4, 8);
  t3 = _mm_xor_si128(t3, t5);
  t6 = _mm_xor_si128(t6, t4);
  __m128i t7 = _mm_srli_epi32(t3, 31);
  __m128i t8 = _mm_srli_epi32(t6, 31);
  t3 = _mm_slli_epi32(t3, 1);
  t6 = _mm_slli_epi32(t6, 1);
  __m128i t9 = _mm_srli_si128(t7, 12);
  t8 = _mm_slli_si128(t8, 4);
  t7 = _mm_slli_si128(t7, 4);
  t3 = _mm_or_si128(t3, t7);
  t6 = _mm_or_si128(t6, t8);
  t6 = _mm_or_si128(t6, t9);
  t7 = _mm_slli_epi32(t3, 31);
  t8 = _mm_slli_epi32(t3, 30);
  t9 = _mm_slli_epi32(t3, 25);
  t7 = _mm_xor_si128(t7, t8);
  t7 = _mm_xor_si128(t7, t9);
  t8 = _mm_srli_si128(t7, 4);
  t7 = _mm_slli_si128(t7, 12);
  t3 = _mm_xor_si128(t3, t7);
  __m128i t2 = _mm_srli_epi32(t3, 1);
  t4 = _mm_srli_epi32(t3, 2);
  t5 = _mm_srli_epi32(t3, 7);
  t2 = _mm_xor_si128(t2, t4);
  t2 = _mm_xor_si128(t2, t5);
  t2 = _mm_xor_si128(t2, t8);
  t3 = _mm_xor_si128(t3, t2);
  t6 = _mm_xor_si128(t6, t3);
  return {uint64_t(_mm_extract_epi64(t6, 1)), uint64_t(_mm_extract_epi64(t6, 0))};
}

// One CPUID (leaf 1), at the first multiplication. Not __builtin_cpu_supports:
// that links libgcc's CPU model, whose constructor runs a dozen CPUIDs in
// every process that loads the provider, and each CPUID traps to the
// hypervisor in a virtual machine (about 0.25 ms a process on such a host).
bool have_clmul() {
  static const bool have = [] {
    unsigned a = 0, b = 0, c = 0, d = 0;
    return __get_cpuid(1, &a, &b, &c, &d) && (c & bit_PCLMUL) && (c & bit_SSE4_1);
  }();
  return have;
}

}  // namespace
#endif

U128 mul(U128 x, U128 y) {
#if defined(__x86_64__)
  if (have_clmul()) return mul_clmul(x, y);
#endif
  return mul_bitwise(x, y);
}

void Powers::reset(U128 h) {
  p2_[0] = h;
  for (int i = 1; i < 32; ++i) p2_[i] = mul(p2_[i - 1], p2_[i - 1]);
}

U128 Powers::pow(uint64_t n) const {
  U128 r{0x8000000000000000ull, 0};  // the field's 1 (x^0 is the first bit)
  for (int i = 0; i < 32 && n; ++i, n >>= 1)
    if (n & 1) r = mul(r, p2_[i]);
  return r;
}

}  // namespace gpo::provider::gf128
