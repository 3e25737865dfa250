#!/usr/bin/env bash
# Runs the GPU tests and benchmarks on a device machine and writes logs under $OUT
# (or bench/results/gpu-<date> when OUT is unset). Expects the binaries of a CUDA build in
# $LRSMC_BUILD_DIR (default build-gpu/): bench/build_gpu.sh prepares build-gpu-bundle/ with them
# and the shared libraries the device may lack (in lib/). Every step is bounded by
# LRSMC_STEP_TIMEOUT seconds (default 90; the EEG fit LRSMC_EEG_TIMEOUT, default 120), so the
# whole run stays under the device tool's 10-minute command limit and one hang cannot spend it.
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${LRSMC_BUILD_DIR:-$root/build-gpu}"
out="${OUT:-$root/bench/results/gpu-$(date +%F)}"
mkdir -p "$out"
if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
  echo "run_gpu.sh: no GPU answers (nvidia-smi); nothing to run" | tee "$out/no_gpu.txt"
  exit 0
fi
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv | tee "$out/nvidia_smi.txt"
export LD_LIBRARY_PATH="$build/lib:$build/bench:${LD_LIBRARY_PATH:-}"
step_timeout="${LRSMC_STEP_TIMEOUT:-90}"
ldd "$build/tests/lrsmc_tests" | grep "not found" | tee "$out/missing_libraries.txt"
timeout "$step_timeout" "$build/tests/lrsmc_tests" --gtest_filter='*Cuda*' 2>&1 | tee "$out/gpu_tests.log"
timeout "$step_timeout" "$build/bench/bench_cuda_filter" --benchmark_out="$out/cuda_filter.json" --benchmark_out_format=json \
  2>&1 | tee "$out/cuda_filter.log"
# Training (issue 4). The CUDA gradient and training tests ran with the *Cuda* filter above.
timeout "$step_timeout" "$build/bench/bench_cuda_train" --benchmark_out="$out/cuda_train.json" --benchmark_out_format=json \
  2>&1 | tee "$out/cuda_train.log"
# The paper's whole EEG run (1500 epochs × 50 batches of 10 windows, K = 10), timed; set
# LRSMC_EEG_EPOCHS to time fewer epochs, LRSMC_EEG_TIMEOUT (seconds) to bound it.
eeg="$root/../shared/data/eeg/EEG_data_zscored_reconstructed.npy"
if [ -f "$eeg" ]; then
  epochs="${LRSMC_EEG_EPOCHS:-1500}"
  started=$(date +%s%N)
  timeout "${LRSMC_EEG_TIMEOUT:-120}" "$build/lrsmc" fit --data "$eeg" --layout time,channels \
    --rank 3 --hidden 512 --nonlinearity clipped_relu --particles 10 --batch-size 10 --window 50 \
    --windows-per-epoch 500 --epochs "$epochs" --lr 1e-3 --lr-end 1e-6 --device cuda \
    --out "$out/eeg_model.npz" 2>&1 | tee "$out/eeg_fit.log"
  status=${PIPESTATUS[0]}
  echo "eeg fit: $epochs epochs, exit status $status (124: timed out), wall $(( ($(date +%s%N) - started) / 1000000 )) ms" \
    | tee -a "$out/eeg_fit.log"
else
  echo "no EEG data at $eeg; the timed EEG run is skipped" | tee "$out/eeg_fit.log"
fi
timeout "$step_timeout" "$build/bench/bench_fixed_points" --benchmark_filter=Cuda --benchmark_out="$out/fixed_points_cuda.json" \
  --benchmark_out_format=json 2>&1 | tee "$out/fixed_points_cuda.log"
# The CPU reference on the device host, for scale (last: the least needed).
timeout "$step_timeout" "$build/bench/bench_cpu_filter" --benchmark_out="$out/cpu_filter_device_host.json" \
  --benchmark_out_format=json 2>&1 | tee "$out/cpu_filter.log"
