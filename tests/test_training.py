import csv
import time

import pytest
import torch

from uvlib.models.pconv import PConvUNet, PConvUNetConfig
from uvlib.train.loop import TrainConfig, checkpoint_paths, resolve_device, resolve_runtime, seed_everything, train
from uvlib.train.losses import InpaintingLoss
from uvlib.train.trainers import PConvTrainer

S = 16




def make_stage(lr=2e-3, fine_tune_after=None):
    torch.manual_seed(0)
    model = PConvUNet(PConvUNetConfig(uv_size=S, base_width=4))
    loss = InpaintingLoss({"perceptual": 0.0, "style": 0.0})
    atlas = torch.ones(S, S)
    atlas[:, :2] = 0
    return PConvTrainer(model, loss, lr, fine_tune_after, lr_fine_tune=5e-4, atlas=atlas)


def random_batch(step):
    """Drawn from the global RNG on purpose: resume must restore it."""
    ramp = torch.linspace(0, 1, S).view(1, 1, 1, S)
    uv = (ramp * torch.rand(4, 3, 1, 1) + 0.1 * torch.rand(4, 3, S, S)).clamp(0, 1)
    observed = (torch.rand(4, 1, S, S) > 0.1).float()
    hole = torch.zeros(4, 1, S, S)
    hole[..., 4:10, 4:10] = 1
    return {"uv": uv, "observed": observed, "hole": hole}


def config(tmp_path, name, **kw):
    base = dict(max_steps=6, checkpoint_every=2, sample_every=3, log_every=1,
                seed=7, out_dir=str(tmp_path / name), progress=False)
    return TrainConfig(**{**base, **kw})


def read_log(cfg):
    with open(f"{cfg.out_dir}/log.csv", newline="") as f:
        return [{k: v for k, v in r.items() if k != "images_per_s"} for r in csv.DictReader(f)]


def test_a_few_steps_reduce_the_loss(tmp_path):
    fixed = random_batch(0)
    cfg = config(tmp_path, "fit", max_steps=40, log_every=10, checkpoint_every=40, sample_every=40)
    stage = make_stage()
    train(stage, lambda step: fixed, cfg, sample_fn=lambda st, step: st.sample(fixed))
    rows = read_log(cfg)
    assert float(rows[-1]["total"]) < 0.8 * float(rows[0]["total"])
    out = tmp_path / "fit"
    assert (out / "loss.png").exists() and (out / "samples" / "step_00000040.png").exists()


class Killed(Exception):
    pass


def test_resume_after_a_kill_matches_an_uninterrupted_run(tmp_path):
    straight = make_stage(fine_tune_after=3)
    cfg_a = config(tmp_path, "a")
    train(straight, random_batch, cfg_a)

    def dies_at_5(step):
        if step == 5:
            raise Killed
        return random_batch(step)

    cfg_b = config(tmp_path, "b")
    with pytest.raises(Killed):
        train(make_stage(fine_tune_after=3), dies_at_5, cfg_b)
    assert [p.name for p in checkpoint_paths(cfg_b.out_dir)] == ["step_00000002.pt", "step_00000004.pt"]
    resumed = make_stage(fine_tune_after=3)
    train(resumed, random_batch, cfg_b)

    for (name, a), b in zip(straight.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), name
    assert resumed.model.fine_tune and resumed.optimizer.param_groups[0]["lr"] == 5e-4
    assert read_log(cfg_a) == read_log(cfg_b)


def test_budget_of_a_run_resumed_in_pieces_adds_up(tmp_path):
    """Images seen count every step once; seconds sum the pieces (each step here takes at least 50 ms)."""
    def slow_batch(step):
        time.sleep(0.05)
        return random_batch(step)

    def dies_at_5(step):
        if step == 5:
            raise Killed
        return slow_batch(step)

    cfg = config(tmp_path, "pieces")
    with pytest.raises(Killed):
        train(make_stage(), dies_at_5, cfg)
    first_piece = torch.load(checkpoint_paths(cfg.out_dir)[-1], weights_only=True)["budget"]
    assert first_piece["images_seen"] == 4 * 4 and first_piece["train_seconds"] >= 4 * 0.05
    done = train(make_stage(), slow_batch, cfg)
    assert done["images_seen"] == 6 * 4 and done["train_seconds"] >= 6 * 0.05
    assert done["device"].startswith("cpu: ")
    again = train(make_stage(), slow_batch, cfg)                     # nothing left to do: the stored budget
    assert {k: again[k] for k in ("images_seen", "train_seconds", "device")} == \
        {k: done[k] for k in ("images_seen", "train_seconds", "device")}


def test_stage_with_extra_fill_trains(tmp_path):
    torch.manual_seed(0)
    model = PConvUNet(PConvUNetConfig(uv_size=S, base_width=4, extra_channels=3,
                                      predict_residual_on_extra=True))
    mean_fill = lambda uv_in, known: torch.full_like(uv_in, 0.5)  # noqa: E731 (a PCA fill stand-in)
    stage = PConvTrainer(model, InpaintingLoss({"perceptual": 0.0, "style": 0.0}), 1e-3,
                       atlas=torch.ones(S, S), extra_fn=mean_fill)
    last = train(stage, random_batch, config(tmp_path, "extra", max_steps=3))
    assert last["step"] == 3 and last["lr"] == 1e-3 and last["total"] > 0
    with pytest.raises(ValueError, match="atlas"):
        PConvTrainer(model, stage.loss, atlas=torch.ones(8, 8))


