#!/usr/bin/env bash
# Sets up, builds, and runs the demo: data from a built-in rank-2 oscillator teacher, a fitted
# student, and how close the student's held-out ELBO comes to the teacher's.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/scripts/setup.sh"
"$root/scripts/build.sh"
"${LRSMC_BUILD_DIR:-$root/build}/lrsmc" demo --out-dir "$root/demo_output" "$@"
