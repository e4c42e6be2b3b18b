#!/usr/bin/env bash
# Run the whole study: every notebook in order with papermill and params/PROFILE.yaml, into runs/PROFILE/.
# Usage: ./run_all.sh [PROFILE] [NOTEBOOK ...]   (default: quick = the embedded demo set on a CPU;
#        NOTEBOOK: run only these, by name or number, e.g. ./run_all.sh quick 03 04)
# The profile is checked against the notebooks' parameters first; a failing notebook stops the run with one
# line (its error) and keeps its partial output in the run folder (see uvlib/study.py).
set -euo pipefail
cd "$(dirname "$0")"
profile="${1:-quick}"
params="params/$profile.yaml"
if [ ! -f "$params" ]; then
  echo "run_all.sh: no profile '$profile' ($params missing); choose one of: $(ls params | sed 's/\.yaml//' | tr '\n' ' ')" >&2
  exit 2
fi
source scripts/ensure_env.sh
exec python -m uvlib.study.runner "$params" "${@:2}"
