#!/usr/bin/env bash
# The whole test suite, set-up included: lint (ruff), types (mypy), tests (pytest, CPU).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_venv.sh dev 2>&1 | { grep -v "^WARNING: Location" || true; }
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
.venv/bin/ruff check laserkv evals cluster cli tests benchmarks scripts analysis reports
.venv/bin/mypy
.venv/bin/python -m pytest -q "$@"
