#!/bin/sh
# Installs an lrsmc build to a temporary prefix, then configures, builds and runs the consumer
# project (tests/consumer) against it with find_package(lrsmc).
# Usage: run_consumer.sh CMAKE BUILD_DIR CONSUMER_SOURCE WORK_DIR CXX_COMPILER [CUDA_BIN_DIR]
set -eu
cmake_command=$1
build_dir=$2
consumer_source=$3
work_dir=$4
cxx_compiler=$5
cuda_bin_dir=${6:-}

rm -rf "$work_dir"
mkdir -p "$work_dir"
prefix=$work_dir/prefix

"$cmake_command" --install "$build_dir" --prefix "$prefix"

set -- -S "$consumer_source" -B "$work_dir/build" -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_CXX_COMPILER="$cxx_compiler"
if [ -n "$cuda_bin_dir" ]; then
  # The package's find_dependency(CUDAToolkit) looks here (the toolkit the build used).
  set -- "$@" -DCUDAToolkit_ROOT="$(dirname "$cuda_bin_dir")"
fi
"$cmake_command" "$@"
"$cmake_command" --build "$work_dir/build" -j2
"$work_dir/build/app"
