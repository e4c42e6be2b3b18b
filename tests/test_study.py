"""The study runner behind run_all.sh: profile checked first, one line per failure, coalesced progress bars."""
import nbformat

from uvlib.study.runner import execute, main


def test_a_bad_profile_stops_before_any_notebook_runs(tmp_path, capsys):
    run_dir = tmp_path / "run"
    profile = tmp_path / "p.yaml"
    profile.write_text(f"run_dir: {run_dir}\nuv_sise: 64\n")
    assert main([str(profile)]) == 2
    captured = capsys.readouterr()
    assert captured.err.strip() == f"run_all.sh: {profile}: no notebook has a parameter 'uv_sise'; did you mean 'uv_size'?"
    assert captured.out == "" and not run_dir.exists()
    profile.write_text(f"run_dir: {run_dir}\n")
    assert main([str(profile), "99"]) == 2
    assert "no notebook '99'" in capsys.readouterr().err


def test_a_missing_earlier_stage_is_one_line_naming_the_notebook_to_run(tmp_path, capsys):
    run_dir = tmp_path / "run"
    profile = tmp_path / "p.yaml"
    profile.write_text(f"run_dir: {run_dir}\nuv_size: 64\n")
    assert main([str(profile), "01"]) == 1
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert err.startswith("run_all.sh: stopped, 01_pca.ipynb failed: MissingStageError: stage 00_data_prep")
    assert "run notebooks/00_data_prep.ipynb" in err and str(run_dir / "01_pca.ipynb") in err
    assert captured.out.strip() == f"== 01_pca.ipynb -> {run_dir / '01_pca.ipynb'}"


def test_executed_notebooks_keep_one_final_line_per_progress_bar(tmp_path):
    source = tmp_path / "bars.ipynb"
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("steps = 3", metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell("import time\nfrom tqdm.auto import tqdm\n"
                                          "for name in ('first', 'second'):\n"
                                          "    for _ in tqdm(range(steps), desc=name, mininterval=0):\n"
                                          "        time.sleep(0.01)\n"
                                          "print('done')")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, source)
    out = tmp_path / "bars-out.ipynb"
    execute(source, out, {"steps": 50})
    outputs = nbformat.read(out, as_version=4).cells[-1].outputs
    stderr = "".join(o["text"] for o in outputs if o.get("name") == "stderr")
    lines = [line for line in stderr.splitlines() if "%|" in line]    # bars; tqdm.auto may also warn once
    assert len(lines) == 2 and "\r" not in stderr, stderr
    assert lines[0].startswith("first: 100%") and "50/50" in lines[0] and lines[1].startswith("second: 100%")
    assert any(o.get("name") == "stdout" and o["text"] == "done\n" for o in outputs)
