#!/usr/bin/env bash
# Sets up, builds, and runs the demo: data from a built-in rank-2 oscillator teacher, a fitted
# student, and how close the student's held-out ELBO comes to the teacher's; then the student
# is judged on the held-out trials by lrsmc evaluate (demo_output/evaluation.json).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/scripts/setup.sh"
"$root/scripts/build.sh"
lrsmc="${LRSMC_BUILD_DIR:-$root/build}/lrsmc"
"$lrsmc" demo --out-dir "$root/demo_output" "$@"
echo
"$lrsmc" evaluate --model "$root/demo_output/student.npz" --data "$root/demo_output/data.npz" \
  --field held_out --repeats 5 --out-json "$root/demo_output/evaluation.json"
