"""The one small interface every generator implements."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from defectsynth.data.manifest import Row


@dataclass
class Sample:
    image: np.ndarray  # H x W or H x W x 3 uint8, same size and channels as the good image it was made on
    mask: np.ndarray  # H x W bool, True where the synthetic defect is
    label: str
    parents: list[str]  # absolute paths of the real images it was made from
    params: dict = field(default_factory=dict)  # what was drawn, for provenance


class Generator:
    """fit() on train-split real rows (already passed through the leakage guard), then sample()."""

    name: str = ""
    trainable: bool = False  # True when fit() learns state that save()/load() keep

    def fit(self, rows: list[Row]) -> None:
        """Learn from the train split: good images and each class's few real defects."""

    def sample(self, label: str, n: int, rng: np.random.Generator) -> Iterator[Sample]:
        raise NotImplementedError

    def source_regions(self, label: str) -> dict[str, np.ndarray]:
        """What is taken from each real source defect of `label` (path -> bool mask), for the preview;
        empty when the generator takes nothing region-shaped from its sources."""
        return {}

    def notes(self, label: str) -> list[str]:
        """Lines the user should read once about how `label` is made (a fallback, say)."""
        return []

    def save(self, folder: Path) -> None:
        """Write trained state (safetensors + config) to `folder`; no-op for generators without state."""

    def load(self, folder: Path) -> None:
        """Read what save() wrote."""
