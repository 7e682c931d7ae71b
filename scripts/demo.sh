#!/usr/bin/env bash
# Sets up (scripts/setup.sh), then trains the C-RNN and the CNN baseline on the built-in
# task, prints both test accuracies and exports the C-RNN under savedmodels/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/crnn-keras demo "$@"
