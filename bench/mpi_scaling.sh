#!/usr/bin/env bash
# Strong scaling of lrsmc fit's CPU training step over MPI processes (one thread each), for the
# paper's EEG shape (64 channels, rank 3, 512 units, batches of 10 windows of 50 steps, K = 10)
# and the Steinmetz shape (session 01, 734 neurons, Poisson, rank 3, 128 units, batches of 8
# trials of 40 bins, K = 64, bootstrap). Each run trains a few epochs without held-out
# evaluation; the step time is the median epoch time (from <out>.history.csv, first epoch left
# out) over the optimizer steps per epoch. The bytes each gradient gathers per trial are in each
# run's log (lrsmc fit's MPI header line, from the two-process runs).
#   bash bench/mpi_scaling.sh [OUT_DIR]   (LRSMC=path/to/lrsmc, PROCESSES="1 2")
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
lrsmc="${LRSMC:-$root/build-cpu/lrsmc}"
out="${1:-/tmp/lrsmc-mpi-scaling}"
data="$root/../shared/data"
processes="${PROCESSES:-1 2}"
mkdir -p "$out"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

source "$root/bench/median_epoch.sh"

# run NAME STEPS_PER_EPOCH FIT_ARGUMENTS...: one line per process count.
run() {
  local name=$1 steps=$2
  shift 2
  for p in $processes; do
    local launcher=()
    ((p > 1)) && launcher=(mpirun --oversubscribe --bind-to none -np "$p")
    "${launcher[@]}" "$lrsmc" fit "$@" --threads 1 --device cpu --out "$out/$name-$p.npz" \
      > "$out/$name-$p.log" 2>&1
    local epoch
    epoch=$(median_epoch "$out/$name-$p.npz.history.csv")
    awk -v n="$name" -v p="$p" -v e="$epoch" -v s="$steps" \
      'BEGIN { printf "%s\t%d processes\t%.4f s per epoch\t%.2f ms per step\n", n, p, e, 1000 * e / s }'
  done
}

if [[ -f "$data/eeg/EEG_data_zscored_reconstructed.npy" ]]; then
  run eeg 20 --data "$data/eeg/EEG_data_zscored_reconstructed.npy" --layout time,channels \
    --rank 3 --hidden 512 --nonlinearity clipped_relu --particles 10 --batch-size 10 --window 50 \
    --windows-per-epoch 200 --epochs 7 --lr 1e-3 --seed 1
else
  echo "no EEG recording under $data/eeg: EEG shape skipped"
fi
if [[ -f "$data/steinmetz/session01_spks.npy" ]]; then
  run steinmetz 15 --data "$data/steinmetz/session01_spks.npy" --layout trials,channels,time \
    --observation poisson --link softplus --rank 3 --hidden 128 --transition-noise diag \
    --initial-noise diag --proposal bootstrap --particles 64 --batch-size 8 --epochs 5 \
    --optimizer adam --lr 1e-3 --seed 1
else
  echo "no Steinmetz recording under $data/steinmetz: Steinmetz shape skipped"
fi
