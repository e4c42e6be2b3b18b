"""The whole study as run_all.sh runs it: the numbered notebooks in order, executed by papermill with one profile.

    python -m uvlib.study.runner params/quick.yaml                 # every notebook, into the profile's run_dir
    python -m uvlib.study.runner params/quick.yaml 03 04           # only these, e.g. to redo two stages

The profile is checked against the notebooks' parameters (uvlib.study.params) before any notebook runs, and each
notebook gets the profile's values for the parameters it declares. Executed notebooks keep each output stream
coalesced (nbclient's coalesce_streams): a progress bar leaves its final line, not every refresh. A notebook
that fails stops the run with one line, the error it raised (for a missing earlier stage: which notebook to
run first); its full traceback stays in the executed notebook.
"""
import argparse
import sys
from pathlib import Path

from uvlib.study.params import (NOTEBOOKS, ProfileError, declared_parameters, load_profile, notebook_parameters,
                                project_path)


class NotebookFailed(RuntimeError):
    """A notebook raised; the message is one line: the notebook, its error, where its traceback is."""


def study_notebooks(selection=()) -> list:
    """The numbered notebooks in order; `selection` keeps those whose name starts with one of its entries."""
    notebooks = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    for wanted in selection:
        if not any(nb.name.startswith(wanted) for nb in notebooks):
            raise ProfileError(f"no notebook {wanted!r}; use names or numbers of {[nb.stem for nb in notebooks]}")
    return [nb for nb in notebooks if not selection or any(nb.name.startswith(w) for w in selection)]


def execute(notebook: Path, output: Path, profile: dict):
    """Run one notebook with the profile's values for the parameters it declares; NotebookFailed if it raises."""
    import papermill
    from papermill.exceptions import PapermillExecutionError
    declared = notebook_parameters(notebook)
    parameters = {k: v for k, v in profile.items() if k in declared}
    try:
        papermill.execute_notebook(str(notebook), str(output), parameters=parameters, kernel_name="python3",
                                   cwd=str(notebook.parent), progress_bar=False, coalesce_streams=True)
    except PapermillExecutionError as e:
        reason = (str(e.evalue).strip().splitlines() or [""])[0]
        raise NotebookFailed(f"{notebook.name} failed: {e.ename}: {reason} (traceback in {output})") from None


def run_study(profile_path, selection=(), out=print) -> Path:
    """Execute the (selected) notebooks in order into the profile's run folder; returns that folder."""
    profile = load_profile(profile_path)
    notebooks = study_notebooks(selection)
    run_dir = project_path(profile.get("run_dir") or declared_parameters()["run_dir"][0])
    run_dir.mkdir(parents=True, exist_ok=True)
    for notebook in notebooks:
        out(f"== {notebook.name} -> {run_dir / notebook.name}")
        execute(notebook, run_dir / notebook.name, profile)
    return run_dir


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="run_all.sh", description="Run the study's notebooks with papermill.")
    parser.add_argument("profile", help="params/NAME.yaml")
    parser.add_argument("notebooks", nargs="*", help="only these notebooks (names or numbers, e.g. 03 04)")
    args = parser.parse_args(argv)
    try:
        run_dir = run_study(args.profile, args.notebooks, out=lambda line: print(line, flush=True))
    except ProfileError as e:
        print(f"run_all.sh: {e}", file=sys.stderr)
        return 2
    except NotebookFailed as e:
        print(f"run_all.sh: stopped, {e}", file=sys.stderr)
        return 1
    print(f"run_all.sh: done, outputs in {run_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
