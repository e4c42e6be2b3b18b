import copy
import csv
from dataclasses import asdict

import pytest
import torch

from uvlib.models import registry
from uvlib.models.gan import Generator, GeneratorConfig, PatchDiscriminator
from uvlib.train.loop import TrainConfig, checkpoint_paths, train
from uvlib.train.trainers import GANTrainer, discriminator_input

S = 16




def atlas():
    a = torch.ones(S, S)
    a[:, :2] = 0
    return a


def make_stage(**kw):
    torch.manual_seed(0)
    generator = Generator(GeneratorConfig(uv_size=S, base_width=4, bottleneck=16))
    return GANTrainer(generator, PatchDiscriminator(S, base_width=4), atlas(), **kw)


def random_batch(step):
    """Drawn from the global RNG on purpose: resume must restore it."""
    ramp = torch.linspace(0, 1, S).view(1, 1, 1, S)
    uv = (ramp * torch.rand(4, 3, 1, 1) + 0.1 * torch.rand(4, 3, S, S)).clamp(0, 1)
    observed = (torch.rand(4, 1, S, S) > 0.2).float()
    hole = torch.zeros(4, 1, S, S)
    hole[..., 4:10, 4:10] = 1
    return {"uv": uv, "observed": observed, "hole": hole}


def config(tmp_path, name, **kw):
    base = dict(max_steps=4, checkpoint_every=2, sample_every=4, log_every=1,
                seed=5, out_dir=str(tmp_path / name), progress=False)
    return TrainConfig(**{**base, **kw})


def read_log(cfg):
    with open(f"{cfg.out_dir}/log.csv", newline="") as f:
        return [{k: v for k, v in r.items() if k != "images_per_s"} for r in csv.DictReader(f)]


def tensors(state):
    """Every tensor of a nested state dict (models and optimisers), in order."""
    if torch.is_tensor(state):
        return [state]
    items = state.values() if isinstance(state, dict) else state if isinstance(state, (list, tuple)) else []
    return [t for item in items for t in tensors(item)]


def clone_params(module):
    return [p.detach().clone() for p in module.parameters()]


@pytest.mark.parametrize("size", [16, 32])
def test_generator_shapes_and_range(size):
    torch.manual_seed(0)
    generator = Generator(GeneratorConfig(uv_size=size, base_width=4, extra_channels=3))
    uv, known = torch.rand(2, 3, size, size), (torch.rand(2, 1, size, size) > 0.5).float()
    out = generator(uv * known, known, torch.rand(2, 3, size, size))
    assert out.shape == (2, 3, size, size) and 0 <= out.min() and out.max() <= 1
    done = generator.complete(uv * known, known, torch.rand(2, 3, size, size))
    assert torch.equal(done * known, uv * known)
    scores = PatchDiscriminator(size, base_width=4)(torch.rand(2, 4, size, size))
    assert scores.shape[:2] == (2, 1) and scores.shape[-1] >= 4


def test_residual_generator_starts_at_its_extra_input():
    generator = Generator(GeneratorConfig(uv_size=S, base_width=4, extra_channels=3, predict_residual_on_extra=True))
    extra = torch.rand(2, 3, S, S)
    assert torch.equal(generator(torch.zeros(2, 3, S, S), torch.zeros(2, 1, S, S), extra), extra)


def test_bad_configs_raise():
    with pytest.raises(ValueError, match="power of two"):
        Generator(GeneratorConfig(uv_size=24, base_width=4))
    with pytest.raises(ValueError, match="extra_channels == 3"):
        Generator(GeneratorConfig(uv_size=S, base_width=4, predict_residual_on_extra=True))
    with pytest.raises(ValueError, match="extra must be given"):
        Generator(GeneratorConfig(uv_size=S, base_width=4))(torch.zeros(1, 3, S, S), torch.zeros(1, 1, S, S),
                                                            torch.zeros(1, 3, S, S))
    generator = Generator(GeneratorConfig(uv_size=S, base_width=4))
    with pytest.raises(ValueError, match="atlas"):
        GANTrainer(generator, PatchDiscriminator(S, 4), torch.ones(8, 8))
    with pytest.raises(ValueError, match="in_channels=4"):
        GANTrainer(generator, PatchDiscriminator(S, 4, in_channels=3), atlas())


