// Measured fp32 throughput of the device: independent FMA chains in every thread of a grid
// that fills every SM. The benchmarks divide their operation counts by it to give a floor.
#include <cuda_runtime_api.h>

#include "kernels/peak_fp32.hpp"
#include "lrsmc/errors.hpp"

namespace lrsmc::kernels {
namespace {

constexpr int chains = 8;  // independent FMAs in flight per thread (hides the FMA latency)
constexpr int block_size = 256;
constexpr int iterations = 8192;

__global__ void __launch_bounds__(block_size) fma_chains_kernel(float* sink, float seed) {
  float value[chains];
#pragma unroll
  for (int c = 0; c < chains; ++c) value[c] = seed + float(threadIdx.x) * 1e-7f + float(c);
  const float multiplier = 0.9999999f, addend = 1e-7f;
  for (int i = 0; i < iterations; ++i) {
#pragma unroll
    for (int c = 0; c < chains; ++c) value[c] = fmaf(value[c], multiplier, addend);
  }
  float total = 0.f;
#pragma unroll
  for (int c = 0; c < chains; ++c) total += value[c];
  if (total == -1.f) sink[threadIdx.x] = total;  // never true; keeps the chains alive
}

void check(cudaError_t status, const char* call) {
  if (status != cudaSuccess)
    throw CudaError(detail::concat("measure_fp32_flops: ", call, " failed (",
                                   cudaGetErrorString(status), ")"));
}

}  // namespace

double measure_fp32_flops(int device) {
  check(cudaSetDevice(device), "cudaSetDevice");
  int processors = 0, threads_per_processor = 0;
  check(cudaDeviceGetAttribute(&processors, cudaDevAttrMultiProcessorCount, device),
        "cudaDeviceGetAttribute");
  check(cudaDeviceGetAttribute(&threads_per_processor, cudaDevAttrMaxThreadsPerMultiProcessor,
                               device),
        "cudaDeviceGetAttribute");
  const int blocks = processors * (threads_per_processor / block_size) * 4;
  float* sink = nullptr;
  check(cudaMalloc(reinterpret_cast<void**>(&sink), block_size * sizeof(float)), "cudaMalloc");
  cudaEvent_t start = nullptr, stop = nullptr;
  double best = 0;
  cudaError_t status = cudaEventCreate(&start);
  if (status == cudaSuccess) status = cudaEventCreate(&stop);
  fma_chains_kernel<<<blocks, block_size>>>(sink, 1.f);  // warm-up
  if (status == cudaSuccess) status = cudaGetLastError();
  if (status == cudaSuccess) status = cudaDeviceSynchronize();
  for (int repeat = 0; repeat < 3 && status == cudaSuccess; ++repeat) {
    status = cudaEventRecord(start);
    fma_chains_kernel<<<blocks, block_size>>>(sink, 1.f + float(repeat));
    if (status == cudaSuccess) status = cudaGetLastError();
    if (status == cudaSuccess) status = cudaEventRecord(stop);
    if (status == cudaSuccess) status = cudaEventSynchronize(stop);
    float milliseconds = 0.f;
    if (status == cudaSuccess) status = cudaEventElapsedTime(&milliseconds, start, stop);
    if (status == cudaSuccess && milliseconds > 0.f) {
      const double flops = 2.0 * chains * iterations * double(blocks) * block_size;
      best = flops / (double(milliseconds) * 1e-3) > best ? flops / (double(milliseconds) * 1e-3)
                                                          : best;
    }
  }
  if (start) (void)cudaEventDestroy(start);
  if (stop) (void)cudaEventDestroy(stop);
  (void)cudaFree(sink);
  check(status, "timing the FMA kernel");
  return best;
}

}  // namespace lrsmc::kernels
