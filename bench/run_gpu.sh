#!/usr/bin/env bash
# The whole GPU check on a device machine, in under 8 minutes of device time: the GPU tests,
# compute-sanitizer's memcheck and racecheck on a small filter and two gradient tests, the
# benchmarks (forward filter and training step at the paper's EEG shape, the fixed points) and
# a short timed EEG fit. Logs and JSON go under $OUT (or bench/results/gpu-<date>), with the
# nvidia-smi output. Expects a CUDA build in $LRSMC_BUILD_DIR (default build-gpu-bundle/:
# bench/build_gpu.sh prepares it, with the shared libraries the device may lack in lib/). Every
# step is bounded (seconds in the table below), so one hang cannot spend the device's time.
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${LRSMC_BUILD_DIR:-$root/build-gpu-bundle}"
out="${OUT:-$root/bench/results/gpu-$(date +%F)}"
mkdir -p "$out"
if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
  echo "run_gpu.sh: no GPU answers (nvidia-smi); nothing to run" | tee "$out/no_gpu.txt"
  exit 0
fi
started=$(date +%s)
nvidia-smi | tee "$out/nvidia_smi.txt"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv | tee -a "$out/nvidia_smi.txt"
export LD_LIBRARY_PATH="$build/lib:$build/bench:${LD_LIBRARY_PATH:-}"
ldd "$build/tests/lrsmc_tests" | grep "not found" | tee "$out/missing_libraries.txt"
# cuBLAS is loaded only when the device encoder runs (too large to carry): without it those
# tests fail with a message and everything else runs.
ldconfig -p | grep -q "libcublas\.so\.13" ||
  echo "no libcublas.so.13 on the device: the device encoder's tests will fail" |
  tee -a "$out/missing_libraries.txt"
# NCCL likewise, when a shared fit starts: without it the one-process NCCL test
# (CudaTraining.OneProcessOverNcclIsBitwiseThePlainRun) skips, saying so.
ldconfig -p | grep -q "libnccl\.so\.2" ||
  echo "no libnccl.so.2 on the device: the NCCL check will skip" |
  tee -a "$out/missing_libraries.txt"
tests="$build/tests/lrsmc_tests"

step() {  # step SECONDS NAME COMMAND...: runs COMMAND bounded, logs to $out/NAME.log
  local seconds=$1 name=$2
  shift 2
  local begin=$(date +%s)
  timeout "$seconds" "$@" > "$out/$name.log" 2>&1
  local status=$?
  echo "$name: exit $status (124: timed out after ${seconds} s), $(( $(date +%s) - begin )) s" \
    | tee -a "$out/steps.txt"
  tail -3 "$out/$name.log"
}

# 1. The GPU tests: the CPU float engine against the device, step by step within the derived
#    tolerance (tests/support/engine_comparison.cpp), every option combination. 130 s.
step 130 gpu_tests "$tests" --gtest_filter='*Cuda*:GradientMemoryPlan*' \
  --gtest_output="xml:$out/gpu_tests.xml"

# 2. compute-sanitizer (from the device's CUDA toolkit; this build machine has none to carry):
#    memcheck and racecheck on one small filter test (both regimes, three tiles), one gradient
#    test (the backward kernel, lane groups) and the encoder proposal's (its products kernel,
#    the reverse sweep's per-step constants, the one-to-one read-outs' merged jobs). 6 × 20 s.
sanitizer="$(command -v compute-sanitizer || ls /usr/local/cuda*/bin/compute-sanitizer 2>/dev/null | head -1)"
if [ -n "$sanitizer" ]; then
  for tool in memcheck racecheck; do
    step 20 "sanitizer_${tool}_filter" "$sanitizer" --tool "$tool" --error-exitcode 3 "$tests" \
      --gtest_filter='CudaFilter.EffectiveSampleSizeThresholdWithoutStoredPaths'
    step 20 "sanitizer_${tool}_gradient" "$sanitizer" --tool "$tool" --error-exitcode 3 "$tests" \
      --gtest_filter='CudaGradient.RepeatedRunsAreBitwiseIdentical'
    step 20 "sanitizer_${tool}_encoder" "$sanitizer" --tool "$tool" --error-exitcode 3 "$tests" \
      --gtest_filter='CudaGradient.SmallEncoderAndReadoutRunsForTheSanitizer'
  done
else
  echo "compute-sanitizer not found on the device: memcheck and racecheck not run" \
    | tee -a "$out/steps.txt"
fi

# 3. Benchmarks: the forward filter (K = 10 … 10^5, both regimes; the paper's K = 10 forward
#    time against the 0.5 ms target), one training step (EEG shape, K = 10 … 10^4; 64 × 100 at
#    K = 10^3, 10^4; against 2 ms at K = 10; the encoder proposal's gradient), the fixed points.
#    80 + 80 + 25 s.
step 80 cuda_filter "$build/bench/bench_cuda_filter" --benchmark_min_time=0.2 \
  --benchmark_out="$out/cuda_filter.json" --benchmark_out_format=json
step 80 cuda_train "$build/bench/bench_cuda_train" --benchmark_min_time=0.2 \
  --benchmark_out="$out/cuda_train.json" --benchmark_out_format=json
step 25 fixed_points_cuda "$build/bench/bench_fixed_points" --benchmark_filter=Cuda \
  --benchmark_out="$out/fixed_points_cuda.json" --benchmark_out_format=json

# 4. A short EEG fit on the device, timed (the paper's setting; LRSMC_EEG_EPOCHS epochs, 20 by
#    default: the whole run's time is that per epoch × 1500). 40 s. In all at most 475 s.
eeg="$root/../shared/data/eeg/EEG_data_zscored_reconstructed.npy"
if [ -f "$eeg" ]; then
  step 40 eeg_fit "$build/lrsmc" fit --data "$eeg" --layout time,channels --rank 3 --hidden 512 \
    --nonlinearity clipped_relu --particles 10 --batch-size 10 --window 50 \
    --windows-per-epoch 500 --epochs "${LRSMC_EEG_EPOCHS:-20}" --lr 1e-3 --lr-end 1e-6 \
    --device cuda --out "$out/eeg_model.npz"
else
  echo "no EEG data at $eeg: the timed EEG fit is skipped" | tee -a "$out/steps.txt"
fi
echo "run_gpu.sh: $(( $(date +%s) - started )) s in all" | tee -a "$out/steps.txt"
