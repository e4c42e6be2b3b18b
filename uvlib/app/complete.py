"""`uvlib complete`: complete the faces of your own photos with a trained model and turn them in 3D.

For every face of every photo: fit the mesh, unwrap what the camera saw, let the model complete the rest
(without --model: the mirror-Poisson fill, the best completion that needs no training),
put the seen texels back, and render the completed texture on the fitted face at several yaws. Per face it
writes <photo-key>_<face>_incomplete.png, _completed.png, _turntable.gif and _views.png (photo crop |
incomplete UV | completed UV | renders at --yaws). The GIF sweeps the --yaws range in 15 degree steps.
--export obj,glb also writes the textured mesh for 3D tools (uvlib/export.py: frame, UVs, texture).

A photo that cannot be read or shows no face is skipped with its reason and the run goes on. A bad --model,
input path, empty folder or unwritable --out stops the run before anything is written; a write that fails
later stops it with the file's name. --model is a model-*.pt file or a stage folder, whose model-NAME.pt
--name picks (default: the first alphabetically). A model trained on a GPU runs on the CPU by default.
Without --model the maps are --size texels square (default 128); a model brings its own size.
"""
import pickle
from collections import Counter
from pathlib import Path

import cv2
from tqdm.auto import tqdm

from uvlib.app.checks import output_folder
from uvlib.app.export import check_texture_size, export_face, parse_formats
from uvlib.data.facefit import FaceFitter
from uvlib.data.photo import PhotoError, read_photo
from uvlib.data.sources import Photo, check_unique_keys, folder_photos, photo_key
from uvlib.geometry.mesh import check_uv_size
from uvlib.geometry.render import face_crop, gif_yaws, save_gif, turntable, views_strip
from uvlib.geometry.unwrap import unwrap
from uvlib.models.mirror_poisson import MirrorPoissonFill
from uvlib.models.registry import load_model, model_files
from uvlib.protocol.figures import complete_uv
from uvlib.train.loop import resolve_device

DEFAULT_YAWS = (-75, -45, -15, 15, 45, 75)
RENDER_SIZE = 256
TRAINING_FREE = "mirror_poisson"      # the completion used without --model
DEFAULT_UV_SIZE = 128


def parse_yaws(text: str) -> tuple:
    """'-75,-45,15' -> (-75.0, -45.0, 15.0)."""
    try:
        yaws = tuple(float(t) for t in text.split(","))
    except ValueError:
        yaws = ()
    if not yaws or not all(-90 <= y <= 90 for y in yaws):
        raise ValueError(f"--yaws {text!r} is invalid; use degrees in [-90, 90] separated by commas, "
                         f"e.g. --yaws=-60,0,60")
    return yaws


def resolve_model(path, name=None) -> Path:
    """A model file, or a stage folder's model-NAME.pt (default: the first model-*.pt alphabetically)."""
    path = Path(path)
    if path.is_file():
        return path
    if not path.is_dir():
        raise FileNotFoundError(f"--model {path} does not exist; pass a trained stage folder or a model-*.pt file")
    files = model_files(path)
    if not files:
        raise FileNotFoundError(f"--model {path} holds no model-*.pt; pass a trained stage folder or a model file")
    if name is None:
        return files[0]
    names = [f.stem.removeprefix("model-") for f in files]
    if name not in names:
        raise ValueError(f"--name {name!r} is not a model of {path}; use one of {names}")
    return files[names.index(name)]


def open_model(path, name=None, device="cpu", uv_size=None):
    """(completion function, info) of the model at `path`; ValueError when the file is not a uvlib model.
    path None: the training-free mirror-Poisson fill at uv_size (default DEFAULT_UV_SIZE)."""
    if path is None:
        if name is not None:
            raise ValueError("--name picks a model of the --model stage folder; add --model or drop --name")
        return MirrorPoissonFill(), {"name": TRAINING_FREE, "uv_size": check_uv_size(uv_size or DEFAULT_UV_SIZE)}
    if uv_size is not None:
        raise ValueError("--size is for completing without --model (a model brings its own UV size); drop --size")
    file = resolve_model(path, name)
    try:
        fn, info = load_model(file, device)
    except (pickle.UnpicklingError, RuntimeError, EOFError, KeyError) as e:
        raise ValueError(f"{file} is not a readable uvlib model file ({type(e).__name__}); "
                         f"pick a model-*.pt of a stage folder") from None
    check_uv_size(info["uv_size"])
    return fn, info


def collect_photos(paths) -> list:
    """Photos from a file, a folder (every photo below it) or a list of those."""
    paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
    photos = []
    for path in map(Path, paths):
        if path.is_dir():
            found = folder_photos(path)
            if not found:
                raise ValueError(f"input folder {path} holds no photos; pass a photo or a folder of photos")
            photos += found
        elif path.is_file():
            photos.append(Photo(photo_key(path), path))
        else:
            raise FileNotFoundError(f"input {path} does not exist; pass a photo or a folder of photos")
    check_unique_keys(photos)
    return photos


def _save_png(image, path):
    if not cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR)):
        raise OSError(f"could not write {path}; check that --out is writable and its disk has space")


def _save_gif(frames, path):
    try:
        save_gif(frames, path)
    except OSError as e:
        raise OSError(f"could not write {path} ({e.strerror or e}); check that --out is writable and its disk "
                      f"has space") from None


