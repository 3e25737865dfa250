// The rounded products the kernels rely on, compiled as the emulated kernels are but WITH FMA
// contraction, as nvcc compiles them for a GPU: kernels::DeviceRoundedProduct (__dmul_rn) and
// the emulated __dadd_rn, __dmul_rn and __ddiv_rn must never be fused into a neighbouring
// addition, while a plain a·b + c in the same translation unit is (the control that shows the
// inputs tell the two apart). A kernel or an emulation that lost its rounding fails here.
#include <gtest/gtest.h>

#include "kernels/particle_step.cuh"
#include "lrsmc/math/weights.hpp"

namespace lrsmc {
namespace {

// a · b = 1 + 2^-29 + 2^-60 exactly: rounded, the 2^-60 is lost; fused into a − 1, it is kept.
volatile double volatile_a = 1.0 + 0x1p-30;
volatile double volatile_b = 1.0 + 0x1p-30;
volatile double volatile_c = -1.0;

constexpr double unfused = 0x1p-29;
constexpr double fused = 0x1p-29 + 0x1p-60;

TEST(CudaEmulationRounding, ThisTranslationUnitContracts) {
#if !defined(__FMA__)
  GTEST_SKIP() << "the host has no FMA instructions: nothing can be fused, nothing to check";
#endif
  const double a = volatile_a, b = volatile_b, c = volatile_c;
  const double sum = a * b + c;
  EXPECT_EQ(sum, fused) << "the control: this file must be compiled with FMA contraction";
}

TEST(CudaEmulationRounding, KernelProductsAreNeverFused) {
  const double a = volatile_a, b = volatile_b, c = volatile_c;
  const kernels::DeviceRoundedProduct product;
  double sum = c;
  sum += product(a, b);
  EXPECT_EQ(sum, unfused) << "DeviceRoundedProduct was fused into the addition";
  // As math::normalised_cumulative uses it: (start + scale · local) / total.
  EXPECT_EQ(math::normalised_cumulative(c, a, b, 1.0, product), unfused);
}

TEST(CudaEmulationRounding, EmulatedIntrinsicsAreNeverFused) {
  const double a = volatile_a, b = volatile_b, c = volatile_c;
  EXPECT_EQ(__dmul_rn(a, b) + c, unfused) << "__dmul_rn was fused into the addition";
  EXPECT_EQ(__dadd_rn(a * b, c), unfused) << "__dadd_rn absorbed the product";
  EXPECT_EQ(__ddiv_rn(__dadd_rn(a * b, c), 1.0), unfused);
}

}  // namespace
}  // namespace lrsmc
