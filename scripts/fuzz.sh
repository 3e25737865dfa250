#!/usr/bin/env bash
# Fuzzes the .npy, .npz, model-file and dataset readers with libFuzzer for the given seconds
# (default 60): scripts/fuzz.sh [seconds]. Builds only the fuzz target (tests/robustness/fuzz/)
# with clang and address/undefined sanitizers in build-fuzz (or $LRSMC_BUILD_DIR-fuzz), starts
# from the seed corpus tests/robustness/corpus/ and fails on any crash, sanitizer report,
# non-lrsmc exception or over-long message; libFuzzer then leaves the input as crash-* (or
# leak-*, oom-*, timeout-*) in the build folder: rerun it with `build-fuzz/lrsmc_fuzz_parsers FILE`.
# Needs clang, libFuzzer and libomp (Debian: clang-14 libclang-rt-14-dev libomp-14-dev), installed
# here when missing; not part of scripts/test.sh.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
seconds="${1:-60}"
build_dir="${LRSMC_BUILD_DIR:-$root/build}-fuzz"

clang_packages=(clang-14 libclang-rt-14-dev libomp-14-dev)
have_toolchain() {
  command -v clang++-14 >/dev/null &&
    compgen -G "/usr/lib/llvm-14/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a" >/dev/null &&
    [[ -e /usr/lib/llvm-14/lib/libomp.so ]]
}
if ! have_toolchain; then
  echo "fuzz: clang-14, libFuzzer or libomp missing; installing ${clang_packages[*]}"
  sudo_cmd=""
  [[ $(id -u) -ne 0 ]] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq || true
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends \
    "${clang_packages[@]}" || true
  if ! have_toolchain; then
    echo "fuzz: could not install ${clang_packages[*]} (clang-14 with libFuzzer and libomp);" \
         "install them and rerun" >&2
    exit 1
  fi
fi

cmake -S "$root" -B "$build_dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
      -DCMAKE_CXX_COMPILER=clang++-14 \
      -DLRSMC_FUZZ=ON -DLRSMC_ENABLE_CUDA=OFF -DLRSMC_BUILD_TESTS=OFF -DLRSMC_BUILD_BENCH=OFF \
      -DLRSMC_BUILD_PYTHON=OFF
cmake --build "$build_dir" --target lrsmc_fuzz_parsers -j "$(nproc)"

# New inputs go to the build folder's corpus; the committed seeds are only read.
mkdir -p "$build_dir/corpus"
cd "$build_dir"
# halt_on_error: the first report fails the run. The readers' own limits keep a valid file's
# allocations far below -rss_limit_mb; a larger one is a finding (oom-*).
export ASAN_OPTIONS="halt_on_error=1:abort_on_error=1:detect_leaks=1"
export UBSAN_OPTIONS="halt_on_error=1:abort_on_error=1:print_stacktrace=1"
./lrsmc_fuzz_parsers -max_total_time="$seconds" -max_len=65536 -timeout=20 -rss_limit_mb=2048 \
    -print_final_stats=1 corpus "$root/tests/robustness/corpus"
