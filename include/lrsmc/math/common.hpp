// LRSMC_HD marks the model maths shared by the CPU backend and the CUDA kernels: it is
// __host__ __device__ under nvcc and empty under a plain C++ compiler.
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
LRSMC_HD Scalar max_of(Scalar a, Scalar b) { return a > b ? a : b; }

}  // namespace lrsmc::math
