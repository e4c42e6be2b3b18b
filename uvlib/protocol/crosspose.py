"""A real cross-pose test, beside the pose-simulated one: real self-occlusion, scored against another photo.

Within one group (a person or a clip), every turned face (|yaw| >= MIN_TURNED_YAW) is paired with the group's
most frontal face, the reference, when the reference is at least MIN_YAW_GAP degrees more frontal. A method
completes the turned map from its own visible texels; it is scored on the evaluation texels: seen in the
reference and hidden in the turned map (inside the atlas). The two photos differ in light and camera, so the
reference is first mapped into the turned photo's colours by a per-channel gain and offset fitted on the
texels both maps saw (matching their means and standard deviations; least squares on request, see
fit_colour). Only the largest face of a photo (face 0) takes part: the other faces of a person's photo are
usually someone else.

Pairs are a pure function of the dataset and the settings (no randomness), and cheap to build, so they are
rebuilt on every use rather than cached.

A dataset that also lent training data (a stage's metrics.json `external_data`: extra maps or real holes from
its train split) may only be scored on people outside that split: check_unseen refuses anything else.
"""
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from uvlib.data.dataset import SPLITS, Dataset, DatasetError, open_dataset
from uvlib.protocol.holes import yaw_bin_of
from uvlib.protocol.metrics import aggregate, hole_scores
from uvlib.protocol.report import markdown_table, write_records
from uvlib.protocol.runs import write_metrics

MIN_TURNED_YAW = 15.0        # |yaw| of a turned face, degrees
MIN_YAW_GAP = 15.0           # the reference's |yaw| is at least this much smaller
MIN_COMMON_FRACTION = 0.10   # texels seen in both maps (for the colour fit), as a fraction of the atlas
MIN_EVAL_FRACTION = 0.01     # evaluation texels, as a fraction of the atlas
GAIN_RANGE = (0.25, 4.0)     # a fitted gain outside it means the maps do not show comparable skin and light
COLOUR_FITS = ("moments", "least_squares")
TABLE_COLUMNS = ("psnr", "ssim", "l1")


def fit_colour(source: np.ndarray, target: np.ndarray, mask: np.ndarray, method="moments"):
    """Per-channel (gain, offset), each (3,), mapping source colours onto target colours over `mask`.

    source, target: (S,S,3) float colours; mask: (S,S) bool.
    "moments": gain = std(target) / std(source), offset matching the means (the reduced-major-axis line).
    "least_squares": minimise |gain * source + offset - target|^2. Two photos' texels agree only loosely
    (mesh fits and expressions differ: median per-texel correlation 0.29 on cfp-dev frontal-profile pairs,
    0.35 on the demo's), so least squares shrinks the gain towards 0 (regression dilution: a gain under 0.25,
    so skipped, for 80 of 147 cfp-dev test pairs) and turns the reference into a flat colour; matching the
    moments maps one light onto the other without that bias. Both give a known
    gain and offset back exactly when target = gain * source + offset.
    """
    if method not in COLOUR_FITS:
        raise ValueError(f"colour fit {method!r} is unknown; use one of {COLOUR_FITS}")
    x, y = source[mask].astype(np.float64), target[mask].astype(np.float64)     # (M, 3)
    if method == "moments":
        gain = y.std(0) / np.maximum(x.std(0), 1e-12)
        return gain, y.mean(0) - gain * x.mean(0)
    gain, offset = np.empty(3), np.empty(3)
    for c in range(3):
        (gain[c], offset[c]), *_ = np.linalg.lstsq(np.stack([x[:, c], np.ones(len(x))], 1), y[:, c], rcond=None)
    return gain, offset


def apply_colour(uv: np.ndarray, gain, offset) -> np.ndarray:
    """(...,S,S,3) colours in [0,1] mapped by a per-channel gain and offset (broadcast), clipped to [0,1]."""
    return np.clip(uv * np.asarray(gain) + np.asarray(offset), 0.0, 1.0)


