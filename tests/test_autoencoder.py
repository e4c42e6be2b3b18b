import pytest
import torch

from uvlib.models.autoencoder import ARCHITECTURES, FCAutoencoder, LinearAutoencoder
from uvlib.train.autoencoder import fit_autoencoder

S = 8


def make_atlas():
    atlas = torch.ones(S, S, dtype=torch.bool)
    atlas[0, 0] = atlas[-1, -1] = False
    return atlas


def make_data(n=24, seed=0):
    g = torch.Generator().manual_seed(seed)
    basis = torch.rand(3, 3, S, S, generator=g)
    uv = torch.einsum("nr,rcij->ncij", torch.rand(n, 3, generator=g), basis) / 3 * make_atlas()
    observed = (torch.rand(n, 1, S, S, generator=g) > 0.3).float()
    return uv * observed, observed


@pytest.mark.parametrize("model_fn", [lambda a: LinearAutoencoder(a, 4), lambda a: FCAutoencoder(a, ARCHITECTURES["B"]),
                                      lambda a: FCAutoencoder(a, (6, 3), mask_input=True)])
def test_forward_is_a_completion_function(model_fn):
    torch.manual_seed(0)
    model = model_fn(make_atlas())
    uv, observed = make_data(5)
    out = model(uv, observed)
    assert out.shape == uv.shape and out.min() >= 0 and out.max() <= 1
    assert (out[:, :, ~make_atlas()] == 0).all()
    noisy = uv + (1 - observed) * torch.rand(uv.shape)  # unknown texels must not matter
    assert torch.equal(model(noisy, observed), out)


def test_fc_layers_mirror_the_encoder():
    model = FCAutoencoder(make_atlas(), (16, 8, 4))
    widths = [layer.out_features for layer in model.net if isinstance(layer, torch.nn.Linear)]
    assert widths == [16, 8, 4, 8, 16, model.dim] and model.dim == 3 * (S * S - 2)


def test_training_reduces_loss_and_is_seeded():
    uv, observed = make_data()
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        model = LinearAutoencoder(make_atlas(), 4)
        seen = []
        history = fit_autoencoder(model, uv, observed, epochs=30, lr=1e-2, batch_size=8, progress=False,
                                  on_epoch=lambda epoch, m, row: seen.append(epoch))
        runs.append((history, model.state_dict()))
    history = runs[0][0]
    assert history[-1]["loss"] < 0.5 * history[0]["loss"]
    assert seen == list(range(1, 31)) and set(history[0]) == {"epoch", "loss", "seconds"}
    assert [r["loss"] for r in history] == [r["loss"] for r in runs[1][0]]
    assert all(torch.equal(a, b) for a, b in zip(runs[0][1].values(), runs[1][1].values()))


def test_hole_sampler_hides_input_but_loss_counts_all_observed():
    uv, observed = make_data(8)
    calls = []

    def hide_everything(obs, generator):
        calls.append(obs.shape)
        return torch.ones_like(obs)

    torch.manual_seed(0)
    model = FCAutoencoder(make_atlas(), (6, 3))
    history = fit_autoencoder(model, uv, observed, epochs=2, batch_size=4, hole_sampler=hide_everything, progress=False)
    assert calls == [(4, 1, S, S)] * 4
    assert history[0]["loss"] > 0  # the input was empty, yet every observed texel was scored


@pytest.mark.parametrize("case", ["nan_input", "nan_weight"])
def test_nan_guard_names_the_epoch(case):
    # Adam + Tanh saturates rather than overflows even at lr=1e30, so diverged states are injected
    uv, observed = make_data(8)
    torch.manual_seed(0)
    model = LinearAutoencoder(make_atlas(), 4)
    if case == "nan_input":
        uv[0, 0, 3, 3], observed[0, 0, 3, 3] = float("nan"), 1.0
    else:
        model.net[0].weight.data[0, 0] = float("inf")
    with pytest.raises(FloatingPointError, match="epoch 1.*lower lr"):
        fit_autoencoder(model, uv, observed, epochs=3, progress=False)


def test_bad_shapes_raise():
    model = LinearAutoencoder(make_atlas(), 4)
    uv, observed = make_data(4)
    with pytest.raises(ValueError, match="observed"):
        fit_autoencoder(model, uv, observed[:, :, :4], epochs=1, progress=False)
    with pytest.raises(ValueError, match="uv_in"):
        model(uv[:, :, :4], observed)
