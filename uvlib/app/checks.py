"""Command-line arguments checked before any work, each failing with one line that names it and the fix."""
import tempfile
from pathlib import Path


def positive_count(value, flag: str):
    """None (meaning all) or a count of at least 1."""
    if value is not None and value < 1:
        raise ValueError(f"{flag} {value} is invalid; give a count of at least 1, or leave {flag} out for all")
    return value


def input_folder(path, what: str) -> Path:
    """An existing folder; `what` says what it should hold, e.g. 'a prepared dataset folder'."""
    path = Path(path)
    if path.is_file():
        raise ValueError(f"{path} is a file; pass {what}")
    if not path.is_dir():
        raise FileNotFoundError(f"{path} does not exist; pass {what}")
    return path


def output_folder(path, flag: str) -> Path:
    """Create the output folder (and its parents) and prove that a file can be written in it."""
    path = Path(path)
    for folder in (path, *path.parents):
        if folder.exists():
            if not folder.is_dir():
                where = "is a file" if folder == path else f"is below {folder}, which is a file"
                raise ValueError(f"{flag} {path} {where}; give a folder path (it is created if missing)")
            break
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as e:
        raise ValueError(f"{flag} {path} is not writable ({e.strerror}); choose a folder you can write to") from None
    return path
