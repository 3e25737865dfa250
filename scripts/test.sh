#!/usr/bin/env bash
# Sets up, builds and runs every test (GPU tests skip with a message when there is no GPU;
# tests that need ../shared/data skip when it is absent).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/scripts/setup.sh"
"$root/scripts/build.sh"
cd "${LRSMC_BUILD_DIR:-$root/build}"
ctest --output-on-failure -j "$(nproc)" --timeout 1800
