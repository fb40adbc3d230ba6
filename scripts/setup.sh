#!/usr/bin/env bash
# Installs the Debian packages lepton needs to build, test and run its examples.
# Idempotent: when everything is present it only checks (about a second) and runs no apt-get.
#   scripts/setup.sh            core build + tests + examples
#   scripts/setup.sh --bench    also the benchmark peers (libtorch, oneDNN; OpenBLAS is always installed)
set -euo pipefail

packages=(
  build-essential cmake ninja-build git clang clang-format-16
  libxtensor-dev libxsimd-dev xtl-dev catch2 libboost1.81-dev
  nlohmann-json3-dev zlib1g-dev libbenchmark-dev libopenblas-dev
  dataset-fashion-mnist python3-numpy gnuplot-nox openmpi-bin libopenmpi-dev
)
for arg in "$@"; do
  case "$arg" in
    --bench) packages+=(libtorch-dev libdnnl-dev) ;;
    *) echo "setup.sh: unknown option '$arg' (known: --bench)" >&2; exit 2 ;;
  esac
done

missing=()
for p in "${packages[@]}"; do
  # dpkg-query prints "install ok installed" only for fully installed packages.
  if [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" != "install ok installed" ]; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "setup.sh: all ${#packages[@]} packages present"
  exit 0
fi

echo "setup.sh: installing ${missing[*]}"
sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "setup.sh: done"
