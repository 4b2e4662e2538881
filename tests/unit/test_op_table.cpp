// The op table (gpuoffload_ops.h): the numbers clients and the wire depend on,
// the registry built from it, and check_sizes(), the one check of an op's sizes
// and parameters that the backends, the agent and libgpuoffload apply.
#include <gtest/gtest.h>

#include <set>
#include <string>
#include <vector>

#include "backend/ops.h"
#include "gpuoffload.h"
#include "ipc/slab_protocol.h"

namespace {

using gpo::backend::check_sizes;
using gpo::backend::JobSizes;
using gpo::backend::OpId;

// Compiled programs and slabs in flight carry these numbers: they never change.
TEST(OpTable, NumbersAreTheApisAndTheWires) {
  const struct {
    int api, wire;
    OpId agent;
    int number;
  } rows[] = {
      {GPO_AES256_GCM_ENCRYPT, GPO_OP_AES256_GCM_ENCRYPT, OpId::aes256_gcm_encrypt, 1},
      {GPO_AES256_GCM_DECRYPT, GPO_OP_AES256_GCM_DECRYPT, OpId::aes256_gcm_decrypt, 2},
      {GPO_AES256_CTR, GPO_OP_AES256_CTR, OpId::aes256_ctr, 3},
      {GPO_SHA256, GPO_OP_SHA256, OpId::sha256, 4},
      {GPO_ZSTD_COMPRESS, GPO_OP_ZSTD_COMPRESS, OpId::zstd_compress, 5},
      {GPO_ZSTD_DECOMPRESS, GPO_OP_ZSTD_DECOMPRESS, OpId::zstd_decompress, 6},
      {GPO_ZLIB_COMPRESS, GPO_OP_ZLIB_COMPRESS, OpId::zlib_compress, 7},
      {GPO_CRC32, GPO_OP_CRC32, OpId::crc32, 8},
      {GPO_MEMCPY, GPO_OP_MEMCPY, OpId::memcpy, 9},
  };
  for (const auto& r : rows) {
    EXPECT_EQ(r.api, r.number);
    EXPECT_EQ(r.wire, r.number);
    EXPECT_EQ(int(r.agent), r.number);
  }
  EXPECT_EQ(gpo::backend::kOpCount, std::size(rows));
}

// Every number an OpId can hold is either a row of the table with one registry
// entry, or no op at all: nothing outside the table defines an op.
TEST(OpTable, RegistryHasOneEntryPerRowAndNoOther) {
  size_t rows = 0;
  for (uint32_t v = 0; v <= UINT16_MAX; ++v) {
    const auto* op = gpo::backend::find_op(OpId(v));
    ASSERT_EQ(op != nullptr, gpo::backend::is_op(v)) << v;
    if (!op) continue;
    ++rows;
    EXPECT_EQ(op->id, OpId(v));
    EXPECT_EQ(op->name, gpo::backend::op_name(op->id));
    EXPECT_EQ(gpo::backend::find_op(op->name), op) << op->name;
    EXPECT_NE(op->cpu, nullptr) << op->name;
    EXPECT_EQ(op->cpu_range != nullptr, op->split_align != 0) << op->name;
  }
  EXPECT_EQ(rows, gpo::backend::ops().size());
  std::set<std::string> names;
  for (const auto& op : gpo::backend::ops()) EXPECT_TRUE(names.insert(std::string(op.name)).second) << op.name;
  EXPECT_LT(gpo::backend::kMaxOpId, uint32_t(GPO_PLAN_OPS));
}

TEST(OpTable, CiphersTakeTheirKeyIvAndAad) {
  for (OpId op : {OpId::aes256_gcm_encrypt, OpId::aes256_gcm_decrypt}) {
    const uint32_t id = uint32_t(op);
    EXPECT_EQ(check_sizes({id, 100, 100, 32, 12, 20}), nullptr);
    EXPECT_EQ(check_sizes({id, 0, 0, 32, 12, 0}), nullptr);
    EXPECT_EQ(check_sizes({id, 100, 100, 32, 12, 0xffffffffu}), nullptr);
    EXPECT_NE(check_sizes({id, 100, 100, 32, 12, 0x100000000u}), nullptr) << "AAD of 4 GiB";
    EXPECT_NE(check_sizes({id, 100, 100, 16, 12, 0}), nullptr) << "AES-128 key";
    EXPECT_NE(check_sizes({id, 100, 100, 0, 12, 0}), nullptr) << "no key";
    EXPECT_NE(check_sizes({id, 100, 100, 32, 16, 0}), nullptr) << "CTR's IV";
    EXPECT_NE(check_sizes({id, 100, 99, 32, 12, 0}), nullptr) << "output shorter than the input";
    EXPECT_NE(check_sizes({id, 100, 101, 32, 12, 0}), nullptr) << "output longer than the input";
  }
  const uint32_t ctr = uint32_t(OpId::aes256_ctr);
  EXPECT_EQ(check_sizes({ctr, 100, 100, 32, 16, 0}), nullptr);
  EXPECT_NE(check_sizes({ctr, 100, 100, 32, 12, 0}), nullptr) << "GCM's IV";
  EXPECT_NE(check_sizes({ctr, 100, 100, 32, 16, 1}), nullptr) << "AAD";
  // In place is a cipher's normal case, not an overlap.
  EXPECT_EQ(check_sizes({ctr, 100, 100, 32, 16, 0, true}), nullptr);
}

TEST(OpTable, DigestsAndCompressorsTakeNoCipherParameters) {
  const uint32_t sha = uint32_t(OpId::sha256), crc = uint32_t(OpId::crc32);
  EXPECT_EQ(check_sizes({sha, 1000, 32}), nullptr);
  EXPECT_NE(check_sizes({sha, 1000, 64}), nullptr) << "a digest is 32 bytes";
  EXPECT_EQ(check_sizes({crc, 1000, 4}), nullptr);
  EXPECT_NE(check_sizes({crc, 1000, 8}), nullptr) << "a crc is 4 bytes";
  for (OpId op : {OpId::sha256, OpId::crc32, OpId::zstd_compress, OpId::zstd_decompress, OpId::zlib_compress,
                  OpId::memcpy}) {
    const uint32_t id = uint32_t(op);
    const uint64_t out = gpo::backend::fixed_out_bytes(op, 1000).value_or(77);
    EXPECT_EQ(check_sizes({id, 1000, out}), nullptr) << gpo::backend::op_name(op);
    EXPECT_NE(check_sizes({id, 1000, out, 32}), nullptr) << gpo::backend::op_name(op) << " with a key";
    EXPECT_NE(check_sizes({id, 1000, out, 0, 12}), nullptr) << gpo::backend::op_name(op) << " with an IV";
    EXPECT_NE(check_sizes({id, 1000, out, 0, 0, 5}), nullptr) << gpo::backend::op_name(op) << " with AAD";
  }
  // Compressors write up to their buffer: any capacity, the job says what it wrote.
  for (uint64_t cap : {0ull, 10ull, 1ull << 40})
    EXPECT_EQ(check_sizes({uint32_t(OpId::zstd_compress), 1000, cap}), nullptr) << cap;
}

TEST(OpTable, MemcpyIsInPlaceOrDisjoint) {
  std::vector<uint8_t> buf(200);
  gpo::backend::Job j;
  j.op = OpId::memcpy;
  j.in = {buf.data(), 100};
  j.out = {buf.data() + 100, 100};
  EXPECT_EQ(gpo::backend::validate_job(j), gpo::backend::Status::ok) << "disjoint";
  j.out = {buf.data(), 100};
  EXPECT_EQ(gpo::backend::validate_job(j), gpo::backend::Status::ok) << "the same buffer";
  j.out = {buf.data() + 1, 100};
  EXPECT_EQ(gpo::backend::validate_job(j), gpo::backend::Status::invalid) << "shifted by one byte";
  j.out = {buf.data() + 100, 99};
  EXPECT_EQ(gpo::backend::validate_job(j), gpo::backend::Status::invalid) << "shorter than the input";
}

TEST(OpTable, NumbersOutsideTheTableAreNoOp) {
  for (uint32_t op : {0u, 10u, 77u, 0xffffu, 0x10004u})
    EXPECT_STREQ(check_sizes({op, 100, 32}), "unknown op") << op;
}

}  // namespace