@dataclass
class CrossPose:
    """The pairs of one dataset split and the maps they use."""
    uv: np.ndarray          # (F,S,S,3) uint8: every face taking part
    visible: np.ndarray     # (F,S,S) bool
    atlas: np.ndarray       # (S,S) bool
    pairs: list             # per pair: ids, group, yaws, yaw_bin, texel counts, gain, offset, indices into uv
    skipped: dict           # reason -> number of candidate pairs skipped
    settings: dict          # dataset, split and thresholds, for metrics.json

    def __len__(self):
        return len(self.pairs)

    def batch(self, idx):
        """(turned uv, known, target, reference visibility, hole) tensors of pairs `idx`, all (B,C,S,S).

        target is the colour-normalised reference; hole is what the turned map did not see."""
        atlas = torch.from_numpy(self.atlas).float()
        turned = np.array([self.pairs[i]["turned_index"] for i in idx])
        reference = np.array([self.pairs[i]["reference_index"] for i in idx])
        gain = np.stack([self.pairs[i]["gain"] for i in idx])[:, None, None, :]
        offset = np.stack([self.pairs[i]["offset"] for i in idx])[:, None, None, :]
        target = apply_colour(self.uv[reference] / 255.0, gain, offset)
        as_tensor = lambda a: torch.from_numpy(np.ascontiguousarray(a)).float()
        uv = as_tensor(self.uv[turned]).permute(0, 3, 1, 2) / 255
        turned_seen = as_tensor(self.visible[turned]).unsqueeze(1)
        return (uv, turned_seen * atlas, as_tensor(target).permute(0, 3, 1, 2),
                as_tensor(self.visible[reference]).unsqueeze(1), 1 - turned_seen)

    def evaluation_mask(self, i) -> np.ndarray:
        """(S,S) bool: texels of pair i seen in the reference and hidden in the turned map, inside the atlas."""
        p = self.pairs[i]
        return self.visible[p["reference_index"]] & ~self.visible[p["turned_index"]] & self.atlas

    def summary(self) -> str:
        groups = len({p["group"] for p in self.pairs})
        skipped = ", ".join(f"{k}: {v}" for k, v in sorted(self.skipped.items())) or "none"
        split = self.settings["split"]
        return f"{len(self)} cross-pose pairs from {groups} groups of split {split!r}; skipped {skipped}"


def split_rows(ds: Dataset, split: str) -> list:
    """Rows of one split, or of every split for split='all' (a dataset no model trained on)."""
    if split == "all":
        return list(ds.rows)
    if split not in SPLITS:
        raise DatasetError(f"split {split!r} is unknown; use one of {SPLITS} or 'all'")
    return ds.split_rows(split)


def people_trained_on(ds: Dataset, source: dict) -> set:
    """Groups (people) of `ds` with a photo in the split a stage trained on, as its metrics.json's external_data
    records it ({"path", "photos", "split", ...}): that dataset folder, or another prepared from the same photos
    (with other groups or split seed: the photos decide). Empty for data from other photos."""
    if Path(source["path"]).resolve() == ds.root.resolve():
        lent = ds
    elif source.get("photos") and source["photos"] == ds.info.get("source"):
        try:
            lent = open_dataset(source["path"])
        except DatasetError as e:
            raise DatasetError(f"cannot tell which people of {ds.root} were trained on: {e}") from None
    else:
        return set()
    photos = {r["photo"] for r in lent.split_rows(source["split"])}
    return {r["group"] for r in ds.rows if r["photo"] in photos}


def check_unseen(ds: Dataset, split: str, metrics_by_stage: dict) -> None:
    """Raise ValueError (one line) if split `split` ('all' for every split) of `ds` holds a person whose photos a
    stage took training maps or holes from (its metrics.json `external_data`)."""
    groups = {r["group"] for r in split_rows(ds, split)}
    for stage, metrics in metrics_by_stage.items():
        for role, source in (metrics.get("external_data") or {}).items():
            seen = groups & people_trained_on(ds, source)
            if seen:
                raise ValueError(f"split {split!r} of {ds.root} holds {len(seen)} people whose photos {stage} trained "
                                 f"on ({role} from split {source['split']!r} of {source['dataset']}); score its "
                                 f"test split instead (crosspose_dataset_split: test; uvlib crosspose --split test)")