class NaNStage:
    def __init__(self):
        self.w = torch.zeros(1)

    def configure(self, runtime):
        pass

    def training_step(self, batch, step):
        self.w += 1
        return {"hole": float("nan") if step == 3 else 1.0}

    def state_dict(self):
        return {"w": self.w.clone()}

    def load_state_dict(self, state):
        self.w = state["w"]


def test_nan_loss_stops_naming_step_and_part(tmp_path):
    cfg = config(tmp_path, "nan", checkpoint_every=1)
    with pytest.raises(FloatingPointError, match=r"'hole' is nan at step 3.*step_00000002\.pt"):
        train(NaNStage(), lambda step: {"x": torch.zeros(2, 1)}, cfg)
    assert checkpoint_paths(cfg.out_dir)[-1].name == "step_00000002.pt"


def test_checkpoint_of_another_model_is_refused(tmp_path):
    cfg = config(tmp_path, "mix", max_steps=1)
    train(make_stage(), random_batch, cfg)
    wider = PConvTrainer(PConvUNet(PConvUNetConfig(uv_size=S, base_width=8)),
                       InpaintingLoss({"perceptual": 0.0, "style": 0.0}), atlas=torch.ones(S, S))
    with pytest.raises(ValueError, match="does not fit"):
        train(wider, random_batch, TrainConfig(**{**cfg.__dict__, "max_steps": 2}))


def test_a_checkpoint_of_another_run_is_set_aside_not_resumed(tmp_path):
    first = config(tmp_path, "run", max_steps=4, run={"spec": {"lr": 1e-3, "steps": 4}})
    train(make_stage(), random_batch, first)
    changed = config(tmp_path, "run", max_steps=4, run={"spec": {"lr": 5e-4, "steps": 4}})
    resumed_or_not = make_stage()
    with pytest.warns(UserWarning, match=r"another run \(run\.spec\.lr: 0\.001 -> 0\.0005\); moved it to run\.superseded-1"):
        train(resumed_or_not, random_batch, changed)
    kept = tmp_path / "run.superseded-1"
    assert [p.name for p in checkpoint_paths(kept)] == ["step_00000002.pt", "step_00000004.pt"]
    assert (kept / "log.csv").is_file()
    fresh = make_stage()
    train(fresh, random_batch, config(tmp_path, "fresh", max_steps=4, run=changed.run))
    for (name, a), b in zip(fresh.model.state_dict().items(), resumed_or_not.model.state_dict().values()):
        assert torch.equal(a, b), name
    assert read_log(changed) == read_log(config(tmp_path, "fresh"))


def test_a_checkpoint_beyond_max_steps_is_another_run(tmp_path):
    train(make_stage(), random_batch, config(tmp_path, "long", max_steps=4))
    with pytest.warns(UserWarning, match="checkpoint at step 4 > 2"):
        train(make_stage(), random_batch, config(tmp_path, "long", max_steps=2))
    assert checkpoint_paths(tmp_path / "long")[-1].name == "step_00000002.pt"
    assert (tmp_path / "long.superseded-1").is_dir()


def test_runtime_helpers():
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA"):
            resolve_device("cuda")
        rt = resolve_runtime(TrainConfig())
        assert rt.amp_dtype is None and not rt.channels_last
    with pytest.raises(ValueError, match="amp"):
        resolve_runtime(TrainConfig(amp="fp16"))
    seed_everything(3)
    a = torch.rand(3)
    seed_everything(3)
    assert torch.equal(a, torch.rand(3))


class DeviceLossStage(NaNStage):
    """Loss parts as tensors, as the trainers return them; NaN at step 2."""

    def __init__(self):
        super().__init__()
        self.calls = 0

    def training_step(self, batch, step):
        self.calls += 1
        return {"hole": torch.tensor(float("nan") if step == 2 else 1.0), "lr": 0.1}


def test_tensor_loss_parts_are_read_at_log_steps_and_name_the_step_they_went_bad(tmp_path):
    stage = DeviceLossStage()
    cfg = config(tmp_path, "deferred", log_every=3, checkpoint_every=6)
    with pytest.raises(FloatingPointError, match=r"'hole' is nan at step 2; stopped, last good checkpoint: none"):
        train(stage, lambda step: {"x": torch.zeros(2, 1)}, cfg)
    assert stage.calls == 3            # no step waited to read its loss; the check at step 3 caught step 2
    assert not checkpoint_paths(cfg.out_dir)
    fine = config(tmp_path, "fine", log_every=3)
    last = train(type("Fine", (DeviceLossStage,), {"training_step": lambda self, b, s: {
        "hole": torch.tensor(float(s)), "lr": 0.1}})(), lambda step: {"x": torch.zeros(2, 1)}, fine)
    assert last["hole"] == pytest.approx((4 + 5 + 6) / 3) and last["lr"] == pytest.approx(0.1)


def test_compile_is_a_train_config_option_that_keeps_the_model_state():
    model = PConvUNet(PConvUNetConfig(uv_size=S, base_width=4))
    runtime = resolve_runtime(TrainConfig(device="cpu", compile=True))
    net = runtime.parallel(model)
    assert isinstance(net, torch._dynamo.eval_frame.OptimizedModule) and net._orig_mod is model
    assert resolve_runtime(TrainConfig(device="cpu")).parallel(model) is model
