#!/usr/bin/env bash
# Sets up (scripts/setup.sh) and runs the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
# Debian packages (root only): the real Fashion-MNIST files, for the data tests, and a C++
# compiler, for the native LSTM sweep kernels (crnn_keras/layers/native.py).
packages=()
[ -d /usr/share/datasets/fashion-mnist ] || packages+=(dataset-fashion-mnist)
command -v g++ >/dev/null || packages+=(g++)
if [ ${#packages[@]} -gt 0 ] && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${packages[@]}") \
    || echo "warning: could not install ${packages[*]}; Fashion-MNIST tests use generated files, native-kernel tests skip"
fi
bash scripts/setup.sh
export TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-2}
.venv/bin/ruff check .
exec .venv/bin/python -m pytest -q "$@"