def stage_records(paths) -> dict:
    """{stage folder name: its metrics.json} for the stage folders of `paths` (model files, stage folders or run
    folders, as `uvlib crosspose --models` takes them) that have one: what check_unseen reads."""
    folders = set()
    for path in map(Path, paths):
        folders |= {path.parent} if path.is_file() else {path} | {d for d in path.glob("*") if d.is_dir()}
    return {d.name: json.loads((d / "metrics.json").read_text()) for d in sorted(folders)
            if (d / "metrics.json").is_file()}


def candidate_pairs(rows, min_yaw=MIN_TURNED_YAW, min_gap=MIN_YAW_GAP) -> list:
    """[(turned row, reference row)]: per group, the face nearest a frontal view (smallest yaw and pitch)
    is the reference of every face turned at least min_yaw and min_gap degrees further; sorted by group, id."""
    groups = {}
    for r in rows:
        if r["face"] == 0:
            groups.setdefault(r["group"], []).append(r)
    pairs = []
    for group in sorted(groups):
        faces = sorted(groups[group], key=lambda r: r["id"])
        reference = min(faces, key=lambda r: (math.hypot(r["yaw"], r["pitch"]), r["id"]))
        pairs += [(r, reference) for r in faces
                  if abs(r["yaw"]) >= min_yaw and abs(r["yaw"]) - abs(reference["yaw"]) >= min_gap]
    return pairs


def _no_pairs_reason(ds: Dataset, split: str, rows, min_yaw, min_gap) -> str:
    faces = [r for r in rows if r["face"] == 0]
    sizes = {}
    for r in faces:
        sizes[r["group"]] = sizes.get(r["group"], 0) + 1
    turned = sum(abs(r["yaw"]) >= min_yaw for r in faces)
    return (f"split {split!r} of {ds.root} gives no cross-pose pairs: {len(faces)} faces in {len(sizes)} groups, "
            f"{sum(n > 1 for n in sizes.values())} groups with two or more faces, {turned} faces turned "
            f"|yaw| >= {min_yaw:g}, none with a face of its group {min_gap:g} degrees more frontal; prepare photos "
            f"grouped by person (`uvlib prep PHOTOS DS --group-by folder` or `prefix`) with frontal and turned "
            f"photos of each person, or try another --split (or 'all')")


