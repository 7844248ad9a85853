"""How well the reference channel alone tells good from defective held-out images, and what it costs.

No training: each held-out image's channel (train/reference.py, against the category's train/good) is
scored by the mean of its top 0.2% pixels; image AUROC good vs defect, the per-class median score, and
the time per image. Compares following the part's pose with plain registration. Then the channels of
every training good and held-out image computed into an empty cache as train-eval needs them: one after
another in this process, and through Reference.warm (worker processes, workers.auto_workers), with the
ratio of the two.

    .venv/bin/python bench/reference.py                                   # real transistor if present, else demo
    .venv/bin/python bench/reference.py --data /tmp/rotated --size 128
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table
from sklearn.metrics import roc_auc_score

from defectsynth.data.cache import ImageCache
from defectsynth.data.layout import GOOD
from defectsynth.data.manifest import Row
from defectsynth.io import IMAGE_SUFFIXES
from defectsynth.train.reference import Reference
from defectsynth.workers import auto_workers

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared/data/mvtec_ad_512/transistor"


def score(channel: np.ndarray) -> float:
    values = np.sort(channel.ravel().astype(float))
    return float(values[-max(1, values.size // 500):].mean())


def images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--size", type=int, default=128)
    args = parser.parse_args()
    data = args.data
    if data is None:
        if SHARED.is_dir():
            data = SHARED
        else:
            from defectsynth.data.demo import make_demo
            data = make_demo(Path(tempfile.mkdtemp()) / "demo", size=256, seed=0, n_train_good=40, n_test_good=12,
                             n_per_defect=6, progress=False)
    if not (data / "train" / GOOD).is_dir():
        parser.error(f"--data {data}: no train/{GOOD} folder; pass a category folder in the MVTec AD layout")
    goods = [str(p) for p in images(data / "train" / GOOD)]
    test = [p for folder in sorted((data / "test").iterdir()) for p in images(folder)]
    truth = [p.parent.name != GOOD for p in test]
    console = Console()
    table = Table(title=f"reference channel alone on {data} ({len(goods)} good training images, {len(test)} "
                        f"held-out, {args.size} px)")
    for column in ("registration", "image AUROC", "median score per class", "build s", "s per image"):
        table.add_column(column)
    for follow in (False, True):
        start = time.perf_counter()
        reference = Reference(goods, args.size, follow_pose=follow)
        built = time.perf_counter() - start
        inputs = [reference.read(str(p)) for p in test]  # decoded first: the timing is the channel's own
        start = time.perf_counter()
        scores = [score(reference.compare(image)[0]) for image in inputs]  # the distance channel
        each = (time.perf_counter() - start) / len(test)
        classes = sorted({p.parent.name for p in test})
        medians = ", ".join(f"{c} {np.median([s for s, p in zip(scores, test, strict=True) if p.parent.name == c]):.0f}"
                            for c in classes)
        table.add_row("pose-following" if follow else "fixed (phase correlation)", f"{roc_auc_score(truth, scores):.3f}",
                      medians, f"{built:.1f}", f"{each:.3f}")
    console.print(table)
    console.print(warm_speed(goods, test, args.size))


def warm_speed(goods: list[str], test: list[Path], size: int) -> Table:
    images = [(p, GOOD, "train") for p in goods] + [(str(p), p.parent.name, "test") for p in test]
    rows = [Row(path=path, label=label, split=split, source="real", method="real", parents="", mask="", seed=0,
                params="") for path, label, split in images]
    table = Table(title=f"difference channels of {len(rows)} images into an empty cache ({size} px)")
    for column in ("how", "processes", "s", "images/s", "ratio"):
        table.add_column(column)
    seconds = {}
    for how in ("one process (stack)", "worker processes (warm, then stack)"):
        with tempfile.TemporaryDirectory() as folder:
            reference = Reference(goods, size, ImageCache(Path(folder)))
            start = time.perf_counter()
            if how.startswith("worker"):
                reference.warm(rows, progress=False)
            reference.stack(rows)
            seconds[how] = time.perf_counter() - start
        first = next(iter(seconds.values()))
        processes = auto_workers(len(rows)) if how.startswith("worker") else 1  # warm() starts no pool for 1
        table.add_row(how, str(processes), f"{seconds[how]:.1f}", f"{len(rows) / seconds[how]:.1f}",
                      f"{first / seconds[how]:.2f}")
    return table


if __name__ == "__main__":
    main()
