"""Training batches: maps kept as uint8 when that is exact, the same batches as float maps, streamed in order."""
import torch
from test_stacking import box_holes, maps

from uvlib.train.batches import HoleSampler, TrainingBatches, compact, expand, stream


def png_like(n=20):
    """Maps as Dataset.load gives them: 8-bit values / 255."""
    uv, observed, _ = maps(n, 0, "train")
    return (uv * 255).round().div(255), observed


def test_maps_from_8_bit_images_are_kept_as_uint8_and_come_back_bit_for_bit():
    uv, observed = png_like()
    assert compact(uv).dtype == torch.uint8 and torch.equal(expand(compact(uv)), uv)
    assert compact(observed).dtype == torch.bool and torch.equal(expand(compact(observed)), observed)
    floats = maps(4, 0, "train")[0]
    assert compact(floats) is floats            # not on the 1/255 grid: kept as they are


def test_uint8_storage_gives_the_batches_of_the_float_maps():
    uv, observed = png_like()
    batches = TrainingBatches(uv, observed, HoleSampler(box_holes()), 4, seed=5)
    assert batches.stored["uv"].dtype == torch.uint8
    for step in (1, 6):
        batch = batches(step)
        order = torch.randperm(20, generator=torch.Generator().manual_seed(5 * 100_003 + step // 5))
        idx = order[(step % 5) * 4:(step % 5 + 1) * 4]
        assert torch.equal(batch["uv"], uv[idx]) and torch.equal(batch["observed"], observed[idx])
        assert batch["uv"].dtype == batch["observed"].dtype == batch["hole"].dtype == torch.float32


def test_a_stream_gives_the_batches_of_its_steps_in_order():
    uv, observed = png_like()
    batches = TrainingBatches(uv, observed, HoleSampler(box_holes()), 4, seed=5)
    streamed = list(stream(batches, range(3, 7), workers=1))
    assert len(streamed) == 4
    for step, batch in zip(range(3, 7), streamed):
        assert all(torch.equal(batch[k], v) for k, v in batches(step).items())
