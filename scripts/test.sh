#!/usr/bin/env bash
# Sets up, builds and runs every test, C++ then Python (GPU tests skip with a message when there
# is no GPU; tests that need ../shared/data skip when it is absent).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/scripts/setup.sh"
"$root/scripts/build.sh"
cd "${LRSMC_BUILD_DIR:-$root/build}"
ctest --output-on-failure -j "$(nproc)" --timeout 1800
# The CPU tests once more, built with address and undefined-behaviour sanitizers
# (build-sanitize): any report fails.
"$root/scripts/test_sanitizers.sh"
# The CUDA backend once more, on the CPU emulation of the device (tests/cuda_emulation/): the
# tests labelled gpu run there instead of skipping (tests/test_labels.cmake).
"$root/scripts/test_cuda_emulation.sh"
# The Python package: pip-installed into build/python-venv, its module linking the engine just
# built; pytest against the CLI just built.
"$root/scripts/test_python.sh"
