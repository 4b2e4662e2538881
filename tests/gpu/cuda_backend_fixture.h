// The fixture of the tests that run ops through the CUDA backend: a
// CudaBackend on GPU 0 with a CPU pool of 4 workers behind it (its fallback),
// and a seeded generator for inputs. Each test skips with the reason when
// there is no GPU.
#pragma once
#include <gtest/gtest.h>

#include <cstdint>
#include <memory>
#include <random>
#include <string>

#include "backend/cpu_backend.h"
#include "backend/cuda_backend.h"

namespace gpo::test {

class CudaBackendTest : public ::testing::Test {
 protected:
  explicit CudaBackendTest(uint64_t seed) : rng_(seed) {}
  void SetUp() override {
    std::string why;
    if (backend::cuda_device_count(&why) < 0) GTEST_SKIP() << "no GPU: " << why;
    cpu_ = std::make_shared<backend::CpuBackend>(4);
    gpu_ = std::make_unique<backend::CudaBackend>(0, cpu_);
  }
  std::shared_ptr<backend::CpuBackend> cpu_;
  std::unique_ptr<backend::CudaBackend> gpu_;
  std::mt19937_64 rng_;
};

}  // namespace gpo::test