def complete_face(image, landmarks, fn, uv_size, device, yaws, size, stem: Path, export=(), texture_size=None,
                  frontalise=False) -> dict:
    """Unwrap, complete and render one fitted face; writes the four outputs, and the `export` formats, next to
    `stem`."""
    seen = unwrap(image, landmarks, uv_size)
    completed = complete_uv(fn, seen.texture, seen.visible, device)
    views = turntable(completed, landmarks, yaws, size=size)
    uv_tiles = [cv2.resize(t, (size, size), interpolation=cv2.INTER_NEAREST) for t in (seen.texture, completed)]
    outputs = {kind: Path(f"{stem}_{kind}.{ext}") for kind, ext in
               (("incomplete", "png"), ("completed", "png"), ("turntable", "gif"), ("views", "png"))}
    _save_png(seen.texture, outputs["incomplete"])
    _save_png(completed, outputs["completed"])
    _save_gif(turntable(completed, landmarks, gif_yaws(yaws), size=size), outputs["turntable"])
    _save_png(views_strip([face_crop(image, landmarks, size), *uv_tiles, *views]), outputs["views"])
    exported = export_face(stem, image, landmarks, completed, export, texture_size, frontalise) if export else {}
    return {"visible_fraction": round(seen.visible_fraction, 4), **{k: str(p) for k, p in outputs.items()},
            **exported}


def complete_photos(paths, model_path, out_dir, name=None, device="cpu", yaws=DEFAULT_YAWS, size=RENDER_SIZE,
                    progress=True, export=(), texture_size=None, frontalise=False, verbose=False,
                    uv_size=None) -> dict:
    """Complete every face of the photos at `paths` (a file, a folder or a list) with the model at `model_path`
    (None: the training-free mirror-Poisson fill at uv_size, default DEFAULT_UV_SIZE).

    Returns {"faces": [one record per face], "skipped": [{"path", "reason"}], "photos": count, "model": name,
    "out": folder}. Raises FileNotFoundError / ValueError, before writing anything, for bad paths or models, and
    OSError naming the file when a write fails. export: formats of FORMATS to write per face; texture_size:
    their texture's side (default the model's UV size); frontalise: pose removed from their vertices; verbose
    shows MediaPipe's own log lines.
    """
    if (texture_size is not None or frontalise) and not export:
        raise ValueError("--texture-size and --frontalise shape the --export files; add --export obj,glb or drop them")
    if texture_size is not None:
        check_texture_size(texture_size)
    photos = collect_photos(paths)
    torch_device = resolve_device(device)
    fn, info = open_model(model_path, name, torch_device, uv_size)
    out = output_folder(out_dir, "--out")

    faces, skipped = [], []
    fitter = FaceFitter(native_logs=verbose)
    try:
        for photo in tqdm(photos, desc="complete", unit="photo", disable=not progress):
            try:
                image = read_photo(photo.path)
            except PhotoError as e:
                skipped.append({"path": str(photo.path), "reason": str(e)})
                continue
            fits, reason = fitter.fit(image)
            if not fits:
                skipped.append({"path": str(photo.path), "reason": reason})
            for j, fit in enumerate(fits):
                record = complete_face(image, fit.landmarks, fn, info["uv_size"], torch_device, yaws, size,
                                       out / f"{photo.key}_{j}", export, texture_size, frontalise)
                faces.append({"photo": str(photo.path), "face": j, "yaw": round(fit.yaw, 1), **record})
    finally:
        fitter.close()
    return {"faces": faces, "skipped": skipped, "photos": len(photos), "model": info["name"], "out": str(out)}


def summary_line(summary) -> str:
    reasons = Counter(s["reason"] for s in summary["skipped"])
    why = f" [{'; '.join(f'{r}: {n}' for r, n in sorted(reasons.items()))}]" if reasons else ""
    return (f"{len(summary['faces'])} faces completed with model {summary['model']!r}, "
            f"{len(summary['skipped'])} of {summary['photos']} photos skipped{why}; outputs in {summary['out']}")


def _run(args):
    summary = complete_photos(args.input, args.model, args.out, name=args.name, device=args.device,
                              yaws=parse_yaws(args.yaws), progress=not args.quiet, export=parse_formats(args.export),
                              texture_size=args.texture_size, frontalise=args.frontalise, verbose=args.verbose,
                              uv_size=args.size)
    for s in summary["skipped"]:
        print(f"skipped {s['path']}: {s['reason']}")
    print(summary_line(summary))


def add_parser(subparsers):
    """Register `uvlib complete` on the CLI's subparsers."""
    p = subparsers.add_parser("complete", help="complete the faces of your photos and render them turned in 3D")
    p.add_argument("input", help="a photo or a folder of photos (any layout)")
    p.add_argument("--model", help="a trained stage folder (runs/PROFILE/NN_stage) or a model-*.pt (default: none, "
                   "the training-free mirror-Poisson fill)")
    p.add_argument("--size", type=int, help="UV map size without --model: 64, 128 (default) or 256")
    p.add_argument("--name", help="which model-NAME.pt of a stage folder (default: the first alphabetically)")
    p.add_argument("--out", required=True, help="folder for the completed UV maps, renders and GIFs")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda or auto")
    p.add_argument("--yaws", default=",".join(str(y) for y in DEFAULT_YAWS),
                   help="yaws of the rendered views in degrees; write --yaws=-60,0,60 (with '=' because of "
                        "the leading minus); default %(default)s")
    p.add_argument("--export", default="", help="also write each face as a textured mesh: obj, glb or obj,glb")
    p.add_argument("--texture-size", type=int, help="side of the exported texture, e.g. 512: seen texels "
                   "re-unwrapped from the photo at that size (default: the model's UV size)")
    p.add_argument("--frontalise", action="store_true", help="export the face with its pose removed, looking "
                   "down +z (default: posed as in the photo)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--verbose", action="store_true", help="show MediaPipe's own log lines (silenced by default)")
    p.set_defaults(run=_run)
    return p
