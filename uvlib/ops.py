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


def check_maps(uv, mask, atlas, what):
    """One line naming `what` and the shape it needs when maps (N,3,S,S), masks (N,1,S,S) or the atlas (S,S)
    do not fit together; arrays (e.g. memory-mapped) are checked like tensors."""
    if len(uv.shape) != 4 or uv.shape[1] != 3:
        raise ValueError(f"{what}: uv must be (N, 3, S, S), got {tuple(uv.shape)}; stack the maps first")
    n, _, h, w = uv.shape
    if tuple(mask.shape) != (n, 1, h, w):
        raise ValueError(f"{what}: mask must be (N, 1, S, S) = {(n, 1, h, w)}, got {tuple(mask.shape)}")
    if tuple(atlas.shape) != (h, w):
        raise ValueError(f"{what}: atlas must be (S, S) = {(h, w)}, got {tuple(atlas.shape)}; use the dataset's atlas")
