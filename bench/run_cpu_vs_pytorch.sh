#!/usr/bin/env bash
# lrsmc's CPU engines against a minimal PyTorch implementation of the same training step
# (bench/cpu_vs_pytorch.py): builds lrsmc (scripts/build.sh), makes a virtual environment with
# numpy and PyTorch from PyPI in build/bench-venv, and runs the comparison. Raw timings go to
# bench/results/cpu_vs_pytorch_<date>_<commit>.json; the table is printed. Takes about 15
# minutes on two cores, most of it at K = 10^4.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build_dir="${LRSMC_BUILD_DIR:-$root/build}"
"$root/scripts/build.sh"
venv="$build_dir/bench-venv"
if [[ ! -x "$venv/bin/python" ]]; then
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --upgrade pip
fi
# PyPI's torch with its dependencies: its CPU code loads some of the CUDA runtime packages
# (libcufile) even without a GPU, and PyTorch's CPU-only index is not reachable from every
# machine.
"$venv/bin/python" -m pip install --quiet numpy torch
stamp="$(date -u +%F)_$(git -C "$root" rev-parse --short HEAD)"
OMP_WAIT_POLICY=PASSIVE "$venv/bin/python" "$root/bench/cpu_vs_pytorch.py" \
  --bench "$build_dir/bench/bench_cpu_filter" \
  --out "$root/bench/results/cpu_vs_pytorch_$stamp.json" "$@"
