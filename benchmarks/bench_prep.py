"""Stage-00 speed on the same photos: inverse warp against griddata, and the whole prep in photos/s.

    python benchmarks/bench_prep.py [--photos ../shared/data/celeba-dev] [--n 200] [--size 128] [--unwrap]

With --unwrap, first photos/s for each unwrap method on identical fitted meshes (fitting excluded). Then the whole
`uvlib prep` pipeline (read + detect + mesh + unwrap + occluders + write, all cores) on the same photos, side by
side: the pipeline as it was before profiles and occluders (MediaPipe's FaceMesh graph, no occluder test), the
new mesh fitter ("crops": the landmark model on our own checked crops) alone, then with each occluder test, the
last row being today's default.
"""
import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

from uvlib.data.facefit import FaceFitter
from uvlib.data.photo import read_photo
from uvlib.data.prep import PrepConfig, prepare
from uvlib.data.sources import folder_photos
from uvlib.geometry.unwrap import unwrap


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--photos", default=str(Path(__file__).resolve().parents[2] / "shared/data/celeba-dev"))
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--unwrap", action="store_true", help="also time warp against griddata unwrapping (slow)")
    args = ap.parse_args()
    photos = folder_photos(args.photos)[: args.n]

    fitter = FaceFitter()
    fitted = []
    for p in photos:
        image = read_photo(p.path)
        faces, _ = fitter.fit(image)
        if faces:
            fitted.append((image, faces[0].landmarks))
    print(f"{len(fitted)} of {len(photos)} photos fitted; UV {args.size}x{args.size}; {os.cpu_count()} cores")

    rates = {}
    for method in ("warp", "griddata") if args.unwrap else ():
        unwrap(*fitted[0], args.size, method=method)  # warm-up
        start = time.perf_counter()
        for image, landmarks in fitted:
            unwrap(image, landmarks, args.size, method=method)
        rates[method] = len(fitted) / (time.perf_counter() - start)
    if args.unwrap:
        print(f"unwrap warp     : {rates['warp']:8.1f} photos/s (1 core)")
        print(f"unwrap griddata : {rates['griddata']:8.1f} photos/s (1 core)")
        print(f"warp / griddata : {rates['warp'] / rates['griddata']:8.1f}x")

    configurations = [("graph", "none", "before: FaceMesh graph, no occluders"), ("crops", "none", "crops fitter"),
                      ("crops", "hands", "crops + hands"), ("crops", "appearance", "crops + appearance"),
                      ("crops", "hands+appearance", "now: crops + hands + appearance")]
    for mesh, occluders, label in configurations:
        out = Path(tempfile.mkdtemp()) / "dataset"
        try:
            start = time.perf_counter()
            summary = prepare(photos, out, PrepConfig(uv_size=args.size, mesh=mesh, occluders=occluders), progress=False)
            elapsed = time.perf_counter() - start
        finally:
            shutil.rmtree(out.parent)
        print(f"whole prep, {label:36s}: {len(photos) / elapsed:6.1f} photos/s ({summary['ok']} ok, "
              f"{summary['failed']} failed, {elapsed:.1f} s incl. worker start-up; all cores)")


if __name__ == "__main__":
    main()
