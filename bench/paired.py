"""Paired difference between two train-eval runs of the same splits and seeds (an ablation): B − A.

train-eval compares arms within one run; a setting such as `--reference off` makes another run. For
each arm present in both, the runs are paired by (split, seed): the mean of A and B, the paired
difference with its bootstrap 95% interval (train/stats.py), and the per-class recall.

    .venv/bin/python bench/paired.py runs/transistor/reports/<run A> runs/transistor/reports/<run B>
    .venv/bin/python bench/paired.py <run A> <run B> --arms mask-pose:balanced   # arm mask-pose of A vs balanced of B
    .venv/bin/python bench/paired.py <A seeds 0-2>,<A seeds 3-4> <B seeds 0-4>     # a side pooled from several runs
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from defectsynth.errors import DefectsynthError
from defectsynth.report.read import pooled_runs
from defectsynth.train.stats import paired_bootstrap

METRICS = ("balanced_accuracy", "defect_type_accuracy", "false_alarm_rate", "image_auroc", "pixel_auroc", "pixel_ap")


def _runs(paths: str, parser: argparse.ArgumentParser) -> list[dict]:
    """The runs of comma-separated report folders (or their metrics.json named directly), pooled."""
    try:
        return pooled_runs([Path(p) for p in paths.split(",")])
    except DefectsynthError as e:
        parser.error(str(e))


def _name(paths: str) -> str:
    return " + ".join((p.parent if p.suffix == ".json" else p).name for p in map(Path, paths.split(",")))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("a", help="report folder (or its metrics.json) of the baseline run; several, comma-separated, "
                                  "are pooled (e.g. the same splits' seeds trained in two runs)")
    parser.add_argument("b", help="report folder(s) of the changed run, as for A")
    parser.add_argument("--arms", default=None, help="ARM_A:ARM_B, to pair two differently named arms")
    args = parser.parse_args()
    runs = [_runs(p, parser) for p in (args.a, args.b)]
    names = {r["arm"]: r["arm"] for r in runs[1]}  # arm of B -> arm of A it is paired with
    if args.arms:
        arm_a, arm_b = args.arms.split(":")
        names = {arm_b: arm_a}
    first = {(r["arm"], r["split"], r["seed"]): r for r in runs[0]}
    console = Console()
    for arm, arm_a in names.items():
        pairs = [(first[key], r) for r in runs[1] if r["arm"] == arm
                 and (key := (arm_a, r["split"], r["seed"])) in first]
        if not pairs:
            continue
        table = Table(title=f"{_name(args.b)} {arm} − {_name(args.a)} {arm_a}, {len(pairs)} paired runs")
        for column in ("metric", "A", "B", "Δ [95% CI]"):
            table.add_column(column)
        for metric in METRICS:
            a = [x["metrics"].get(metric) for x, _ in pairs]
            b = [y["metrics"].get(metric) for _, y in pairs]
            if None in a or None in b:
                continue
            d = paired_bootstrap([y - x for x, y in zip(a, b, strict=True)])
            table.add_row(metric, f"{np.mean(a):.3f}", f"{np.mean(b):.3f}",
                          f"{d['mean']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}]")
        for c, _ in pairs[0][0]["metrics"]["per_class"].items():
            a = [x["metrics"]["per_class"][c]["recall"] for x, _ in pairs]
            b = [y["metrics"]["per_class"][c]["recall"] for _, y in pairs]
            table.add_row(f"recall {c}", f"{np.mean(a):.3f}", f"{np.mean(b):.3f}", "")
        console.print(table)


if __name__ == "__main__":
    main()
