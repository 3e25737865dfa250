#!/usr/bin/env bash
# Installs lrsmc's build dependencies (Debian/Ubuntu packages) when they are missing.
# The CUDA toolkit is optional: without nvcc the build configures CPU-only.
set -euo pipefail
packages=(cmake g++ make pkg-config libeigen3-dev nlohmann-json3-dev libcli11-dev libzip-dev
          libboost-context-dev
          openmpi-bin libopenmpi-dev  # data-parallel training over MPI ranks (mpirun tests)
          libgtest-dev libbenchmark-dev
          python3 python3-venv python3-dev)  # the Python package (scripts/test_python.sh)
missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" ||
    missing+=("$package")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  sudo_cmd=""
  [[ $(id -u) -ne 0 ]] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
