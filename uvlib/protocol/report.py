"""Scoring a stage's methods into its run folder, and the one results table over all stages.

Every stage calls `evaluate_methods`, which writes the run-folder contract: metrics.json (per method: params,
protocol scores and, for a model this stage trained, its training budget read from its model file: images
seen, train seconds, device), scores-<method>.csv (per test case) and showcase.npz (the same fixed test cases
completed by each method, for the results notebook's side-by-side grid).
"""
import csv
from pathlib import Path

import numpy as np
import torch

from uvlib.models.registry import model_budget
from uvlib.protocol.cases import YAW_BIN_NAMES, Benchmark, complete_cases, score
from uvlib.protocol.runs import write_metrics

METRIC_COLUMNS = ("psnr", "ssim", "l1", "composite_psnr")


def evaluate_methods(methods: dict, bench: Benchmark, out_dir, stage: str, seed: int, params: dict,
                     method_params=None, device="cpu", progress=True, **extra) -> dict:
    """Score every completion function of `methods` on `bench` and write metrics.json and the showcase."""
    out_dir = Path(out_dir)
    method_params = method_params or {}
    results, showcase = {}, {}
    show = bench.showcase()
    for name, fn in methods.items():
        summary, records = score(fn, bench, device=device, progress=progress, desc=f"scoring {name}")
        results[name] = {"params": method_params.get(name, {}), "scores": summary}
        model_file = out_dir / f"model-{name}.pt"
        budget = model_budget(model_file) if model_file.is_file() else {}
        if budget:
            results[name]["budget"] = budget
        write_records(out_dir / f"scores-{name}.csv", records)
        showcase[name] = complete_cases(fn, bench, show, device=device).numpy()
    target, _, _, known = bench.case(show)
    np.savez_compressed(out_dir / "showcase.npz", cases=show, target=target.numpy(), known=known.numpy(),
                        hole_yaw=bench.cases.hole_yaw[show], **{f"method:{k}": v for k, v in showcase.items()})
    write_metrics(out_dir, stage, results, seed, params, **extra)
    return results


def write_records(path: Path, records):
    """One CSV row per record (the first record's keys are the columns)."""
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(records[0]))
        writer.writeheader()
        writer.writerows(records)


def table_rows(metrics_by_stage: dict) -> list:
    """One row per (stage, method): overall scores, hole PSNR per yaw bin and the training budget (images seen,
    minutes; blank for a method that did not learn in that stage)."""
    rows = []
    for stage, metrics in metrics_by_stage.items():
        for method, entry in metrics["methods"].items():
            s = entry["scores"]
            row = {"stage": stage, "method": method, "n": s["overall"]["n"]}
            row.update({m: s["overall"][m] for m in METRIC_COLUMNS})
            row.update({f"psnr {b}": s["by_yaw_bin"].get(b, {}).get("psnr", float("nan")) for b in YAW_BIN_NAMES})
            row["psnr borrowed"] = s.get("by_kind", {}).get("borrowed", {}).get("psnr", float("nan"))
            budget = entry.get("budget") or {}
            row["images seen"] = budget.get("images_seen")
            row["train min"] = budget["train_seconds"] / 60 if "train_seconds" in budget else None
            rows.append(row)
    return rows


def markdown_table(rows) -> str:
    if not rows:
        return "(no results)"
    head = list(rows[0])
    fmt = lambda v: "" if v is None else f"{v:.4f}" if isinstance(v, float) and abs(v) < 1 \
        else f"{v:.2f}" if isinstance(v, float) else str(v)
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(fmt(r[h]) for h in head) + " |" for r in rows]
    return "\n".join(lines)


def write_table(rows, directory, name="results"):
    """results.csv and results.md in `directory`; returns the Markdown."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if rows:
        write_records(directory / f"{name}.csv", rows)
    md = markdown_table(rows)
    (directory / f"{name}.md").write_text(md + "\n")
    return md


def psnr_by_yaw_figure(rows, ax):
    """Hole PSNR against the hole's yaw bin, one line per method."""
    for row in rows:
        ax.plot(YAW_BIN_NAMES, [row[f"psnr {b}"] for b in YAW_BIN_NAMES], marker="o", label=f"{row['method']}")
    ax.set_xlabel("simulated head yaw of the hole (degrees)")
    ax.set_ylabel("hole PSNR (dB)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)


def showcase_grid(directory):
    """(row labels, column labels, images[r][c]) from a stage folder's showcase.npz, for figures."""
    z = np.load(Path(directory) / "showcase.npz")
    methods = [k.split(":", 1)[1] for k in z.files if k.startswith("method:")]
    known = torch.from_numpy(z["known"])
    inputs = torch.from_numpy(z["target"]) * known
    cols = ["input", "truth"] + methods
    images = [[inputs[i], torch.from_numpy(z["target"][i])] + [torch.from_numpy(z[f"method:{m}"][i]) for m in methods]
              for i in range(len(z["cases"]))]
    return [f"yaw {y:+.0f}" for y in z["hole_yaw"]], cols, images


def stages_showcase(directories):
    """showcase_grid of several stage folders side by side (same test cases): the input and truth columns once,
    then every stage's methods; folders without a showcase.npz are skipped."""
    labels, columns, images = [], None, []
    for directory in directories:
        if not (Path(directory) / "showcase.npz").exists():
            continue
        row_labels, cols, grid_images = showcase_grid(directory)
        if columns is None:
            labels, columns, images = row_labels, cols, grid_images
        else:
            columns += cols[2:]
            images = [a + b[2:] for a, b in zip(images, grid_images)]
    return labels, columns or [], images
