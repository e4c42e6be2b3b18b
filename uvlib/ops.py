"""Tensor operations every layer shares: which texels a method may use, pasting them back, masked means.

Shapes follow uvlib's conventions: maps (N, 3, S, S), masks (N, 1, S, S) with 1 = yes, atlas (S, S).
"""
def known_texels(observed, hole, atlas):
    """The texels a completion method may use: observed, not hidden by the hole, inside the atlas."""
    return observed * (1 - hole) * atlas


def composite(pred, uv, known):
    """Known texels from uv, the rest from pred."""
    return known * uv + (1 - known) * pred


def masked_mean(values, mask, per_image=False):
    """Mean of (N, C, S, S) values over the texels where the (N, 1, S, S) mask is 1, and over the C channels.

    per_image: one mean per image (N,) instead of one over the batch; an empty mask gives 0, not NaN."""
    if per_image:
        return (values * mask).flatten(1).sum(1) / (mask.flatten(1).sum(1) * values.shape[1]).clamp_min(1)
    return (values * mask).sum() / (mask.sum() * values.shape[1]).clamp_min(1)


def check_completion_inputs(uv_in, known):
    if uv_in.dim() != 4 or uv_in.shape[1] != 3:
        raise ValueError(f"uv_in must be (N,3,S,S), got {tuple(uv_in.shape)}")
    n, _, h, w = uv_in.shape
    if tuple(known.shape) != (n, 1, h, w):
        raise ValueError(f"known must be (N,1,S,S) = {(n, 1, h, w)}, got {tuple(known.shape)}")
