#!/usr/bin/env bash
# Short runs on the demo's teacher: the plain defaults with a fixed and with the automatic final
# learning rate, and the preset 'small' at two epoch budgets. Each student and the teacher are
# scored on 50 new trials with 1000 particles and the same draws (`lrsmc filter`, ELBO per step).
# Usage: bench/preset_short_runs.sh [BUILD_DIR] [OUT_DIR]   (default: build, /tmp/lrsmc-presets)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
lrsmc="$(cd "${1:-$root/build}" && pwd)/lrsmc"
out="${2:-/tmp/lrsmc-presets}"
mkdir -p "$out"
cd "$out"
# The teacher and its 150 trials of 75 steps: the demo's files. Its one-epoch student misses the
# demo's 2% target, so the demo exits with 1; the data it wrote first is what is used.
rm -rf demo
"$lrsmc" demo --epochs 1 --eval-particles 10 --out-dir demo --quiet > /dev/null ||
  [[ -f demo/data.npz && -f demo/teacher.npz ]]
"$lrsmc" simulate --model demo/teacher.npz --trials 50 --steps 75 --seed 12345 -o test.npz > /dev/null
score() {
  "$lrsmc" filter --model "$1" --data test.npz --field observations --particles 1000 --seed 7 \
    --out-latents /dev/null --out-elbo /dev/null | sed -E 's/^ELBO ([-0-9.]+) per step.*/\1/'
}
teacher=$(score demo/teacher.npz)
echo "teacher: held-out ELBO per step $teacher"
echo "| run | epochs | held-out ELBO | gap to the teacher | training time |"
echo "| --- | --- | --- | --- | --- |"
run() {
  local label=$1 epochs=$2
  shift 2
  local start end elbo
  start=$(date +%s.%N)
  "$lrsmc" fit --data demo/data.npz --field observations --epochs "$epochs" --quiet \
    --out "$label.npz" "$@" > "$label.log" 2>&1
  end=$(date +%s.%N)
  elbo=$(score "$label.npz")
  awk -v l="$label $*" -v e="$epochs" -v s="$elbo" -v t="$teacher" -v a="$start" -v b="$end" \
    'BEGIN { printf "| `%s` | %d | %.3f | %.1f%% | %.0f s |\n", l, e, s, 100 * (t - s) / (t < 0 ? -t : t), b - a }'
}
run plain 400 --rank 2 --lr-end 1e-6
run plain 400 --rank 2
run small 200 --preset small
run small 400 --preset small
