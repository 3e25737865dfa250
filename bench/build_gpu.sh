#!/usr/bin/env bash
# Prepares, on a machine without a GPU, what bench/run_gpu.sh runs on the device machine:
# a CUDA build for sm_90 in build-gpu/ and a small bundle in build-gpu-bundle/ holding only the
# binaries (tests, benchmarks, command line) and the shared libraries the device may lack
# (Google Benchmark, libzip and theirs), found with ldd; cuBLAS (about 600 MB) is not among them:
# lrsmc loads it only for the device encoder, from the device's CUDA libraries. Carry
# build-gpu-bundle to the device (it stays well under the 64 MiB carry limit) and run
#   LRSMC_BUILD_DIR=build-gpu-bundle bash bench/run_gpu.sh
# The CPU code is built for x86-64-v3 (AVX2), not for this machine, since the device machine's
# processor is another one (LRSMC_CPU_ARCH overrides it).
# The bundle's test binary looks for the CLI at this machine's build path, so the CLI tests are
# not part of the device run (run_gpu.sh runs the *Cuda* suites only).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="$root/build-gpu"
bundle="$root/build-gpu-bundle"
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DLRSMC_ENABLE_CUDA=ON \
  -DCMAKE_CUDA_ARCHITECTURES="${LRSMC_CUDA_ARCH:-90}" -DLRSMC_WERROR=ON \
  -DLRSMC_CPU_ARCH="${LRSMC_CPU_ARCH:-x86-64-v3}"
cmake --build "$build" -j "$(nproc)" --target lrsmc_tests lrsmc_cli bench_cuda_filter \
  bench_cuda_train bench_cpu_filter bench_fixed_points
rm -rf "$bundle"
mkdir -p "$bundle/tests" "$bundle/bench" "$bundle/lib"
cp "$build/tests/lrsmc_tests" "$bundle/tests/"
cp "$build/lrsmc" "$bundle/"
cp "$build"/bench/bench_* "$bundle/bench/"
# Every shared library the binaries load, except the C runtime itself (glibc, the loader).
for binary in "$bundle/tests/lrsmc_tests" "$bundle/lrsmc" "$bundle"/bench/bench_*; do
  ldd "$binary" | awk '/=> \// { print $3 }'
done | sort -u | while read -r library; do
  case "$(basename "$library")" in
    libc.so.*|libm.so.*|libpthread.so.*|libdl.so.*|librt.so.*|ld-linux*) ;;
    *) cp -L "$library" "$bundle/lib/" ;;
  esac
done
du -sh "$bundle"
echo "build_gpu.sh: bundle ready in $bundle (glibc of this machine: $(ldd --version | head -1))"
