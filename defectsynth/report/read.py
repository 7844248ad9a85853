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
