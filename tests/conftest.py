from pathlib import Path

import numpy as np
import pytest
from PIL import Image

DEMO = Path(__file__).resolve().parents[1] / "demo" / "photos"


@pytest.fixture(scope="session")
def face_photo() -> Path:
    """A real, committed, near-frontal face photo (scikit-image's astronaut, public domain)."""
    return DEMO / "skimage_astronaut.jpg"


@pytest.fixture(scope="session")
def face_rgb(face_photo) -> np.ndarray:
    return np.asarray(Image.open(face_photo).convert("RGB"))


@pytest.fixture(scope="session")
def face_copies(face_photo, tmp_path_factory) -> list:
    """Twelve copies of the face photo, every other one mirrored and each rotated 3 degrees more: p0.jpg ... p11.jpg,
    faces enough for every split of a tiny dataset."""
    folder = tmp_path_factory.mktemp("face_copies")
    im = Image.open(face_photo)
    for k in range(12):
        (im.transpose(Image.FLIP_LEFT_RIGHT) if k % 2 else im).rotate(3 * k).save(folder / f"p{k}.jpg")
    return [folder / f"p{k}.jpg" for k in range(12)]


@pytest.fixture(scope="session")
def fitter():
    from uvlib.data.facefit import FaceFitter
    f = FaceFitter()
    yield f
    f.close()


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors: one thread avoids OpenMP hand-off cost, which dominates on a busy 2-core machine."""
    import torch
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
