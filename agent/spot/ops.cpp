#include "spot/ops.h"

#include <fmt/format.h>

#include <cctype>
#include <charconv>

namespace gpo::spot {
namespace {
// Same order as enum gpo_spot_op.
constexpr std::string_view kNames[kOps] = {
    "evp_encrypt",        "evp_decrypt",        "evp_cipher",          "evp_digest",
    "sha256",             "zstd_compress",      "zstd_stream",         "zstd_decompress",
    "zlib_deflate",       "zlib_crc32",         "kern_skcipher_encrypt", "kern_skcipher_decrypt",
    "kern_aead_encrypt",  "kern_aead_decrypt",  "kern_zstd_compress",
};
static_assert(sizeof(kNames) / sizeof(kNames[0]) == GPO_SPOT_OP_MAX);
}  // namespace

std::string_view op_name(uint32_t op) { return op < kOps ? kNames[op] : "unknown"; }

std::optional<uint32_t> op_from_name(std::string_view name) {
  for (uint32_t i = 0; i < kOps; i++)
    if (kNames[i] == name) return i;
  return std::nullopt;
}

std::string_view lib_kind_name(LibKind k) {
  switch (k) {
    case LibKind::crypto: return "libcrypto";
    case LibKind::zstd: return "libzstd";
    case LibKind::zlib: return "zlib";
  }
  return "?";
}

const std::vector<UprobeSpec>& uprobe_specs() {
  static const std::vector<UprobeSpec> specs = {
      {LibKind::crypto, "EVP_EncryptUpdate", GPO_SPOT_E_EVP_ENCRYPT_UPDATE, GPO_SPOT_EVP_ENCRYPT},
      {LibKind::crypto, "EVP_DecryptUpdate", GPO_SPOT_E_EVP_DECRYPT_UPDATE, GPO_SPOT_EVP_DECRYPT},
      {LibKind::crypto, "EVP_CipherUpdate", GPO_SPOT_E_EVP_CIPHER_UPDATE, GPO_SPOT_EVP_CIPHER},
      {LibKind::crypto, "EVP_DigestUpdate", GPO_SPOT_E_EVP_DIGEST_UPDATE, GPO_SPOT_EVP_DIGEST},
      {LibKind::crypto, "SHA256", GPO_SPOT_E_SHA256, GPO_SPOT_SHA256},
      {LibKind::zstd, "ZSTD_compress", GPO_SPOT_E_ZSTD_COMPRESS, GPO_SPOT_ZSTD_COMPRESS},
      {LibKind::zstd, "ZSTD_compressCCtx", GPO_SPOT_E_ZSTD_COMPRESS_CCTX, GPO_SPOT_ZSTD_COMPRESS},
      {LibKind::zstd, "ZSTD_compress2", GPO_SPOT_E_ZSTD_COMPRESS2, GPO_SPOT_ZSTD_COMPRESS},
      {LibKind::zstd, "ZSTD_compressStream2", GPO_SPOT_E_ZSTD_COMPRESS_STREAM2, GPO_SPOT_ZSTD_STREAM},
      {LibKind::zstd, "ZSTD_decompress", GPO_SPOT_E_ZSTD_DECOMPRESS, GPO_SPOT_ZSTD_DECOMPRESS},
      {LibKind::zstd, "ZSTD_decompressDCtx", GPO_SPOT_E_ZSTD_DECOMPRESS_DCTX, GPO_SPOT_ZSTD_DECOMPRESS},
      {LibKind::zlib, "deflate", GPO_SPOT_E_DEFLATE, GPO_SPOT_ZLIB_DEFLATE},
      {LibKind::zlib, "compress2", GPO_SPOT_E_COMPRESS2, GPO_SPOT_ZLIB_DEFLATE},
      {LibKind::zlib, "crc32", GPO_SPOT_E_CRC32, GPO_SPOT_ZLIB_CRC32},
      {LibKind::zlib, "crc32_z", GPO_SPOT_E_CRC32_Z, GPO_SPOT_ZLIB_CRC32, "crc32"},
  };
  return specs;
}

const std::vector<KprobeSpec>& kprobe_specs() {
  static const std::vector<KprobeSpec> specs = {
      {"crypto_skcipher_encrypt", "kp_skcipher_encrypt", GPO_SPOT_KERN_SKCIPHER_ENC},
      {"crypto_skcipher_decrypt", "kp_skcipher_decrypt", GPO_SPOT_KERN_SKCIPHER_DEC},
      {"crypto_aead_encrypt", "kp_aead_encrypt", GPO_SPOT_KERN_AEAD_ENC},
      {"crypto_aead_decrypt", "kp_aead_decrypt", GPO_SPOT_KERN_AEAD_DEC},
      {"zstd_compress_cctx", "kp_zstd_compress_cctx", GPO_SPOT_KERN_ZSTD_COMPRESS},
  };
  return specs;
}

namespace {
// Same order as enum gpo_sample_op.
constexpr std::string_view kSampleNames[kSampleOps] = {
    "none",        "cipher",       "digest",           "zstd_compress", "zstd_decompress",   "zlib_deflate",
    "zlib_crc32",  "crypto_other", "zstd_other",       "zlib_other",    "kern_cipher",       "kern_zstd_compress",
};
static_assert(sizeof(kSampleNames) / sizeof(kSampleNames[0]) == GPO_SAMPLE_OP_MAX);

bool starts(std::string_view s, std::string_view p) { return s.substr(0, p.size()) == p; }
}  // namespace

std::string_view sample_op_name(uint32_t op) { return op < kSampleOps ? kSampleNames[op] : "unknown"; }

std::optional<uint32_t> sample_op_from_name(std::string_view name) {
  for (uint32_t i = 1; i < kSampleOps; i++)
    if (kSampleNames[i] == name) return i;
  return std::nullopt;
}

std::vector<uint32_t> probe_ops_of(uint32_t sample_op) {
  switch (sample_op) {
    case GPO_SAMPLE_CIPHER: return {GPO_SPOT_EVP_ENCRYPT, GPO_SPOT_EVP_DECRYPT, GPO_SPOT_EVP_CIPHER};
    case GPO_SAMPLE_DIGEST: return {GPO_SPOT_EVP_DIGEST, GPO_SPOT_SHA256};
    case GPO_SAMPLE_ZSTD_COMPRESS: return {GPO_SPOT_ZSTD_COMPRESS, GPO_SPOT_ZSTD_STREAM};
    case GPO_SAMPLE_ZSTD_DECOMPRESS: return {GPO_SPOT_ZSTD_DECOMPRESS};
    case GPO_SAMPLE_ZLIB_DEFLATE: return {GPO_SPOT_ZLIB_DEFLATE};
    case GPO_SAMPLE_ZLIB_CRC32: return {GPO_SPOT_ZLIB_CRC32};
    case GPO_SAMPLE_KERN_CIPHER:
      return {GPO_SPOT_KERN_SKCIPHER_ENC, GPO_SPOT_KERN_SKCIPHER_DEC, GPO_SPOT_KERN_AEAD_ENC, GPO_SPOT_KERN_AEAD_DEC};
    case GPO_SAMPLE_KERN_ZSTD_COMPRESS: return {GPO_SPOT_KERN_ZSTD_COMPRESS};
    default: return {};
  }
}

bool sample_op_is_kernel(uint32_t op) { return op == GPO_SAMPLE_KERN_CIPHER || op == GPO_SAMPLE_KERN_ZSTD_COMPRESS; }

std::optional<LibKind> sample_op_lib(uint32_t op) {
  switch (op) {
    case GPO_SAMPLE_CIPHER:
    case GPO_SAMPLE_DIGEST:
    case GPO_SAMPLE_CRYPTO_OTHER: return LibKind::crypto;
    case GPO_SAMPLE_ZSTD_COMPRESS:
    case GPO_SAMPLE_ZSTD_DECOMPRESS:
    case GPO_SAMPLE_ZSTD_OTHER: return LibKind::zstd;
    case GPO_SAMPLE_ZLIB_DEFLATE:
    case GPO_SAMPLE_ZLIB_CRC32:
    case GPO_SAMPLE_ZLIB_OTHER: return LibKind::zlib;
    default: return std::nullopt;
  }
}

uint32_t other_op_of(LibKind lib) {
  switch (lib) {
    case LibKind::crypto: return GPO_SAMPLE_CRYPTO_OTHER;
    case LibKind::zstd: return GPO_SAMPLE_ZSTD_OTHER;
    case LibKind::zlib: return GPO_SAMPLE_ZLIB_OTHER;
  }
  return GPO_SAMPLE_NONE;
}

// Exported functions only (Debian strips everything else): the entry points
// and the exported mode/compression functions right above the hidden
// assembler loops, so that a sample in a hidden loop finds one of them as a
// return address on its stack.
uint32_t classify_function(LibKind lib, std::string_view n) {
  switch (lib) {
    case LibKind::crypto:
      if (n == "EVP_EncryptUpdate" || n == "EVP_DecryptUpdate" || n == "EVP_CipherUpdate" || n == "EVP_Cipher" ||
          starts(n, "CRYPTO_ctr128_") || starts(n, "CRYPTO_gcm128_") || starts(n, "CRYPTO_cbc128_") ||
          starts(n, "CRYPTO_ccm128_") || starts(n, "CRYPTO_xts128_") || starts(n, "CRYPTO_ocb128_") ||
          starts(n, "CRYPTO_cfb128_") || starts(n, "CRYPTO_ofb128_") || starts(n, "AES_"))
        return GPO_SAMPLE_CIPHER;
      if (n == "EVP_DigestUpdate" || n == "EVP_Digest" || n == "EVP_Q_digest" || starts(n, "SHA256") ||
          starts(n, "SHA224"))
        return GPO_SAMPLE_DIGEST;
      return GPO_SAMPLE_NONE;
    case LibKind::zstd:
      if (starts(n, "ZSTD_compress") || n == "ZSTD_endStream" || n == "ZSTD_flushStream") return GPO_SAMPLE_ZSTD_COMPRESS;
      if (starts(n, "ZSTD_decompress")) return GPO_SAMPLE_ZSTD_DECOMPRESS;
      return GPO_SAMPLE_NONE;
    case LibKind::zlib:
      if (starts(n, "deflate") || n == "compress" || n == "compress2" || n == "gzwrite" || n == "gzfwrite")
        return GPO_SAMPLE_ZLIB_DEFLATE;
      if (starts(n, "crc32")) return GPO_SAMPLE_ZLIB_CRC32;
      return GPO_SAMPLE_NONE;
  }
  return GPO_SAMPLE_NONE;
}

// The kernel's symbol table has every function, so its hot loops are named:
// the AES-NI / generic AES code and the GCM/CTR glue, and lib/zstd's compressor.
uint32_t classify_kernel_function(std::string_view n) {
  if (starts(n, "aesni_") || starts(n, "aes_ctr_") || starts(n, "aes_gcm_") || starts(n, "aes_encrypt") ||
      starts(n, "aes_decrypt") || starts(n, "crypto_aes_") || starts(n, "gcmaes_") || starts(n, "ghash_") ||
      starts(n, "clmul_ghash") || starts(n, "gcm_") || starts(n, "crypto_ctr_") || starts(n, "crypto_gcm_") ||
      starts(n, "crypto_skcipher_") || starts(n, "crypto_aead_") || starts(n, "aes_xts_") || starts(n, "xts_") ||
      starts(n, "ctr_crypt") || starts(n, "aesgcm_"))
    return GPO_SAMPLE_KERN_CIPHER;
  if (starts(n, "ZSTD_compress") || starts(n, "zstd_compress") || starts(n, "ZSTD_encode") ||
      starts(n, "HUF_compress") || starts(n, "FSE_compress") || starts(n, "ZSTD_buildSeqStore") ||
      starts(n, "ZSTD_fillHashTable") || starts(n, "ZSTD_fillDoubleHashTable") || starts(n, "ZSTD_ldm_") ||
      starts(n, "ZSTD_entropyCompress") || starts(n, "ZSTD_seqToCodes") || starts(n, "ZSTD_selectBlockCompressor"))
    return GPO_SAMPLE_KERN_ZSTD_COMPRESS;
  return GPO_SAMPLE_NONE;
}

Thresholds default_thresholds() {
  Thresholds t;
  t.fill(GPO_SPOT_DEFAULT_THRESHOLD);
  return t;
}

std::string apply_threshold(Thresholds& t, std::string_view spec) {
  auto eq = spec.find('=');
  if (eq == std::string_view::npos)
    return fmt::format("bad threshold '{}': expected OP=BYTES, e.g. evp_encrypt=64K", spec);
  std::string_view name = spec.substr(0, eq), value = spec.substr(eq + 1);
  uint64_t n = 0;
  auto [p, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
  if (ec != std::errc() || p == value.data())
    return fmt::format("bad threshold '{}': '{}' is not a byte count", spec, value);
  std::string_view suffix(p, size_t(value.data() + value.size() - p));
  uint64_t mult = 1;
  if (suffix == "K" || suffix == "k" || suffix == "KiB") mult = 1ull << 10;
  else if (suffix == "M" || suffix == "MiB") mult = 1ull << 20;
  else if (suffix == "G" || suffix == "GiB") mult = 1ull << 30;
  else if (!suffix.empty())
    return fmt::format("bad threshold '{}': unknown unit '{}' (use K, M or G)", spec, suffix);
  if (name == "all") {
    t.fill(n * mult);
    return {};
  }
  auto op = op_from_name(name);
  if (!op) {
    std::string all;
    for (uint32_t i = 0; i < kOps; i++) all += fmt::format("{}{}", i ? ", " : "", op_name(i));
    return fmt::format("bad threshold '{}': unknown op '{}' (ops: all, {})", spec, name, all);
  }
  t[*op] = n * mult;
  return {};
}

std::string human_bytes(double b) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (b >= 1024 && u < 4) { b /= 1024; u++; }
  return u == 0 ? fmt::format("{:.0f} B", b) : fmt::format("{:.1f} {}", b, units[u]);
}

}  // namespace gpo::spot