def build_pairs(ds: Dataset, split="test", min_yaw=MIN_TURNED_YAW, min_gap=MIN_YAW_GAP,
                min_common_fraction=MIN_COMMON_FRACTION, min_eval_fraction=MIN_EVAL_FRACTION,
                colour_fit="moments") -> CrossPose:
    """The cross-pose pairs of a split ('all' for every split), with their colour normalisation.

    Skips a pair with fewer common texels than min_common_fraction of the atlas, fewer evaluation texels than
    min_eval_fraction of it, or a fitted gain outside GAIN_RANGE in some channel; raises DatasetError saying
    why when no pair is left."""
    if colour_fit not in COLOUR_FITS:
        raise ValueError(f"colour fit {colour_fit!r} is unknown; use one of {COLOUR_FITS}")
    rows = split_rows(ds, split)
    candidates = candidate_pairs(rows, min_yaw, min_gap)
    if not candidates:
        raise DatasetError(_no_pairs_reason(ds, split, rows, min_yaw, min_gap))
    atlas = ds.atlas().numpy()
    min_common = math.ceil(min_common_fraction * atlas.sum())
    min_eval = math.ceil(min_eval_fraction * atlas.sum())
    ids = sorted({r["id"] for pair in candidates for r in pair})
    index = {item: k for k, item in enumerate(ids)}
    uv, visible = zip(*(ds.item(item) for item in ids))
    uv, visible = np.stack(uv), np.stack(visible) & atlas
    pairs, skipped = [], {}
    for turned, reference in candidates:
        t, r = index[turned["id"]], index[reference["id"]]
        common = visible[t] & visible[r]
        n_eval = int((visible[r] & ~visible[t]).sum())
        reason = None
        if common.sum() < min_common:
            reason = f"under {min_common} common texels"
        elif n_eval < min_eval:
            reason = f"under {min_eval} evaluation texels"
        else:
            gain, offset = fit_colour(uv[r] / 255.0, uv[t] / 255.0, common, colour_fit)
            if not ((gain >= GAIN_RANGE[0]) & (gain <= GAIN_RANGE[1])).all():
                reason = f"colour gain outside {GAIN_RANGE[0]:g}-{GAIN_RANGE[1]:g}"
        if reason:
            skipped[reason] = skipped.get(reason, 0) + 1
            continue
        pairs.append({"turned": turned["id"], "reference": reference["id"], "group": turned["group"],
                      "turned_yaw": turned["yaw"], "reference_yaw": reference["yaw"],
                      "yaw_bin": yaw_bin_of(turned["yaw"]), "common_texels": int(common.sum()),
                      "evaluation_texels": n_eval, "gain": gain, "offset": offset,
                      "turned_index": t, "reference_index": r})
    settings = {"dataset": str(ds.root), "split": split, "min_turned_yaw": min_yaw, "min_yaw_gap": min_gap,
                "min_common_texels": min_common, "min_evaluation_texels": min_eval, "gain_range": list(GAIN_RANGE),
                "colour_fit": colour_fit}
    if not pairs:
        raise DatasetError(f"all {len(candidates)} cross-pose candidate pairs of split {split!r} of {ds.root} were "
                           f"skipped ({skipped}); lower --min-yaw/--min-gap or prepare photos at a larger --size")
    return CrossPose(uv, visible, atlas, pairs, skipped, settings)


@torch.no_grad()
def score_pairs(complete_fn, xp: CrossPose, batch_size=32, device="cpu", progress=True, desc="cross-pose"):
    """Score a completion function `fn(uv_in, known) -> uv` on every pair. Returns (summary, per-pair records);
    the summary holds 'overall' and 'by_yaw_bin' (the turned face's) means, each with its number of pairs n."""
    atlas = torch.from_numpy(xp.atlas).to(device)
    records = []
    for start in tqdm(range(0, len(xp), batch_size), desc=desc, disable=not progress):
        idx = range(start, min(start + batch_size, len(xp)))
        uv, known, target, observed, hole = (t.to(device) for t in xp.batch(idx))
        pred = complete_fn(uv * known, known).clamp(0, 1)
        scores = {k: v.cpu().numpy() for k, v in hole_scores(pred, target, observed, hole, atlas).items()}
        for j, i in enumerate(idx):
            p = xp.pairs[i]
            records.append({"turned": p["turned"], "reference": p["reference"], "group": p["group"],
                            "turned_yaw": p["turned_yaw"], "yaw_bin": p["yaw_bin"],
                            **{k: float(v[j]) for k, v in scores.items()}})
    return aggregate(records, by=("yaw_bin",)), records


