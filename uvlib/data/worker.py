"""What one stage-00 worker process does with one photo: fit its faces, unwrap them, take occluders out of the
seen texels and write the files, returning the photo's manifest record.

Kept apart from uvlib.data.prep (the run: manifests, resume, pool, index) so that a spawned worker imports only
what it runs: prep imports the dataset module and through it torch, about a second of start-up per worker that
no worker needs.
"""
import hashlib
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from uvlib.data.facefit import MESH_FITTERS, FaceFitter
from uvlib.data.occluders import HandDetector, find_occluders, parse_occluders
from uvlib.data.photo import PhotoError, read_photo
from uvlib.geometry.mesh import check_uv_size, uv_atlas
from uvlib.geometry.pose import reposed_mesh
from uvlib.geometry.unwrap import METHODS, texel_visibility, unwrap


@dataclass(frozen=True)
class PrepConfig:
    uv_size: int = 128
    method: str = "warp"
    shard: tuple = (0, 1)
    workers: int = 0          # 0 = one per CPU core
    split_seed: int = 0
    groups: str = "photo"     # how photos were grouped for the split (uvlib.data.sources.grouping)
    occluders: str = "hands+appearance"   # tests that keep hands, hair, objects out of the seen texels
    mesh: str = "crops"       # FaceFitter's mesh fitting: "crops" or the old "graph" (kept for benchmarks)

    def validate(self):
        check_uv_size(self.uv_size)
        if self.method not in METHODS:
            raise ValueError(f"--method {self.method!r} is unknown; use one of {METHODS}")
        i, n = self.shard
        if not (isinstance(i, int) and isinstance(n, int) and n >= 1 and 0 <= i < n):
            raise ValueError(f"--shard {i}/{n} is invalid; use i/n with 0 <= i < n, e.g. 0/4")
        if self.mesh not in MESH_FITTERS:
            raise ValueError(f"mesh fitter {self.mesh!r} is unknown; use one of {MESH_FITTERS}")
        if self.workers < 0:
            raise ValueError(f"--workers {self.workers} is invalid; use 0 (one per core) or a positive count")
        parse_occluders(self.occluders)


OUTPUTS = (("uv", "png"), ("vis", "png"), ("vis_unfiltered", "png"), ("mesh", "npy"))
_fitter = _hands = None


def init_worker(verbose=False, occluders=PrepConfig.occluders, mesh=PrepConfig.mesh):
    global _fitter, _hands
    _fitter = FaceFitter(native_logs=verbose, mesh=mesh)
    _hands = HandDetector(native_logs=verbose) if "hands" in parse_occluders(occluders) else None


def checksum(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def _write(path: Path, data: bytes) -> str:
    """Write atomically (a kill never leaves a half-written file); returns the content's checksum."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
    return checksum(data)


def _png(array) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def _npy(array) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def seen_at_head_yaw(face, size: int) -> np.ndarray:
    """(S, S) bool: the texels the camera would see were the head turned as far as the body-pose model says.

    FaceMesh under-turns profiles (a median of 48 degrees on CFP's, the body-pose model says 60), and the texels
    it then counts as seen at the far silhouette carry hair and background. All texels when the model has no
    say or does not say the face is turned further the same way."""
    head = face.head_yaw
    if np.isnan(head) or head * face.yaw <= 0 or abs(head) <= abs(face.yaw):
        return np.ones((size, size), bool)
    return texel_visibility(reposed_mesh(face.landmarks, head, face.pitch), size)[0]


def process_photo(photo, out: Path, cfg: PrepConfig) -> dict:
    """Fit, unwrap and write every face of one photo; returns its manifest record."""
    record = {"key": photo.key, "path": str(photo.path), "split": photo.split, "group": photo.group, "faces": []}
    try:
        image = read_photo(photo.path)
    except PhotoError as e:
        return {**record, "status": "failed", "reason": str(e)}
    faces, reason = _fitter.fit(image)
    if not faces:
        return {**record, "status": "failed", "reason": reason}
    tests = parse_occluders(cfg.occluders)
    hands = _hands.detect(image) if "hands" in tests else []
    for j, face in enumerate(faces):
        item = f"{photo.key}_{j}"
        result = unwrap(image, face.landmarks, cfg.uv_size, method=cfg.method)
        occlusion = find_occluders(result.texture, result.visible, face.landmarks, image.shape, hands, tests)
        under_turn = result.visible & ~seen_at_head_yaw(face, cfg.uv_size)
        seen = result.visible & ~occlusion.occluded & ~under_turn
        atlas_area, geometric = uv_atlas(cfg.uv_size).mask.sum(), max(result.visible.sum(), 1)
        checksum = {"uv": _write(out / "uv" / f"{item}.png", _png(result.texture)),
                    "vis": _write(out / "vis" / f"{item}.png", _png(seen.astype(np.uint8) * 255)),
                    "vis_unfiltered": _write(out / "vis_unfiltered" / f"{item}.png",
                                             _png(result.visible.astype(np.uint8) * 255)),
                    "mesh": _write(out / "mesh" / f"{item}.npy", _npy(face.landmarks))}
        record["faces"].append({"id": item, "face": j, "yaw": round(face.yaw, 2), "pitch": round(face.pitch, 2),
                                "roll": round(face.roll, 2), "visible_fraction": round(seen.sum() / atlas_area, 4),
                                "occluded_fraction": round(occlusion.occluded.sum() / geometric, 4),
                                "hand_fraction": round(occlusion.hands.sum() / geometric, 4),
                                "under_turn_fraction": round(under_turn.sum() / geometric, 4),
                                "score": round(face.score, 3), "box": [round(v, 1) for v in face.box],
                                "head_yaw": None if np.isnan(face.head_yaw) else round(face.head_yaw, 2),
                                "checksum": checksum})
    return {**record, "status": "ok", "reason": ""}


def process(args):
    return process_photo(*args)
