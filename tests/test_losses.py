import pytest
import torch

from uvlib.models.vgg import VGG16Features, load_feature_net
from uvlib.train.losses import InpaintingLoss, gram_matrix

NO_FEATURES = {"perceptual": 0.0, "style": 0.0}




def test_valid_and_hole_by_hand_on_4x4():
    pred = torch.zeros(1, 1, 4, 4)
    target = torch.arange(16.0).view(1, 1, 4, 4) / 16
    known = torch.zeros(1, 1, 4, 4)
    known[..., :2, :] = 1                      # top half known
    observed = torch.ones(1, 1, 4, 4)
    observed[..., 3, 3] = 0                    # no truth at (3, 3)
    atlas = torch.ones(4, 4)
    atlas[0, 0] = 0                            # outside the layout
    loss = InpaintingLoss({**NO_FEATURES, "tv": 0.0})
    total, parts = loss(pred, target, known, observed, atlas)
    counted = 14                               # 16 - (0,0) - (3,3)
    valid = sum(range(1, 8)) / 16 / counted    # known texels 1..7 (0 is outside the atlas)
    hole = sum(range(8, 15)) / 16 / counted    # hole texels 8..14 (15 unobserved)
    assert parts["valid"] == pytest.approx(valid)
    assert parts["hole"] == pytest.approx(hole)
    assert total.item() == pytest.approx(valid + 6 * hole)


def test_tv_sees_only_the_dilated_hole():
    target = torch.rand(1, 3, 10, 10)
    known = torch.ones(1, 1, 10, 10)
    known[..., 4:6, 4:6] = 0
    ones, atlas = torch.ones(1, 1, 10, 10), torch.ones(10, 10)
    loss = InpaintingLoss({**NO_FEATURES, "valid": 0.0, "hole": 0.0})
    pred = torch.rand(1, 3, 10, 10)
    tv = loss(pred, target, known, ones, atlas)[1]["tv"]
    far = target.clone()
    far[..., 0:2, :] = 5.0                     # known texels two or more away from the hole
    far[..., :, 8:] = 5.0
    assert loss(pred, far, known, ones, atlas)[1]["tv"] == tv
    near = target.clone()
    near[..., 3, 3] = 5.0                      # the 1-pixel ring around the hole
    assert loss(pred, near, known, ones, atlas)[1]["tv"] != tv
    flat = torch.full_like(target, 0.5)        # a constant composite has no variation
    assert loss(flat, flat, known, ones, atlas)[1]["tv"] == 0


def test_tv_by_hand():
    comp_row = torch.tensor([0.0, 1.0, 3.0, 6.0, 10.0]).view(1, 1, 1, 5)
    known = torch.tensor([1.0, 1.0, 1.0, 0.0, 1.0]).view(1, 1, 1, 5)
    loss = InpaintingLoss({**NO_FEATURES, "valid": 0.0, "hole": 0.0})
    _, parts = loss(comp_row, comp_row, known, torch.ones_like(known), torch.ones(1, 5))
    assert parts["tv"] == pytest.approx((3 + 4) / 5)  # dilated hole = texels 2..4: pairs (2,3), (3,4)


def random_maps(n=2, s=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    pred, target = torch.rand(n, 3, s, s, generator=g), torch.rand(n, 3, s, s, generator=g)
    known = (torch.rand(n, 1, s, s, generator=g) > 0.5).float()
    observed = (torch.rand(n, 1, s, s, generator=g) > 0.2).float()
    atlas = torch.ones(s, s)
    atlas[:, :3] = 0
    return pred, target, known, observed, atlas


def test_texels_without_truth_never_change_any_term():
    loss = InpaintingLoss(feature_net=load_feature_net("random_vgg16", seed=1))
    pred, target, known, observed, atlas = random_maps()
    _, parts = loss(pred, target, known, observed, atlas)
    outside = (observed * atlas) == 0
    noise = torch.rand_like(pred) * 10
    pred2, target2 = torch.where(outside, noise, pred), torch.where(outside, -noise, target)
    known2 = torch.where(outside, 1 - known, known)
    assert loss(pred2, target2, known2, observed, atlas)[1] == parts
    assert all(v > 0 for v in parts.values())


def test_perfect_prediction_has_zero_loss():
    loss = InpaintingLoss(feature_net=load_feature_net("random_vgg16"))
    _, target, known, observed, atlas = random_maps()
    total, parts = loss(target, target, known, observed, atlas)
    assert [parts[k] for k in ("valid", "hole", "perceptual", "style")] == [0, 0, 0, 0]
    assert total.item() == pytest.approx(0.1 * parts["tv"])  # tv is a prior, not a distance


def test_gram_normalisation():
    f = torch.ones(1, 2, 3, 4)
    torch.testing.assert_close(gram_matrix(f), torch.full((1, 2, 2), 12 / 24))
    f = torch.randn(2, 5, 4, 3)
    by_hand = torch.einsum("nchw,ndhw->ncd", f, f) / (5 * 4 * 3)
    torch.testing.assert_close(gram_matrix(f), by_hand)


def test_loss_arguments_are_checked():
    with pytest.raises(ValueError, match="unknown"):
        InpaintingLoss({"holes": 1.0})
    with pytest.raises(ValueError, match="feature_net"):
        InpaintingLoss()
    pred, target, known, observed, _ = random_maps()
    with pytest.raises(ValueError, match="atlas"):
        InpaintingLoss(NO_FEATURES)(pred, target, known, observed, torch.ones(8, 8))


def test_feature_net_kinds(tmp_path):
    assert load_feature_net("none") is None
    a, b = load_feature_net("random_vgg16", seed=3), load_feature_net("random_vgg16", seed=3)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert not any(p.requires_grad for p in a.parameters()) and not a.training
    pools = a(torch.rand(1, 3, 32, 32))
    assert [tuple(p.shape) for p in pools] == [(1, 64, 16, 16), (1, 128, 8, 8), (1, 256, 4, 4)]
    # a torchvision-style state dict (features.N.*, plus classifier keys) loads
    full = dict(a.state_dict())
    full["classifier.0.weight"] = torch.zeros(2, 2)
    torch.save(full, tmp_path / "vgg16.pth")
    loaded = load_feature_net("vgg16", tmp_path / "vgg16.pth")
    assert torch.equal(loaded.features[0].weight, a.features[0].weight)


def test_feature_net_bad_inputs(tmp_path):
    with pytest.raises(ValueError, match="not found"):
        load_feature_net("vgg16", tmp_path / "missing.pth")
    torch.save({"features.0.weight": torch.zeros(3, 3)}, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match="layout"):
        load_feature_net("vgg16", tmp_path / "bad.pth")
    (tmp_path / "junk.pth").write_text("not a checkpoint")
    with pytest.raises(ValueError, match="unreadable"):
        load_feature_net("vgg16", tmp_path / "junk.pth")
    with pytest.raises(ValueError, match="kind"):
        load_feature_net("resnet")
    assert isinstance(VGG16Features().features[16], torch.nn.MaxPool2d)  # torchvision's pool3 index
