"""The training part of notebooks 03-07 as functions of the notebook's parameters, for `uvlib train`.

Each function does what its notebook's training cell does with the same parameter values (the profile over the
notebook's `parameters` cell, exactly what papermill passes), so the model files and run records it writes are
the ones the notebook then finds and reuses (uvlib.train.provenance.reusable): the notebook only scores and plots.

    params = stage_parameters("03_pconv", load_profile("params/quick.yaml"))
    ctx = open_stage_for("03_pconv", params)
    TRAINERS["03_pconv"](ctx, params)     # -> {model name: completion fn}
"""
from uvlib.study.context import StageContext, open_stage
from uvlib.study.params import NOTEBOOKS, notebook_parameters
from uvlib.study.recipes import (GANSpec, PConvSpec, earlier_cascade, earlier_pca, earlier_pconv, train_blend,
                                 train_gan, train_pconv)
from uvlib.train.crossfit import CrossFittedPCA

EXTERNAL_DATA_PARAMETERS = ("extra_train_dataset_dir", "extra_train_max_yaw", "real_holes_dataset_dir",
                            "real_holes_min_yaw")   # notebooks 01-07 declare them; open_stage takes them


VARIANTS = {"plain": "", "symmetric": "_sym"}   # model-name suffix of each input variant (uvlib.models.symmetry)


def variants(p: dict, key: str) -> list:
    """[(variant, name suffix), ...] of p[key] (stages 05-07: "plain" and/or "symmetric"); one-line error else."""
    unknown = [v for v in p[key] if v not in VARIANTS]
    if unknown or not p[key]:
        raise ValueError(f"{key}={p[key]!r}: use a non-empty list of {list(VARIANTS)}")
    return [(v, VARIANTS[v]) for v in p[key]]


def pconv_specs(p: dict, experiments: str) -> list:
    """The PConv specs of a stage: each entry of p[experiments] over p["pconv_defaults"] (bad keys fail here)."""
    return [PConvSpec(**{**p["pconv_defaults"], **e}) for e in p[experiments]]


def train_03(ctx: StageContext, p: dict) -> dict:
    return {spec.name: train_pconv(ctx, spec, p["checkpoint_every"]) for spec in pconv_specs(p, "pconv_experiments")}


def train_04(ctx: StageContext, p: dict) -> dict:
    specs = pconv_specs(p, "cascade_experiments")
    pca = earlier_pca(ctx, p["cascade_pca_k"])
    cross_fit = CrossFittedPCA(pca, ctx.train_uv, ctx.train_observed, ctx.train_rows, folds=p["cross_fit_folds"],
                               seed=p["seed"])
    plan = cross_fit.describe()
    print(f"training fills: {plan['pca_fills']}, grouped by {plan['grouped_by']}, fold sizes {plan['fold_sizes']}")
    return {spec.name: train_pconv(ctx, spec, p["checkpoint_every"], pca=pca, cross_fit=cross_fit)
            if spec.first_fill == "none" else train_pconv(ctx, spec, p["checkpoint_every"]) for spec in specs}


GAN_FIRST_FILLS = {"none": "", "mirror_poisson": "mirror_poisson_"}   # model-name prefix of each stage-05 first fill


def gan_spec(name: str, p: dict, symmetric=False, first_fill="none") -> GANSpec:
    return GANSpec(name=name, base_width=p["gan_base_width"], epochs=tuple(p["gan_epochs"]),
                   batch_size=p["gan_batch_size"], lr=p["gan_lr"], pixel_weight=p["gan_pixel_weight"],
                   adv_weight=p["gan_adv_weight"], hole_weight=p["gan_hole_weight"],
                   symmetric=symmetric, first_fill=first_fill, amp=p["amp"])


def gan_specs(name: str, p: dict, first_fills=("none",)) -> list:
    """One GANSpec per first fill and entry of p["gan_variants"]: NAME (plain inputs) and/or NAME_sym
    (symmetry-aware); a GAN refining the mirror-Poisson fill is mirror_poisson_NAME (stage 05's gan_first_fills)."""
    unknown = [f for f in first_fills if f not in GAN_FIRST_FILLS]
    if unknown or not first_fills:
        raise ValueError(f"gan_first_fills={list(first_fills)!r}: use a non-empty list of {list(GAN_FIRST_FILLS)}")
    return [gan_spec(GAN_FIRST_FILLS[fill] + name + suffix, p, symmetric=variant == "symmetric", first_fill=fill)
            for fill in first_fills for variant, suffix in variants(p, "gan_variants")]


def train_05(ctx: StageContext, p: dict) -> dict:
    trained = {}
    for spec in gan_specs("gan", p, p["gan_first_fills"]):
        trained |= train_gan(ctx, spec, p["checkpoint_every"])
    return trained


def train_06(ctx: StageContext, p: dict) -> dict:
    """A symmetry-aware GAN refines the symmetry-aware cascade (stage 04's CASCADE_NAME_sym)."""
    trained = {}
    for spec in gan_specs("pca_pconv_gan", p):
        cascade = earlier_cascade(ctx, p["cascade_name"] + ("_sym" if spec.symmetric else ""))
        trained |= train_gan(ctx, spec, p["checkpoint_every"], cascade=cascade)
    return trained


def train_07(ctx: StageContext, p: dict) -> dict:
    """A symmetry-aware blend mixes the PCA with stage 03's BLEND_PCONV_NAME_sym and sees the mirrored map too."""
    pca, trained = earlier_pca(ctx, p["blend_pca_k"]), {}
    for variant, suffix in variants(p, "blend_variants"):
        pconv = earlier_pconv(ctx, p["blend_pconv_name"] + suffix)
        trained["blend" + suffix] = train_blend(
            ctx, pca, pconv, name="blend" + suffix, steps=p["blend_steps"], batch_size=p["blend_batch_size"],
            lr=p["blend_lr"], hidden=p["blend_hidden"], checkpoint_every=p["checkpoint_every"],
            symmetric=variant == "symmetric")
    return trained


TRAINERS = {"03_pconv": train_03, "04_pca_pconv_cascade": train_04, "05_gan": train_05,
            "06_pca_pconv_gan_cascade": train_06, "07_blended_pca_pconv": train_07}


def stage_name(wanted: str) -> str:
    """'03', '03_pconv' or 'pconv' -> '03_pconv'; a one-line error listing the stages otherwise."""
    for stage in TRAINERS:
        if wanted in (stage, stage[:2], stage[3:]):
            return stage
    raise ValueError(f"no trainable stage {wanted!r}; use one of {list(TRAINERS)} (or their numbers)")


def stage_parameters(stage: str, profile: dict) -> dict:
    """The values a stage notebook runs with: its `parameters` cell, overridden by the profile's keys it declares."""
    declared = notebook_parameters(NOTEBOOKS / f"{stage}.ipynb")
    return {**declared, **{k: v for k, v in profile.items() if k in declared}}


def open_stage_for(stage: str, p: dict, device=None, progress=True) -> StageContext:
    """open_stage as the stage notebook calls it; `device` overrides p['device'] (a torchrun rank's GPU)."""
    return open_stage(stage, p["run_dir"], p["dataset_dir"], seed=p["seed"], eval_split=p["eval_split"],
                      eval_limit=p["eval_limit"], train_limit=p["train_limit"],
                      device=str(device) if device is not None else p["device"], progress=progress,
                      **{k: p[k] for k in EXTERNAL_DATA_PARAMETERS})
