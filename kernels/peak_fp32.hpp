// Internal: the device's measured fp32 rate, the denominator of the benchmarks' floors
// (bench/bench_cuda_filter.cpp). No CUDA types cross this header.
#pragma once

namespace lrsmc::kernels {

/// Fused multiply-adds per second × 2 that `device` sustains on independent fp32 FMA chains
/// (eight per thread, enough warps to fill every SM), best of three timed launches with CUDA
/// events. Throws CudaError when a CUDA call fails.
[[nodiscard]] double measure_fp32_flops(int device);

}  // namespace lrsmc::kernels
