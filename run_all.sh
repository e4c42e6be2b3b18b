#!/usr/bin/env bash
# Run the whole study: every notebook in order with papermill and params/PROFILE.yaml, into runs/PROFILE/.
# Usage: ./run_all.sh [PROFILE]      (default: quick = the embedded demo set on a CPU)
set -euo pipefail
cd "$(dirname "$0")"
profile="${1:-quick}"
params="params/$profile.yaml"
if [ ! -f "$params" ]; then
  echo "run_all.sh: no profile '$profile' ($params missing); choose one of: $(ls params | sed 's/\.yaml//' | tr '\n' ' ')" >&2
  exit 2
fi
source scripts/ensure_env.sh
run_dir=$(python -c "from uvlib.params import load_profile, project_path; print(project_path(load_profile('$params')['run_dir']))")
mkdir -p "$run_dir"
for nb in notebooks/[0-9][0-9]_*.ipynb; do
  name=$(basename "$nb")
  echo "== $name -> $run_dir/$name"
  if ! papermill "$nb" "$run_dir/$name" -f "$params" -k python3 --cwd notebooks --no-progress-bar; then
    echo "run_all.sh: stopped, $name failed; its partial output is $run_dir/$name" >&2
    exit 1
  fi
done
echo "run_all.sh: done, outputs in $run_dir"
