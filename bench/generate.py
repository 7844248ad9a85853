"""Generation speed: images/s for cutpaste, pose and the procedural lead defects at 512 and 1024 px,
against the I/O limit (decode one source + encode one PNG at that size, nothing else), and --workers 2
against 1.

    .venv/bin/python bench/generate.py                 # demo data made in a temp folder
    .venv/bin/python bench/generate.py --data /path/to/transistor   # real data at its own size
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from defectsynth.data.demo import make_demo
from defectsynth.data.guard import train_rows
from defectsynth.io import read_image, write_png
from defectsynth.synth.generate import _fit, generate
from defectsynth.synth.registry import create_generator
from defectsynth.workspace import Workspace

CASES = (("cutpaste", "bent_lead"), ("pose", "misplaced"), ("lead-bend", "bent_lead"), ("lead-cut", "cut_lead"))


def io_limit(paths: list[str], out: Path, n: int) -> float:
    """Images/s for decoding one source and encoding one PNG per image."""
    start = time.perf_counter()
    for i in range(n):
        write_png(out / f"io_{i}.png", read_image(paths[i % len(paths)]))
    return n / (time.perf_counter() - start)


def fit_seconds(ws: Workspace, method: str) -> float:
    """Seconds of one fit itself (generate() reuses a fit within a process, so it is timed directly)."""
    rows = train_rows(ws.split(say=lambda _m: None), "bench")
    gen = create_generator(method)
    start = time.perf_counter()
    gen.fit(rows)
    return time.perf_counter() - start


def rate(root: Path, tmp: Path, method: str, label: str, n: int, workers: int) -> float:
    """Images/s of generation alone: two fresh generate calls, n and 3n images, and the 2n extra images
    over the extra seconds, so whatever both calls share (a fit, or its reuse) cancels out. (Subtracting a
    separately timed fit undercounts: a second fit reuses decoded sources and comes out faster, which once
    made 40 images look instant.)"""
    seconds = []
    for k in (1, 3):
        ws = Workspace.open(root, tmp / f"{method}-{workers}w-{k}n")
        split = ws.split(say=lambda _m: None)
        start = time.perf_counter()
        generate(ws, split, label, k * n, method=method, seed=0, workers=workers, progress=False,
                 say=lambda _m: None)
        seconds.append(time.perf_counter() - start)
    return 2 * n / max(seconds[1] - seconds[0], 1e-6)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, help="a real category folder (benchmarked at its own size)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1024])
    parser.add_argument("--n", type=int, default=40, help="images per measurement")
    args = parser.parse_args()
    console = Console()
    table = Table(title="defectsynth generate: images/s (fit excluded) vs the I/O limit")
    for col in ("data", "method", "fit s", "img/s", "I/O limit img/s", "ratio", "img/s 2 workers", "speed-up"):
        table.add_column(col, justify="right")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        roots = [(args.data.name, args.data)] if args.data else []
        for size in [] if args.data else args.sizes:
            console.print(f"making demo data at {size} px ...")
            roots.append((f"demo {size}px", make_demo(tmp / f"demo{size}", size=size, n_train_good=30,
                                                      n_test_good=4, n_per_defect=4, progress=False)))
        for name, root in roots:
            goods = sorted(str(p) for p in (Path(root) / "train" / "good").glob("*.png"))
            warm = Workspace.open(root, tmp / f"warm-{name}")
            for method, _ in CASES:  # imports and first-use costs out of the measurements
                _fit(warm, warm.split(say=lambda _m: None), method, False, lambda _m: None)
            limit = io_limit(goods, tmp, args.n)
            for method, label in CASES:
                fit_s = fit_seconds(Workspace.open(root, tmp / f"fit-{name}-{method}"), method)
                ips = rate(root, tmp / name, method, label, args.n, workers=1)
                ips2 = rate(root, tmp / name, method, label, args.n, workers=2)
                table.add_row(name, method, f"{fit_s:.1f}", f"{ips:.1f}", f"{limit:.1f}", f"{ips / limit:.2f}",
                              f"{ips2:.1f}", f"{ips2 / ips:.2f}x")
                console.print(f"{name} {method}: {ips:.1f} img/s, {ips / limit:.2f} of the I/O limit, "
                              f"2 workers {ips2 / ips:.2f}x")
    console.print(table)


if __name__ == "__main__":
    main()
