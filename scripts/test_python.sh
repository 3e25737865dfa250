#!/usr/bin/env bash
# Installs the Python package into a virtual environment under the build folder and runs its
# pytest suite against the CMake-built command line (LRSMC_CLI), after scripts/build.sh.
# The environment and pip's CMake build folder are kept, so a second run rebuilds only what
# changed. LRSMC_ENABLE_CUDA decides CUDA as for scripts/build.sh (default: on when nvcc is found).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build_dir="${LRSMC_BUILD_DIR:-$root/build}"
venv="$build_dir/python-venv"
if [[ ! -x "$venv/bin/python" ]]; then
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --upgrade pip
fi
# The build requirements are installed in the environment and pip builds without isolation:
# an isolated build environment lives in a new temporary folder each time, which would make
# CMake reconfigure the kept build folder.
"$venv/bin/python" -m pip install --quiet "scikit-build-core>=0.10" "pybind11>=2.12"
start=$(date +%s)
LRSMC_WERROR=ON "$venv/bin/python" -m pip install --quiet --no-build-isolation \
  --config-settings=build-dir="$build_dir/python-build" "$root/python[plot,test]"
echo "test_python: pip install took $(( $(date +%s) - start )) s"
# The command-line comparisons need the CLI that scripts/build.sh builds; without it they skip.
if [[ -x "$build_dir/lrsmc" ]]; then
  export LRSMC_CLI="$build_dir/lrsmc"
else
  echo "test_python: $build_dir/lrsmc not found; the command-line comparisons will skip"
fi
cd "$build_dir"  # not the source folder: tests must import the installed package
OMP_WAIT_POLICY=PASSIVE MPLBACKEND=Agg "$venv/bin/pytest" -ra -p no:cacheprovider "$root/python/tests"
