"""Training-time rebalancing in the sampler: which examples each epoch draws.

    none      None: the training loop's own uniform sampler
    weighted  each example weighted 1 / n_class: every class drawn equally often
    sqrt      each example weighted 1 / sqrt(n_class): class frequencies go as sqrt(n_class)
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Sampler, WeightedRandomSampler

from defectsynth.errors import DefectsynthError

POWERS = {"weighted": 1.0, "sqrt": 0.5}


def make_sampler(name: str, labels: np.ndarray, num_samples: int,
                 generator: torch.Generator | None = None) -> Sampler | None:
    if name == "none":
        return None
    if name not in POWERS:
        raise DefectsynthError(f"--sampler {name!r} is unknown; use one of: none, weighted, sqrt")
    labels = np.asarray(labels, dtype=np.int64)
    counts = np.bincount(labels)
    weights = 1.0 / counts[labels].astype(np.float64) ** POWERS[name]
    return WeightedRandomSampler(torch.from_numpy(weights), num_samples=num_samples, replacement=True,
                                 generator=generator)
