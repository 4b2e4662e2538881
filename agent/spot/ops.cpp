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
      {LibKind::crypto, "EVP_EncryptUpdate", "up_evp_encrypt_update"},
      {LibKind::crypto, "EVP_DecryptUpdate", "up_evp_decrypt_update"},
      {LibKind::crypto, "EVP_CipherUpdate", "up_evp_cipher_update"},
      {LibKind::crypto, "EVP_DigestUpdate", "up_evp_digest_update"},
      {LibKind::crypto, "SHA256", "up_sha256"},
      {LibKind::zstd, "ZSTD_compress", "up_zstd_compress"},
      {LibKind::zstd, "ZSTD_compressCCtx", "up_zstd_compress_cctx"},
      {LibKind::zstd, "ZSTD_compress2", "up_zstd_compress2"},
      {LibKind::zstd, "ZSTD_compressStream2", "up_zstd_compress_stream2"},
      {LibKind::zstd, "ZSTD_decompress", "up_zstd_decompress"},
      {LibKind::zstd, "ZSTD_decompressDCtx", "up_zstd_decompress_dctx"},
      {LibKind::zlib, "deflate", "up_deflate"},
      {LibKind::zlib, "compress2", "up_compress2"},
      {LibKind::zlib, "crc32", "up_crc32"},
  };
  return specs;
}

const std::vector<KprobeSpec>& kprobe_specs() {
  static const std::vector<KprobeSpec> specs = {
      {"crypto_skcipher_encrypt", "kp_skcipher_encrypt"},
      {"crypto_skcipher_decrypt", "kp_skcipher_decrypt"},
      {"crypto_aead_encrypt", "kp_aead_encrypt"},
      {"crypto_aead_decrypt", "kp_aead_decrypt"},
      {"zstd_compress_cctx", "kp_zstd_compress_cctx"},
  };
  return specs;
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
