// LRSMC_HD marks the model maths shared by the CPU engines and the CUDA kernels: it is
// __host__ __device__ under nvcc and empty under a plain C++ compiler. Also the few numerical
// primitives every engine must agree on: the NaN-ignoring maximum and the rounded product.
#pragma once

#if defined(__CUDACC__)
#define LRSMC_HD __host__ __device__ __forceinline__
#else
#define LRSMC_HD inline
#endif

#include <cmath>

namespace lrsmc::math {

constexpr double log_two_pi = 1.8378770664093454835606594728112;

template <typename Scalar>
LRSMC_HD Scalar max_of(Scalar a, Scalar b) {
  return a > b ? a : b;
}

/// fmax: the larger of a and b, the other one when either is NaN. Exact, so every order of a
/// reduction gives the same result.
LRSMC_HD double maximum_ignoring_nan(double a, double b) { return std::fmax(a, b); }

/// A product that no compiler may fuse into a following addition (FMA contraction).
///
/// The float64 weight arithmetic (cumulative weights, tile combinations, gradient accumulators,
/// the optimizer) is shared by engines compiled with different contraction rules: nvcc fuses
/// a·b + c by default, GCC does not in ISO C++ mode but does with -ffp-contract=fast. Sums of
/// products written with a rounded product give the same bits under every rule. The CPU engines
/// pass HostRoundedProduct; the kernels pass a functor that calls __dmul_rn
/// (kernels/particle_step.cuh), so that a kernel that lost its __dmul_rn differs from the CPU.
struct HostRoundedProduct {
  double operator()(double a, double b) const {
    double product = a * b;
#if defined(__x86_64__) || defined(__i386__)
    __asm__("" : "+x"(product));  // the product leaves the expression as a rounded value
#elif defined(__aarch64__)
    __asm__("" : "+w"(product));
#else
    volatile double rounded = product;
    product = rounded;
#endif
    return product;
  }
};

}  // namespace lrsmc::math
