"""A train-eval report read back (its metrics.json), for the benches that compare or re-score runs."""

from __future__ import annotations

import json
from pathlib import Path

from defectsynth.errors import DefectsynthError


def read_report(path: Path, arm: str | None = None) -> tuple[list[dict], dict]:
    """(runs, settings) of a report folder or of its metrics.json named directly; only `arm`'s runs when
    given."""
    metrics = path if path.suffix == ".json" else path / "metrics.json"
    try:
        doc = json.loads(metrics.read_text())
        runs, settings = doc["runs"], doc["settings"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise DefectsynthError(f"{metrics}: not a train-eval report's metrics.json ({e}); pass a folder under "
                               "<work>/reports") from e
    runs = [r for r in runs if arm in (None, r["arm"])]
    if not runs:
        raise DefectsynthError(f"--arm {arm}: no run of that arm in {metrics}")
    return runs, settings


def pooled_runs(paths: list[Path]) -> list[dict]:
    """The runs of several reports of one comparison side, e.g. seeds 0-2 and then 3-4 of the same splits
    trained as two train-eval runs. A run (arm, split, seed) found in two of them is an error: pairing
    would not know which to take."""
    runs, seen = [], {}
    for path in paths:
        for run in read_report(path)[0]:
            key = (run["arm"], run["split"], run["seed"])
            if key in seen:
                raise DefectsynthError(f"{path}: arm {key[0]} split {key[1]} seed {key[2]} is also in {seen[key]}; "
                                       "pool reports of different seeds or splits only")
            seen[key] = path
            runs.append(run)
    return runs
