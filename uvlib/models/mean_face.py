"""The mean face: the simplest completion, and the baseline every method is compared with."""
import torch

from uvlib.ops import check_completion_inputs, check_maps


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
        check_maps(uv, observed, atlas, "MeanFace.fit")
        n, _, h, w = uv.shape
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
        check_completion_inputs(uv_in, known)
        if uv_in.shape[1:] != self.mean.shape:
            raise ValueError(f"uv_in texels {tuple(uv_in.shape[1:])} differ from the mean face's {tuple(self.mean.shape)}")
        mean = self.mean.to(device=uv_in.device, dtype=uv_in.dtype)
        return mean.expand_as(uv_in).clone()
