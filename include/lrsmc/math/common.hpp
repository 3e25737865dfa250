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
#include <utility>

namespace lrsmc::math {

constexpr double log_two_pi = 1.8378770664093454835606594728112;

template <typename Scalar>
LRSMC_HD Scalar max_of(Scalar a, Scalar b) {
  return a > b ? a : b;
}

// The per-particle functions of dynamics.hpp, observation.hpp and proposal.hpp take their
// per-particle quantities as `Value`: one particle's number (Value = Scalar: every GPU thread
// and the CPU reference) or a pack of particles in SIMD lanes (host/cpu/particle_pack.hpp),
// which brings its own overloads of the functions below, found by argument-dependent lookup.
// For Value = Scalar they are the plain operations, so that the kernels' arithmetic is unchanged.

/// The number type of one lane of a Value (the Value itself for one particle; a pack specialises
/// it), for constants written in the lanes' precision.
template <typename Value>
struct LaneOf {
  using type = Value;
};
template <typename Value>
using Lane = typename LaneOf<Value>::type;

/// `condition ? yes : no`, lane by lane for a pack (both sides are evaluated).
template <typename Value>
LRSMC_HD Value choose(bool condition, Value yes, Value no) {
  return condition ? yes : no;
}
template <typename Value>
LRSMC_HD Value exp_of(Value x) {
  return std::exp(x);
}
template <typename Value>
LRSMC_HD Value log_of(Value x) {
  return std::log(x);
}
template <typename Value>
LRSMC_HD Value log1p_of(Value x) {
  return std::log1p(x);
}
template <typename Value>
LRSMC_HD Value tanh_of(Value x) {
  return std::tanh(x);
}
/// Whether the value is zero (every lane of a pack).
template <typename Value>
LRSMC_HD bool is_zero(Value x) {
  return x == Value(0);
}
/// Whether an observation is missing: NaN marks an entry the likelihood leaves out (the data
/// were loaded asking for it; SequenceBatch::allow_missing).
template <typename Scalar>
LRSMC_HD bool is_missing(Scalar x) {
  return !(x == x);
}
/// A per-particle term in float64, the precision of every gradient accumulator (a pack widens
/// lane by lane and keeps the particles apart until the engine sums them).
LRSMC_HD double widen(float x) { return double(x); }
LRSMC_HD double widen(double x) { return x; }
/// The float64 type `widen` gives a Value.
template <typename Value>
using Wide = decltype(widen(std::declval<Value>()));
/// Adds a per-particle term to a gradient accumulator: `total += widen(term)` (a pack may also
/// gather a few blocks of particles in float32 lanes before widening, particle_pack.hpp).
template <typename Total, typename Value>
LRSMC_HD void accumulate(Total& total, Value term) {
  total += widen(term);
}

/// fmax: the larger of a and b, the other one when either is NaN. Exact, so every order of a
/// reduction gives the same result.
LRSMC_HD double maximum_ignoring_nan(double a, double b) { return std::fmax(a, b); }

/// A product that no compiler may fuse into a following addition (FMA contraction).
///
/// The float64 weight arithmetic (cumulative weights, tile combinations, gradient accumulators,
/// the optimizer) is shared by engines compiled with different contraction rules: nvcc fuses
/// a·b + c by default, GCC does too for a target with FMA unless given -ffp-contract=off (the
/// CPU engines are compiled with it, CMakeLists.txt). Sums of
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
