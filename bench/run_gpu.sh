#!/usr/bin/env bash
# Runs the GPU tests and benchmarks on a device machine and writes logs under $OUT
# (or bench/results/gpu-<date> when OUT is unset). Expects a CUDA build in build-gpu/
# (cmake -S . -B build-gpu -DCMAKE_CUDA_ARCHITECTURES=90 && cmake --build build-gpu -j)
# with Google Benchmark's shared library copied beside the binaries.
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${LRSMC_BUILD_DIR:-$root/build-gpu}"
out="${OUT:-$root/bench/results/gpu-$(date +%F)}"
mkdir -p "$out"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv | tee "$out/nvidia_smi.txt"
export LD_LIBRARY_PATH="$build/bench:${LD_LIBRARY_PATH:-}"
"$build/tests/lrsmc_tests" --gtest_filter='*Cuda*' 2>&1 | tee "$out/gpu_tests.log"
"$build/bench/bench_cuda_filter" --benchmark_out="$out/cuda_filter.json" --benchmark_out_format=json \
  2>&1 | tee "$out/cuda_filter.log"
"$build/bench/bench_cpu_filter" --benchmark_out="$out/cpu_filter_device_host.json" \
  --benchmark_out_format=json 2>&1 | tee "$out/cpu_filter.log"