def evaluate_crosspose(methods: dict, xp: CrossPose, out_dir, seed=0, params=None, device="cpu", progress=True) -> dict:
    """Score every method on the pairs; writes metrics.json, pairs.csv and scores.csv (per pair and method)
    into out_dir. Returns {method: {"params": {}, "scores": summary}}."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    results, all_records = {}, []
    for name, fn in methods.items():
        summary, records = score_pairs(fn, xp, device=device, progress=progress, desc=f"cross-pose {name}")
        results[name] = {"params": {}, "scores": summary}
        all_records += [{"method": name, **r} for r in records]
    write_records(out_dir / "scores.csv", all_records)
    write_records(out_dir / "pairs.csv", [_pair_row(p) for p in xp.pairs])
    write_metrics(out_dir, "crosspose", results, seed, {**xp.settings, **(params or {})},
                  pairs=len(xp), groups=len({p["group"] for p in xp.pairs}), skipped=xp.skipped)
    return results


def _pair_row(p: dict) -> dict:
    row = {k: v for k, v in p.items() if not k.endswith("_index") and k not in ("gain", "offset")}
    row.update({f"gain_{c}": round(float(g), 4) for c, g in zip("rgb", p["gain"])})
    row.update({f"offset_{c}": round(float(o), 4) for c, o in zip("rgb", p["offset"])})
    return row


def table_rows(results: dict) -> list:
    """One row per (yaw bin of the turned face, method): 'all' first, then the bins; n = pairs in the bin."""
    first = next(iter(results.values()))["scores"]
    bins = [("all", "overall", None)] + [(b, "by_yaw_bin", b) for b in first["by_yaw_bin"]]
    rows = []
    for label, key, b in bins:
        for method, entry in results.items():
            s = entry["scores"][key] if b is None else entry["scores"][key][b]
            rows.append({"turned yaw": label, "n pairs": s["n"], "method": method,
                         **{m: s[m] for m in TABLE_COLUMNS}})
    return rows


def write_table(results: dict, xp: CrossPose, directory, name="crosspose") -> str:
    """NAME.csv and NAME.md (the table under a line saying what was scored) in `directory`; returns the Markdown."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    rows = table_rows(results)
    write_records(directory / f"{name}.csv", rows)
    s = xp.settings
    md = (f"Real cross-pose test on {s['dataset']}: {xp.summary()}. Scores on texels seen in the reference and "
          f"hidden in the turned map, after per-pair colour normalisation ({s['colour_fit']}).\n\n"
          + markdown_table(rows))
    (directory / f"{name}.md").write_text(md + "\n")
    return md


@torch.no_grad()
def showcase(methods: dict, xp: CrossPose, n=4, device="cpu"):
    """(row labels, column labels, images[r][c]) for n pairs spread over the turned yaw: the turned map, the
    normalised reference, the target (turned map + reference on the evaluation texels) and each method's
    completion shown the same way (turned map + its prediction on the evaluation texels)."""
    order = sorted(range(len(xp)), key=lambda i: (abs(xp.pairs[i]["turned_yaw"]), i))
    idx = [order[k] for k in sorted(set(np.linspace(0, len(order) - 1, n).astype(int)))]
    uv, known, target, observed, hole = xp.batch(idx)
    evaluated = observed * hole * torch.from_numpy(xp.atlas).float()
    shown = lambda fill: uv * known + fill * evaluated
    columns = {"turned": uv * known, "reference": target * observed, "target": shown(target)}
    for name, fn in methods.items():
        pred = fn((uv * known).to(device), known.to(device)).clamp(0, 1).cpu()
        columns[name] = shown(pred)
    labels = [f"yaw {xp.pairs[i]['turned_yaw']:+.0f} vs {xp.pairs[i]['reference_yaw']:+.0f}" for i in idx]
    return labels, list(columns), [[columns[c][r] for c in columns] for r in range(len(idx))]


def showcase_figure(methods: dict, xp: CrossPose, path, n=4, device="cpu"):
    """The showcase saved as one figure: a row per pair (labelled by its yaws), a titled column per map."""
    from uvlib.protocol import figures as viz
    labels, columns, images = showcase(methods, xp, n, device)
    fig, axes = viz.plt.subplots(len(labels), len(columns), squeeze=False,
                                 figsize=(1.6 * len(columns), 1.7 * len(labels) + 0.3))
    for r, row in enumerate(images):
        for c, image in enumerate(row):
            axes[r, c].imshow(viz.to_image(image))
            axes[r, c].set_xticks([]), axes[r, c].set_yticks([])
        axes[r, 0].set_ylabel(labels[r], fontsize=7)
    for c, column in enumerate(columns):
        axes[0, c].set_title(column.replace("/", "/\n"), fontsize=6)
    return viz.save(fig, path)
