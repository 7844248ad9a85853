"""The leakage guard: the one place that keeps held-out real images out of generators,
rebalancing and training. Every later step calls `check_no_leakage` on what it consumes."""

from __future__ import annotations

from collections.abc import Iterable

from defectsynth.data.manifest import Row
from defectsynth.data.split import Split
from defectsynth.errors import LeakageError


def check_no_leakage(rows: Iterable[Row], split: Split, where: str) -> list[Row]:
    """Return `rows` unchanged, or raise if any row is, or was made from, a held-out image."""
    rows = list(rows)
    heldout = split.heldout_paths()
    for row in rows:
        if row.path in heldout:
            raise LeakageError(f"{where}: held-out image {row.path} must not be used; "
                               "it is in the test split of split.json")
        leaked = [p for p in row.parent_paths if p in heldout]
        if leaked:
            raise LeakageError(f"{where}: {row.path} was made from held-out image {leaked[0]}; "
                               "regenerate it from the current split ('defectsynth generate')")
    return rows


def train_rows(split: Split, where: str) -> list[Row]:
    """The real images a generator or a training run may use."""
    return check_no_leakage(split.real_rows("train"), split, where)
