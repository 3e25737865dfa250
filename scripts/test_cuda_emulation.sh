#!/usr/bin/env bash
# Builds the CUDA backend (host code and kernels, unchanged) against the CPU emulation of the
# device in tests/cuda_emulation/ and runs the tests that use it: the GPU tests, which skip in
# the ordinary build on a machine without a GPU, the command-line tests and the Python package's
# tests (LRSMC_EMULATION_PYTHON=0 skips those), whose default device auto then takes the CUDA
# path. See tests/cuda_emulation/README.md for what this checks and what only a GPU can.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# LRSMC_EMULATION_SANITIZE=1 adds AddressSanitizer and UBSan (about twice as slow): the
# emulation's stand-in for compute-sanitizer's memcheck.
build_dir="${LRSMC_EMULATION_BUILD_DIR:-${LRSMC_BUILD_DIR:-$root/build}/cuda-emulation}"
sanitize=OFF
[[ "${LRSMC_EMULATION_SANITIZE:-0}" == 1 ]] && sanitize=ON
cmake -S "$root" -B "$build_dir" -DCMAKE_BUILD_TYPE=Release -DLRSMC_WERROR=ON \
      -DLRSMC_CUDA_EMULATION=ON -DLRSMC_BUILD_BENCH=OFF -DLRSMC_SANITIZE="$sanitize"
cmake --build "$build_dir" -j "$(nproc)"
cd "$build_dir"
ctest --output-on-failure -j "$(nproc)" --timeout 1800 -R "${LRSMC_EMULATION_TESTS:-Cuda|Cli}"
# The Python package on this build's engine too: device="auto" then takes the CUDA path, and
# its results must equal this build's command line, as in the ordinary build. An instrumented
# engine cannot be loaded into an uninstrumented Python, so under the sanitizers pip compiles
# an engine of its own (without them).
if [[ "${LRSMC_EMULATION_PYTHON:-1}" == 1 ]]; then
  python_engine=build
  [[ "$sanitize" == ON ]] && python_engine=own
  LRSMC_BUILD_DIR="$build_dir" LRSMC_PYTHON_ENGINE="$python_engine" LRSMC_CUDA_EMULATION=ON \
    "$root/scripts/test_python.sh"
fi
