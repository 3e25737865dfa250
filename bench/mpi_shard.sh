#!/usr/bin/env bash
# lrsmc fit under mpirun with every process reading the whole recording (--shard off) and with
# each reading only its share of the trials (--shard on), for the Steinmetz shape of
# bench/mpi_scaling.sh (session 01, 734 neurons, Poisson, rank 3, 128 units, trials of 40 bins,
# K = 64, bootstrap), with a fifth of the trials held out and evaluated each epoch, for batches
# of 8 trials and batches of every training trial (91). Prints each run's step time (median epoch time after the first, over the optimizer
# steps per epoch) and each process's peak resident memory (GNU time's %M), and checks that the
# two runs' models are bitwise equal.
#   bash bench/mpi_shard.sh [OUT_DIR]   (LRSMC=path/to/lrsmc, PROCESSES=2, BATCHES="8 91")
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
lrsmc="${LRSMC:-$root/build-cpu/lrsmc}"
out="${1:-/tmp/lrsmc-mpi-shard}"
data="$root/../shared/data/steinmetz/session01_spks.npy"
processes="${PROCESSES:-2}"
batches="${BATCHES:-8 91}"
mkdir -p "$out"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
if [[ ! -f "$data" ]]; then
  echo "no Steinmetz recording at $data: nothing measured"
  exit 0
fi
source "$root/bench/median_epoch.sh"

for batch in $batches; do
  for shard in off on; do
    run="$out/steinmetz-$batch-$shard"
    mpirun --oversubscribe --bind-to none -np "$processes" sh -c \
      'exec /usr/bin/time -f "peak resident memory %M KiB" -o "$0.$OMPI_COMM_WORLD_RANK" "$@"' \
      "$run.memory" "$lrsmc" fit --data "$data" --layout trials,channels,time \
      --observation poisson --link softplus --rank 3 --hidden 128 --transition-noise diag \
      --initial-noise diag --proposal bootstrap --particles 64 --batch-size "$batch" --epochs 5 \
      --optimizer adam --lr 1e-3 --seed 1 --held-out 0.2 --threads 1 --device cpu \
      --shard "$shard" --out "$run.npz" > "$run.log" 2>&1
    steps=$(grep -o 'epochs of [0-9]* steps' "$run.log" | grep -o '[0-9]*' | tail -1)
    epoch=$(median_epoch "$run.npz.history.csv")
    awk -v b="$batch" -v s="$shard" -v p="$processes" -v e="$epoch" -v n="$steps" 'BEGIN {
      printf "batches of %d\t--shard %s\t%d processes\t%.2f ms per step\n", b, s, p, 1000 * e / n }'
    for file in "$run".memory.*; do echo "  process ${file##*.}: $(tail -1 "$file")"; done
  done
  cmp -s "$out/steinmetz-$batch-off.npz" "$out/steinmetz-$batch-on.npz" &&
    echo "  the two models are bitwise equal" || echo "  the two models differ"
  grep -h "process 0 holds" "$out/steinmetz-$batch-on.log" || true
done
