"""Reading photos of any provenance into RGB uint8 arrays, or a one-line reason why not."""
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

MAX_SIDE = 8000


class PhotoError(Exception):
    """A photo that cannot be used; the message is the reason recorded in the manifest."""


def read_photo(path) -> np.ndarray:
    """Decode `path` to an (H, W, 3) uint8 RGB array, EXIF orientation applied.

    Grayscale (8 or 16 bit), palette, RGBA (alpha dropped), CMYK and 16-bit RGB inputs are converted to RGB. Raises PhotoError
    for unreadable, truncated, non-image and oversized files.
    """
    path = Path(path)
    try:
        with Image.open(path) as im:
            if max(im.size) > MAX_SIDE:
                raise PhotoError(f"image too large ({im.size[0]}x{im.size[1]} px, limit {MAX_SIDE}); "
                                 f"downscale it")
            im.load()
            im = ImageOps.exif_transpose(im)
            if im.mode.startswith("I"):     # 16-bit greyscale: convert("RGB") would clip it at 255, all white
                im = Image.fromarray((np.asarray(im, dtype=np.float64) / 257).round().clip(0, 255).astype(np.uint8))
            return np.asarray(im.convert("RGB"))
    except PhotoError:
        raise
    except FileNotFoundError:
        raise PhotoError("file not found") from None
    except UnidentifiedImageError:
        raise PhotoError("not an image (unrecognised format)") from None
    except Image.DecompressionBombError:
        raise PhotoError("image too large (over PIL's pixel limit); downscale it") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise PhotoError(f"unreadable or truncated image ({str(e).splitlines()[0][:80]})") from None
