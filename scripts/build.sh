#!/usr/bin/env bash
# Configures and builds lrsmc into build/ (CUDA when nvcc is found; LRSMC_ENABLE_CUDA=OFF to skip).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build_dir="${LRSMC_BUILD_DIR:-$root/build}"
cuda_flag=()
[[ -n "${LRSMC_ENABLE_CUDA:-}" ]] && cuda_flag=(-DLRSMC_ENABLE_CUDA="$LRSMC_ENABLE_CUDA")
cmake -S "$root" -B "$build_dir" -DCMAKE_BUILD_TYPE=Release -DLRSMC_WERROR=ON "${cuda_flag[@]}"
cmake --build "$build_dir" -j "$(nproc)"
