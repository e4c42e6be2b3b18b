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
