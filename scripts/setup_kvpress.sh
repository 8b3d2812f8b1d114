#!/usr/bin/env bash
# Installs NVIDIA kvpress (the rivals' bridge, laserkv/kvpress_bridge.py) into .venv, or into the
# Python given as $PYTHON. kvpress 0.5.5 pins transformers<5.3 while laserkv runs on 5.17-5.23, so
# it is installed with --no-deps (pip would otherwise downgrade transformers, or refuse), plus the
# two of its dependencies its import needs that laserkv does not already bring (cachetools, fire;
# kvpress asks for fire<0.7, whose only release is a source archive; it imports fire for a CLI only).
# The one incompatibility with transformers >= 5.4, the cache_position kwarg its hooks read, is
# restored by laserkv.hooks.cache_position_restored while a press runs. Wheels in $WHEELS (a
# directory) are used instead of the index when given (machines without one).
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-.venv/bin/python}
pip=("$python" -m pip install -q --disable-pip-version-check)
[ -n "${WHEELS:-}" ] && pip+=(--no-index --find-links "$WHEELS")
"$python" -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('kvpress') is None)" 2>/dev/null \
  && exit 0
"${pip[@]}" "cachetools>=5.5.2,<6" "fire>=0.6"
"${pip[@]}" --no-deps "kvpress==0.5.5"
"$python" -c "import kvpress" 2>/dev/null || { echo "kvpress installed but does not import" >&2; exit 1; }
