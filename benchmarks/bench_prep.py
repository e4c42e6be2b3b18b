"""Stage-00 speed on the same photos: inverse warp against griddata, and the whole prep in photos/s.

    python benchmarks/bench_prep.py [--photos ../shared/data/celeba-dev] [--n 400] [--size 128] [--unwrap]
                                    [--before REV] [--repeat 1]

With --unwrap, first photos/s for each unwrap method on identical fitted meshes (fitting excluded). Then the whole
`uvlib prep` pipeline (read + detect + mesh + unwrap + occluders + write, all cores, worker start-up included) on
the same photos, side by side: the pipeline as it was before profiles and occluders (MediaPipe's FaceMesh graph,
no occluder test), the new mesh fitter ("crops": the landmark model on our own checked crops) alone, then with
each occluder test, the last row being today's default.

Each run is a fresh interpreter, as `uvlib prep` is. With --before REV, every row is also run with the code of git
revision REV (exported to a temporary folder), alternating with today's, and printed beside it. Besides photos/s
each cell gives the CPU time per photo (all processes): on a machine shared with other jobs photos/s follows the
load, CPU time much less.
"""
import argparse
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIGURATIONS = [("graph", "none", "before: FaceMesh graph, no occluders"), ("crops", "none", "crops fitter"),
                  ("crops", "hands", "crops + hands"), ("crops", "appearance", "crops + appearance"),
                  ("crops", "hands+appearance", "now: crops + hands + appearance")]

# One prep run in a fresh interpreter: photos/s (wall, worker start-up included) and CPU seconds of all processes.
# uvlib is imported under the main guard: spawned workers run this script's top level again, `uvlib prep` (run
# as a module) does not.
RUN = """
import json, resource, shutil, sys, tempfile, time
from pathlib import Path

def cpu():
    return sum(getattr(resource.getrusage(who), f) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
               for f in ("ru_utime", "ru_stime"))

if __name__ == "__main__":
    from uvlib.data.prep import PrepConfig, prepare
    from uvlib.data.sources import folder_photos
    photos, n, size, mesh, occluders = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
    photos = folder_photos(photos)[:n]
    out = Path(tempfile.mkdtemp()) / "dataset"
    try:
        start, used = time.perf_counter(), cpu()
        summary = prepare(photos, out, PrepConfig(uv_size=size, mesh=mesh, occluders=occluders), progress=False)
        print(json.dumps({"seconds": time.perf_counter() - start, "cpu": cpu() - used, "ok": summary["ok"],
                          "failed": summary["failed"]}))
    finally:
        shutil.rmtree(out.parent)
"""


def run_prep(tree: Path, args, mesh: str, occluders: str) -> dict:
    script = tree / "_bench_prep_run.py"
    script.write_text(RUN)
    try:
        done = subprocess.run([sys.executable, str(script), args.photos, str(args.n), str(args.size), mesh, occluders],
                              cwd=tree, env={**os.environ, "PYTHONPATH": str(tree)}, capture_output=True, text=True)
    finally:
        script.unlink()
    if done.returncode:
        raise SystemExit(f"prep with the code in {tree} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.splitlines()[-1])


def export(rev: str, into: Path) -> Path:
    """The tracked files of git revision `rev` in a folder of their own."""
    archive = into / "tree.tar"
    subprocess.run(["git", "-C", str(ROOT), "archive", "-o", str(archive), rev], check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(into / "tree", filter="data")
    return into / "tree"


def cell(runs, n) -> str:
    best = min(runs, key=lambda r: r["seconds"])
    return f"{n / best['seconds']:6.1f} photos/s {1000 * best['cpu'] / n:5.1f} ms CPU/photo"


def unwrap_rates(args, photos):
    from uvlib.data.facefit import FaceFitter
    from uvlib.data.photo import read_photo
    from uvlib.geometry.unwrap import unwrap
    fitter = FaceFitter()
    fitted = []
    for p in photos:
        image = read_photo(p.path)
        faces, _ = fitter.fit(image)
        if faces:
            fitted.append((image, faces[0].landmarks))
    print(f"{len(fitted)} of {len(photos)} photos fitted; UV {args.size}x{args.size}")
    rates = {}
    for method in ("warp", "griddata"):
        unwrap(*fitted[0], args.size, method=method)  # warm-up
        start = time.perf_counter()
        for image, landmarks in fitted:
            unwrap(image, landmarks, args.size, method=method)
        rates[method] = len(fitted) / (time.perf_counter() - start)
    print(f"unwrap warp     : {rates['warp']:8.1f} photos/s (1 core)")
    print(f"unwrap griddata : {rates['griddata']:8.1f} photos/s (1 core)")
    print(f"warp / griddata : {rates['warp'] / rates['griddata']:8.1f}x")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--photos", default=str(ROOT.parent / "shared/data/celeba-dev"))
    ap.add_argument("--n", type=int, default=400)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--unwrap", action="store_true", help="also time warp against griddata unwrapping (slow)")
    ap.add_argument("--before", metavar="REV", help="also run every row with the code of this git revision")
    ap.add_argument("--repeat", type=int, default=1, help="runs per cell, the fastest is shown")
    ap.add_argument("--only", choices=[c[1] for c in CONFIGURATIONS], help="run only this occluder row (crops)")
    args = ap.parse_args()
    if args.unwrap:
        from uvlib.data.sources import folder_photos
        unwrap_rates(args, folder_photos(args.photos)[: args.n])

    rows = [c for c in CONFIGURATIONS if args.only is None or (c[0], c[1]) == ("crops", args.only)]
    print(f"whole prep on {args.n} photos, UV {args.size}, {os.cpu_count()} cores, worker start-up included; "
          f"best of {args.repeat}")
    with tempfile.TemporaryDirectory() as tmp:
        trees = {"now": ROOT}
        if args.before:
            trees = {f"before ({args.before})": export(args.before, Path(tmp)), "now": ROOT}
        print(f"{'':36s}  " + "  ".join(f"{name:35s}" for name in trees))
        for mesh, occluders, label in rows:
            runs = {name: [] for name in trees}
            for _ in range(args.repeat):
                for name, tree in trees.items():     # alternating, so a change in load hits both
                    runs[name].append(run_prep(tree, args, mesh, occluders))
            counts = {(r["ok"], r["failed"]) for rs in runs.values() for r in rs}
            print(f"{label:36s}: " + "  ".join(cell(runs[name], args.n) for name in trees) +
                  f"  (ok, failed: {sorted(counts)})")


if __name__ == "__main__":
    main()
