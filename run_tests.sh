#!/usr/bin/env bash
# Run the tests: uvlib unit tests plus every notebook executed under nbval (--nbval-lax) on the tiny profile.
# Usage: ./run_tests.sh [extra pytest args]
set -euo pipefail
cd "$(dirname "$0")"
source scripts/ensure_env.sh
nb_dir=runs/tiny/notebooks
rm -rf runs/tiny
mkdir -p "$nb_dir"
for nb in notebooks/[0-9][0-9]_*.ipynb; do
  papermill --prepare-only "$nb" "$nb_dir/$(basename "$nb")" -f params/tiny.yaml -k python3 --no-progress-bar 2>/dev/null
done
python -m pytest tests "$nb_dir" --nbval-lax -p no:cacheprovider "$@"
