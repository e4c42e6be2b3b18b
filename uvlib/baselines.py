"""Classical completion baselines: mean face, left-right symmetry fill, OpenCV inpainting.

Each is a completion function `fn(uv_in, known) -> uv_out` (uvlib conventions): uv_in is
(N,3,S,S) with zeros where known == 0, uv_out the full prediction in [0,1].
"""

import cv2
import numpy as np
import torch


def _check_pair(uv_in, known):
    if uv_in.dim() != 4 or uv_in.shape[1] != 3:
        raise ValueError(f"uv_in must be (N,3,S,S), got {tuple(uv_in.shape)}")
    n, _, h, w = uv_in.shape
    if tuple(known.shape) != (n, 1, h, w):
        raise ValueError(f"known must be (N,1,S,S) = {(n, 1, h, w)}, got {tuple(known.shape)}")


class MeanFace:
    """Per-texel mean colour over the training images where the texel is observed.

    Texels never observed (including those outside the atlas) take the global mean colour.
    Completion returns the mean face everywhere; the caller composites the known texels.
    """

    def __init__(self, mean=None):
        self.mean = mean  # (3,S,S) float32, or None until fit

    @torch.no_grad()
    def fit(self, uv, observed, atlas, chunk_size=256):
        """uv (N,3,S,S), observed (N,1,S,S), atlas (S,S); tensors or arrays (e.g. memory-mapped).

        Sums in chunks of chunk_size images, so N can be large without big temporaries.
        """
        if len(uv.shape) != 4 or uv.shape[1] != 3:
            raise ValueError(f"uv must be (N,3,S,S), got {tuple(uv.shape)}")
        n, _, h, w = uv.shape
        if tuple(observed.shape) != (n, 1, h, w):
            raise ValueError(f"observed must be (N,1,S,S) = {(n, 1, h, w)}, got {tuple(observed.shape)}")
        if tuple(atlas.shape) != (h, w):
            raise ValueError(f"atlas must be (S,S) = {(h, w)}, got {tuple(atlas.shape)}")
        device = uv.device if isinstance(uv, torch.Tensor) else torch.device("cpu")
        inside = (torch.as_tensor(atlas, device=device) > 0.5).float()
        colour_sum = torch.zeros(3, h, w, dtype=torch.float64, device=device)
        count = torch.zeros(1, h, w, dtype=torch.float64, device=device)
        for start in range(0, n, chunk_size):
            colours = torch.as_tensor(uv[start : start + chunk_size], device=device).float()
            seen = (torch.as_tensor(observed[start : start + chunk_size], device=device) > 0.5).float() * inside
            colour_sum += (colours * seen).sum(0).double()
            count += seen.sum(0).double()
        if count.sum() == 0:
            raise ValueError("MeanFace.fit saw no observed atlas texel; check the observed masks and the atlas")
        global_mean = colour_sum.sum((1, 2), keepdim=True) / count.sum()
        mean = torch.where(count > 0, colour_sum / count.clamp_min(1), global_mean)
        self.mean = mean.float().clamp(0, 1)
        return self

    def state_dict(self):
        return {"mean": self.mean}

    @classmethod
    def from_state_dict(cls, state):
        return cls(mean=state["mean"])

    def __call__(self, uv_in, known):
        if self.mean is None:
            raise ValueError("MeanFace is not fitted; call fit(uv, observed, atlas) or MeanFace.from_state_dict(...)")
        _check_pair(uv_in, known)
        if uv_in.shape[1:] != self.mean.shape:
            raise ValueError(f"uv_in texels {tuple(uv_in.shape[1:])} differ from the mean face's {tuple(self.mean.shape)}")
        mean = self.mean.to(device=uv_in.device, dtype=uv_in.dtype)
        return mean.expand_as(uv_in).clone()


class SymmetryFill:
    """Fill a hidden texel with its left-right mirror (the UV layout is symmetric about u = 0.5)
    when the mirror is known, else with the fallback completion (the mean face)."""

    def __init__(self, mean_face):
        self.mean_face = mean_face

    def __call__(self, uv_in, known):
        _check_pair(uv_in, known)
        is_known = known > 0.5
        mirror_known = is_known.flip(dims=[-1])
        filled = torch.where(mirror_known, uv_in.flip(dims=[-1]), self.mean_face(uv_in, known))
        return torch.where(is_known, uv_in, filled)


class OpenCVInpaint:
    """cv2.inpaint of every texel that is not known, per image, on 8-bit RGB.

    The inpaint mask is everything not known, so the black texels outside the atlas or
    unobserved are never used as colour sources.
    """

    METHODS = {"telea": cv2.INPAINT_TELEA, "ns": cv2.INPAINT_NS}

    def __init__(self, method="telea", radius=3):
        if method not in self.METHODS:
            raise ValueError(f"OpenCVInpaint method must be one of {sorted(self.METHODS)}, got {method!r}")
        if radius <= 0:
            raise ValueError(f"OpenCVInpaint radius must be positive, got {radius}")
        self.method, self.radius = method, radius

    def __call__(self, uv_in, known):
        _check_pair(uv_in, known)
        images = (uv_in.detach().clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
        holes = (known.detach() <= 0.5).to(torch.uint8).mul(255)[:, 0].cpu().numpy()
        filled = np.stack(
            [cv2.inpaint(np.ascontiguousarray(img), hole, self.radius, self.METHODS[self.method]) for img, hole in zip(images, holes)]
        )
        out = torch.from_numpy(filled).permute(0, 3, 1, 2).float() / 255
        return out.to(device=uv_in.device, dtype=uv_in.dtype)


def make_baselines(train_uv, train_observed, atlas):
    """The baselines of the results table, keyed by name; the mean face is fit on the training maps."""
    mean_face = MeanFace().fit(train_uv, train_observed, atlas)
    return {
        "mean_face": mean_face,
        "symmetry": SymmetryFill(mean_face),
        "telea": OpenCVInpaint("telea"),
        "navier_stokes": OpenCVInpaint("ns"),
    }
