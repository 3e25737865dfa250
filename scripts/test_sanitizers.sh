#!/usr/bin/env bash
# The CPU engine, command line and tests built with address and undefined-behaviour sanitizers
# (LRSMC_SANITIZE, gcc) in build-sanitize (or $LRSMC_BUILD_DIR-sanitize), and the tests
# labelled cpu but not slow run there: any sanitizer report fails the run at once
# (halt_on_error). Called by scripts/test.sh; about 14 minutes on two cores from a clean clone,
# nearly all of it compiling. The installed-package test is not built under LRSMC_SANITIZE
# (tests/CMakeLists.txt); the gpu-labelled tests run in the emulation build instead.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build_dir="${LRSMC_BUILD_DIR:-$root/build}-sanitize"
# Without MPI: LeakSanitizer reports Open MPI's own allocations that outlive MPI_Finalize. The
# shared-trial code runs here on threads standing in for processes (tests/test_distributed.cpp);
# the mpirun test runs in the ordinary build.
cmake -S "$root" -B "$build_dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DLRSMC_WERROR=ON \
      -DLRSMC_SANITIZE=ON -DLRSMC_ENABLE_CUDA=OFF -DLRSMC_BUILD_BENCH=OFF -DLRSMC_ENABLE_MPI=OFF
cmake --build "$build_dir" -j "$(nproc)"
export ASAN_OPTIONS="halt_on_error=1:abort_on_error=1:detect_leaks=1:strict_string_checks=1"
export UBSAN_OPTIONS="halt_on_error=1:abort_on_error=1:print_stacktrace=1"
cd "$build_dir"
# Not the tests labelled slow (tests/test_labels.cmake): under the sanitizers the demo's headline
# alone takes 5.5 minutes on two cores (85 s without) and the EEG training test 1.5 minutes
# (it runs only where ../shared/data is), while the other cpu tests take about 80 s together;
# their code paths are the ones the fast command-line and training tests cover.
ctest --output-on-failure -j "$(nproc)" -L cpu -LE slow --timeout 1800
