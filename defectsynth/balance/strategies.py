"""Rebalancing strategies as arithmetic on counts and index arrays, never on pixels.

Every random choice goes through imbalanced-learn's `fit_resample` on a 2-D index array with a
dict `sampling_strategy`, so a strategy is a list of row indices that a manifest is built from.
"""

from __future__ import annotations

import math

import numpy as np
from imblearn.over_sampling import RandomOverSampler
from imblearn.under_sampling import RandomUnderSampler

from defectsynth.data.layout import GOOD


def reference_count(counts: dict[str, int], strategy: str) -> int:
    """What target "auto" means: the majority count when adding images, the minority count when
    removing them, and the mean class count for hybrid, which does both."""
    if strategy == "undersample":
        return min(counts.values())
    if strategy == "hybrid":
        return math.floor(sum(counts.values()) / len(counts) + 0.5)
    return max(counts.values())


def class_targets(counts: dict[str, int], target: str | int, strategy: str) -> dict[str, int]:
    """The wanted number of rows per class, before the strategy decides which classes it may change.

    sqrt gives class c round(sqrt(n_c * auto)): class shares then go as sqrt(n_c), the same rule
    as the sqrt sampler, with the auto class keeping its count.
    """
    if isinstance(target, int):
        return {label: target for label in counts}
    ref = reference_count(counts, strategy)
    if target == "auto":
        return {label: ref for label in counts}
    return {label: math.floor(math.sqrt(n * ref) + 0.5) for label, n in counts.items()}


def resample(keys: np.ndarray, targets: dict[str, int], sampler: str, seed: int) -> np.ndarray:
    """Indices into `keys` after bringing each key in `targets` to its count.

    sampler "over" draws extra copies (RandomOverSampler), "under" keeps a subset
    (RandomUnderSampler, without replacement); keys not in `targets` keep all their rows.
    """
    keys = np.asarray(keys, dtype=object).astype(str)
    present = dict(zip(*np.unique(keys, return_counts=True), strict=True))
    strategy = {k: int(t) for k, t in targets.items() if present.get(k, 0) != t}
    if not strategy:
        return np.arange(len(keys))
    # imbalanced-learn refuses a target with one class; a placeholder row of another key is
    # kept untouched and dropped afterwards.
    placeholder = "\0placeholder"
    X = np.arange(len(keys) + 1).reshape(-1, 1)
    y = np.append(keys, placeholder)
    if sampler == "over":
        X_new, _ = RandomOverSampler(sampling_strategy=strategy, random_state=seed).fit_resample(X, y)
        index = X_new[:, 0]
    else:
        X_new, _ = RandomUnderSampler(sampling_strategy=strategy, random_state=seed).fit_resample(X, y)
        index = np.sort(X_new[:, 0])  # keep the manifest's order; only the choice is random
    return index[index != len(keys)]


def oversample(labels: list[str], targets: dict[str, int], seed: int) -> np.ndarray:
    """Repeat random rows of each class below its target until it reaches it."""
    counts = {label: labels.count(label) for label in set(labels)}
    raise_to = {label: t for label, t in targets.items() if t > counts.get(label, 0) and counts.get(label, 0) > 0}
    return resample(np.array(labels), raise_to, "over", seed)


def undersample_good(labels: list[str], targets: dict[str, int], seed: int) -> np.ndarray:
    """Keep a random subset of the good rows when there are more than the target; other classes stay."""
    n_good = labels.count(GOOD)
    lower_to = {GOOD: targets[GOOD]} if GOOD in targets and targets[GOOD] < n_good else {}
    return resample(np.array(labels), lower_to, "under", seed)


def repeat_evenly(n_rows: int, total: int) -> np.ndarray:
    """Indices 0..n_rows-1 cycled to `total`, so each row is repeated as evenly as possible."""
    return np.resize(np.arange(n_rows), total)


def real_rows_wanted(n_real: int, total: int, real_ratio: float | None) -> int:
    """How many real rows a class of `total` rows gets: all its reals, repeated up to
    ceil(real_ratio * total) when that is more (never beyond total)."""
    if real_ratio is None:
        return n_real
    return max(n_real, min(total, math.ceil(real_ratio * total - 1e-9)))


def apportion(n: int, shares: dict[str, float]) -> dict[str, int]:
    """Split n images among methods by their shares (largest remainder; ties go to the earlier method)."""
    exact = {m: n * s for m, s in shares.items()}
    counts = {m: math.floor(x) for m, x in exact.items()}
    by_remainder = sorted(shares, key=lambda m: -(exact[m] - counts[m]))  # stable: earlier wins ties
    for m in by_remainder[: n - sum(counts.values())]:
        counts[m] += 1
    return counts


def choose_synthetic(keys: list[str], wanted: dict[str, int], seed: int) -> np.ndarray:
    """Indices of `wanted[k]` rows of each key k, drawn without replacement; other keys are dropped.

    Each key must have at least its wanted count (the caller checks, to name the missing ones).
    """
    keys_arr = np.array(keys, dtype=object).astype(str)
    keep = np.flatnonzero(np.isin(keys_arr, [k for k, n in wanted.items() if n > 0]))
    chosen = resample(keys_arr[keep], {k: n for k, n in wanted.items() if n > 0}, "under", seed)
    return keep[chosen]
