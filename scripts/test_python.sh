#!/usr/bin/env bash
# Installs the Python package into a virtual environment under the build folder and runs its
# pytest suite against the CMake-built command line (LRSMC_CLI), after scripts/build.sh.
# The extension module is compiled alone and links the engine of that build folder
# (LRSMC_ENGINE_BUILD_DIR: its libraries and command line), so the engine is compiled once and
# the module and the command line compared by the tests are the same engine.
# LRSMC_PYTHON_ENGINE=own has pip compile the engine itself, as `pip install ./python` does
# (LRSMC_ENABLE_CUDA and LRSMC_CUDA_EMULATION then decide as for scripts/build.sh).
# The environment and pip's CMake build folder are kept, so a second run rebuilds only what
# changed. Arguments are passed to pytest (default: all of python/tests).
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
# ninja: the package builds with Ninja only (pyproject.toml), which a build without isolation
# does not fetch itself.
"$venv/bin/python" -m pip install --quiet "scikit-build-core>=0.10" "pybind11>=2.12" "ninja>=1.5"
engine_build_dir="$build_dir"
[[ "${LRSMC_PYTHON_ENGINE:-build}" == own ]] && engine_build_dir=""
start=$(date +%s)
LRSMC_WERROR=ON LRSMC_ENGINE_BUILD_DIR="$engine_build_dir" \
  "$venv/bin/python" -m pip install --quiet --no-build-isolation \
  --config-settings=build-dir="$build_dir/python-build" "$root/python[plot,test]"
echo "test_python: pip install took $(( $(date +%s) - start )) s"
# The command-line comparisons need the CLI that scripts/build.sh builds; without it they skip.
if [[ -x "$build_dir/lrsmc" ]]; then
  export LRSMC_CLI="$build_dir/lrsmc"
else
  echo "test_python: $build_dir/lrsmc not found; the command-line comparisons will skip"
fi
cd "$build_dir"  # not the source folder: tests must import the installed package
(($#)) || set -- "$root/python/tests"
OMP_WAIT_POLICY=PASSIVE MPLBACKEND=Agg "$venv/bin/pytest" -ra -p no:cacheprovider "$@"
