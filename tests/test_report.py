"""Run-folder contract: model files, metrics.json, the results table and the missing-stage errors."""
import json

import numpy as np
import pytest
import torch

from uvlib.models.mean_face import MeanFace
from uvlib.models.pca import MaskedPCA
from uvlib.models.pconv import PConvUNet, PConvUNetConfig
from uvlib.models.registry import load_model, load_stage_models, save_model
from uvlib.protocol.cases import Benchmark, TestCases
from uvlib.protocol.report import evaluate_methods, markdown_table, table_rows, write_table
from uvlib.protocol.runs import MissingStageError, collect_metrics, read_metrics, require, write_metrics


def tiny_maps(n=6, size=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    uv = torch.rand(n, 3, size, size, generator=g)
    observed = (torch.rand(n, 1, size, size, generator=g) > 0.3).float()
    atlas = torch.ones(size, size, dtype=torch.bool)
    return uv, observed, atlas


def test_models_round_trip_through_their_files(tmp_path):
    uv, observed, atlas = tiny_maps()
    known = observed
    pca = MaskedPCA(2, max_iter=5).fit(uv, observed, atlas, progress=False)
    save_model(tmp_path / "model-pca.pt", "masked_pca", 16, {"n_components": 2}, pca.state_dict())
    net = PConvUNet(PConvUNetConfig(uv_size=16, base_width=4)).eval()
    save_model(tmp_path / "model-pconv.pt", "pconv", 16, net.cfg.__dict__, net.state_dict())
    face = MeanFace().fit(uv, observed, atlas)
    save_model(tmp_path / "model-mean.pt", "mean_face", 16, {}, face.state_dict())
    expected = {"pca": pca.complete(uv * known, known), "pconv": net.complete(uv * known, known),
                "mean": face(uv * known, known)}
    models = load_stage_models(tmp_path)
    assert set(models) == set(expected)
    for name, fn in models.items():
        assert torch.allclose(fn(uv * known, known), expected[name], atol=1e-6), name
    fn, info = load_model(tmp_path / "model-pconv.pt")
    assert info == {"kind": "pconv", "uv_size": 16, "config": net.cfg.__dict__, "name": "pconv"}


def test_bad_model_files_and_kinds_are_one_line_errors(tmp_path):
    with pytest.raises(ValueError, match="kind 'wavelet' is unknown"):
        save_model(tmp_path / "m.pt", "wavelet", 16, {}, {})
    torch.save({"weights": 1}, tmp_path / "model-x.pt")
    with pytest.raises(ValueError, match="not a uvlib model file"):
        load_model(tmp_path / "model-x.pt")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_model(tmp_path / "model-none.pt")
    with pytest.raises(FileNotFoundError, match="no model-"):
        load_stage_models(tmp_path / "empty")


def test_missing_earlier_stage_names_the_notebook_to_run(tmp_path):
    with pytest.raises(MissingStageError, match=r"01_pca .* run notebooks/01_pca.ipynb"):
        require(tmp_path, "01_pca", "model-masked_pca_k32.pt")
    with pytest.raises(MissingStageError, match="no metrics.json"):
        read_metrics(tmp_path / "03_pconv")


def scores(psnr):
    bins = {b: {"psnr": psnr + i} for i, b in enumerate(("15-30", "30-45", "45-60", "60-75"))}
    overall = {"psnr": psnr, "ssim": 0.5, "l1": 0.1, "composite_psnr": psnr + 6, "n": 10}
    return {"overall": overall, "by_yaw_bin": bins, "by_kind": {"borrowed": {"psnr": psnr - 1}}}


def test_metrics_json_table_and_missing_stages(tmp_path):
    (tmp_path / "01_pca").mkdir()
    write_metrics(tmp_path / "01_pca", "01_pca", {"masked_pca_k32": {"params": {}, "scores": scores(20.0)}},
                  seed=3, params={"k": [32]})
    data = json.loads((tmp_path / "01_pca" / "metrics.json").read_text())
    assert data["seed"] == 3 and data["environment"]["torch"] == torch.__version__
    found, missing = collect_metrics(tmp_path)
    assert list(found) == ["01_pca"] and "03_pconv" in missing and "02_ann" in missing
    rows = table_rows(found)
    assert rows[0]["method"] == "masked_pca_k32" and rows[0]["psnr 60-75"] == 23.0
    assert rows[0]["psnr borrowed"] == 19.0
    md = write_table(rows, tmp_path / "results")
    assert md.splitlines()[2].startswith("| 01_pca | masked_pca_k32 | 10 | 20.00 | 0.5000")
    assert (tmp_path / "results" / "results.csv").read_text().startswith("stage,method,n,psnr")
    assert markdown_table([]) == "(no results)"


def test_metrics_and_table_record_the_training_budget_of_models_the_stage_trained(tmp_path):
    uv, observed, atlas = tiny_maps()
    hole = np.zeros((len(uv), 16, 16), dtype=bool)
    hole[:, :, :8] = True
    bench = Benchmark(uv, observed, atlas, TestCases(np.arange(len(uv)), hole, np.array(["pose"] * len(uv)),
                                                      np.full(len(uv), 50.0)), [{"id": str(i)} for i in range(len(uv))])
    face = MeanFace().fit(uv, observed, atlas)
    budget = {"images_seen": 6400, "train_seconds": 90.0, "device": "cpu: x86_64 (2 threads)"}
    save_model(tmp_path / "model-trained.pt", "mean_face", 16, {}, face.state_dict(), budget=budget)
    evaluate_methods({"trained": face, "untrained": face}, bench, tmp_path, "05_gan", 0, {}, progress=False)
    methods = read_metrics(tmp_path)["methods"]
    assert methods["trained"]["budget"] == budget and "budget" not in methods["untrained"]
    rows = table_rows({"05_gan": {"methods": methods}})
    assert (rows[0]["images seen"], rows[0]["train min"]) == (6400, 1.5)
    assert (rows[1]["images seen"], rows[1]["train min"]) == (None, None)
    md = markdown_table(rows).splitlines()
    assert md[0].endswith("| images seen | train min |")
    assert md[2].endswith("| 6400 | 1.50 |") and md[3].endswith("|  |  |")


def test_best_stage_models_picks_the_best_method_that_has_a_model_file(tmp_path):
    from uvlib.study.faces3d import best_stage_models
    (tmp_path / "04_x").mkdir()
    (tmp_path / "04_x" / "model-b.pt").write_bytes(b"")
    metrics = {"04_x": {"methods": {"a": {"scores": scores(30.0)}, "b": {"scores": scores(25.0)},
                                    "c": {"scores": scores(20.0)}}},
               "baselines": {"methods": {"mean_face": {"scores": scores(15.0)}}}}
    assert best_stage_models(tmp_path, metrics) == {"04_x/b": tmp_path / "04_x" / "model-b.pt"}