def test_discriminator_sees_real_and_fake_through_the_same_mask():
    real = random_batch(0)
    known = real["observed"] * (1 - real["hole"])
    fake = torch.where(real["observed"] > 0, real["uv"], torch.rand(4, 3, S, S))  # differs off-observed only
    assert not torch.equal(fake, real["uv"])
    assert torch.equal(discriminator_input(real["uv"], real["observed"], atlas()),
                       discriminator_input(fake, real["observed"], atlas()))
    shown = discriminator_input(fake * known, real["observed"], atlas())[:, 3:]  # the hole pattern stays hidden
    assert torch.equal(shown, real["observed"] * atlas())


def test_discriminator_scores_a_map_the_same_whatever_else_is_in_its_batch():
    """Batch norm in train mode would score real and fake by their own batch's statistics."""
    torch.manual_seed(0)
    discriminator = PatchDiscriminator(S, base_width=4).train()
    twin = copy.deepcopy(discriminator)                     # the same state for a second first forward
    maps = torch.rand(4, 4, S, S)
    alone = discriminator(maps[:2])
    with_others = twin(torch.cat([maps[:2], 0.5 * maps[2:]]))[:2]
    assert torch.allclose(alone, with_others, atol=1e-6)
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in discriminator.modules())


def test_discriminator_update_scores_real_and_fake_in_one_forward():
    stage = make_stage()
    calls = []
    stage.discriminator.register_forward_hook(lambda module, args, out: calls.append((len(args[0]), module.training)))
    batch = random_batch(0)
    stage.training_step(batch, 1)
    assert calls == [(8, True), (4, False)]                 # D update: real + fake together; G's pass: fake, eval
    assert stage.discriminator.training


def test_a_few_steps_train_both_nets(tmp_path):
    stage = make_stage()
    g0, d0 = clone_params(stage.generator), clone_params(stage.discriminator)
    cfg = config(tmp_path, "fit", max_steps=3)
    batch = random_batch(0)
    last = train(stage, random_batch, cfg, sample_fn=lambda st, step: st.sample(batch))
    assert {"g_total", "pixel", "adv", "d", "lr"} <= set(last) and last["lr"] == 2e-4
    assert all(torch.isfinite(torch.tensor(v)) for k, v in last.items() if k != "device")
    assert any(not torch.equal(a, b) for a, b in zip(g0, stage.generator.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(d0, stage.discriminator.parameters()))
    assert all(p.requires_grad for p in stage.discriminator.parameters())
    assert (tmp_path / "fit" / "samples" / "step_00000003.png").exists()


class Killed(Exception):
    pass


def test_resume_after_a_kill_matches_an_uninterrupted_run(tmp_path):
    straight = make_stage()
    cfg_a = config(tmp_path, "a")
    train(straight, random_batch, cfg_a)

    def dies_at_3(step):
        if step == 3:
            raise Killed
        return random_batch(step)

    cfg_b = config(tmp_path, "b")
    with pytest.raises(Killed):
        train(make_stage(), dies_at_3, cfg_b)
    assert [p.name for p in checkpoint_paths(cfg_b.out_dir)] == ["step_00000002.pt"]
    resumed = make_stage()
    train(resumed, random_batch, cfg_b)
    a, b = tensors(straight.state_dict()), tensors(resumed.state_dict())
    assert len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b))
    assert read_log(cfg_a) == read_log(cfg_b)


def test_saved_generator_rebuilds_identically(tmp_path):
    stage = make_stage()
    train(stage, random_batch, config(tmp_path, "g", max_steps=2))
    generator = stage.generator.eval()
    path = tmp_path / "model-gan.pt"
    registry.save_model(path, "gan", S, asdict(generator.cfg), generator.state_dict())
    fn, info = registry.load_model(path)
    batch = random_batch(0)
    known = batch["observed"] * (1 - batch["hole"])
    assert info["kind"] == "gan"
    with torch.no_grad():
        assert torch.equal(fn(batch["uv"] * known, known), generator(batch["uv"] * known, known))
