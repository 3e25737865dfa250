#!/usr/bin/env bash
# Builds the CUDA backend (host code and kernels, unchanged) against the CPU emulation of the
# device in tests/cuda_emulation/ and runs the tests that use it: those labelled gpu
# (tests/test_labels.cmake: the GPU tests, which skip in the ordinary build on a machine without
# a GPU, and the command-line tests whose device auto then takes the CUDA path; the other tests
# check the same code as in the ordinary build, so they run there only; LRSMC_EMULATION_TESTS
# narrows to a regex), then the Python package's tests (LRSMC_EMULATION_PYTHON=0 skips those).
# See tests/cuda_emulation/README.md for what this checks and what only a GPU can.
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
ctest --output-on-failure -j "$(nproc)" --timeout 1800 -L gpu \
      ${LRSMC_EMULATION_TESTS:+-R "$LRSMC_EMULATION_TESTS"}
# The Python package on this build's engine too: device="auto" then takes the CUDA path, and
# its results must equal this build's command line, as in the ordinary build. An instrumented
# engine cannot be loaded into an uninstrumented Python, so under the sanitizers pip compiles
# an engine of its own (without them). The fixed-point and plot tests are left to the ordinary
# build: fixed points of networks that small are found on the CPU with any device, and the
# plots draw what the fit tests here already compute on the device path.
if [[ "${LRSMC_EMULATION_PYTHON:-1}" == 1 ]]; then
  python_engine=build
  [[ "$sanitize" == ON ]] && python_engine=own
  LRSMC_BUILD_DIR="$build_dir" LRSMC_PYTHON_ENGINE="$python_engine" LRSMC_CUDA_EMULATION=ON \
    "$root/scripts/test_python.sh" "$root/python/tests" \
    --ignore="$root/python/tests/test_fixed_points.py" --ignore="$root/python/tests/test_plots.py"
fi
