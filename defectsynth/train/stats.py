"""Statistics over repeated runs: mean ± std, and paired arm-vs-baseline differences with bootstrap intervals.

Two arms trained on the same split with the same seed share their test images, validation fold and
initialisation, so their difference is measured pairwise, (split, seed) by (split, seed): the pairing
removes the split-to-split spread that would otherwise swamp a few points of gain.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def _numbers(values: Sequence[float | None]) -> np.ndarray:
    """The defined values: None (a metric undefined for that run) and NaN are left out."""
    kept = [float(v) for v in values if v is not None and not math.isnan(v)]
    return np.asarray(kept, dtype=float)


def summarize(values: Sequence[float | None]) -> dict:
    """{mean, std, n} of the defined values; std is the sample std (ddof=1), 0 for a single value."""
    x = _numbers(values)
    if not x.size:
        return {"mean": None, "std": None, "n": 0}
    return {"mean": float(x.mean()), "std": float(x.std(ddof=1)) if x.size > 1 else 0.0, "n": int(x.size)}


def paired_bootstrap(diffs: Sequence[float], n_boot: int = 10000, seed: int = 0) -> dict:
    """Percentile 95% bootstrap interval of the mean paired difference.

    Resamples the pairs with replacement `n_boot` times (numpy Generator seeded with `seed`, so the
    same input gives the same interval). `excludes_zero` is the plain verdict: the whole interval is on
    one side of 0. A single pair gives no interval worth the name, so it never excludes 0. With few
    pairs (say 5) the percentile interval is somewhat too narrow; read it as the least spread to expect.
    """
    x = _numbers(diffs)
    if not x.size:
        raise ValueError("paired_bootstrap needs at least one difference")
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(n_boot, x.size))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return {"mean": float(x.mean()), "low": float(low), "high": float(high),
            "excludes_zero": bool(x.size > 1 and (low > 0 or high < 0)), "n": int(x.size)}


def by_arm(runs: Sequence[dict]) -> dict[str, list[dict]]:
    """Runs grouped by arm, arms in the order they first appear."""
    groups: dict[str, list[dict]] = {}
    for run in runs:
        groups.setdefault(run["arm"], []).append(run)
    return groups


def compare_arms(runs: Sequence[dict], metric: str, baseline: str = "original", n_boot: int = 10000,
                 seed: int = 0) -> dict[str, dict]:
    """For each arm other than `baseline`: paired_bootstrap of (arm - baseline) on run["metrics"][metric],
    pairing runs by (split, seed). Pairs where either value is undefined are skipped; an arm with no
    pair is left out. The result also lists the pairs as {split, seed, diff}."""
    base = {(r["split"], r["seed"]): r["metrics"].get(metric) for r in runs if r["arm"] == baseline}
    out = {}
    for arm, arm_runs in by_arm(runs).items():
        if arm == baseline:
            continue
        pairs = []
        for r in arm_runs:
            ref, value = base.get((r["split"], r["seed"])), r["metrics"].get(metric)
            if ref is not None and value is not None:
                pairs.append({"split": r["split"], "seed": r["seed"], "diff": float(value) - float(ref)})
        if pairs:
            out[arm] = {**paired_bootstrap([p["diff"] for p in pairs], n_boot=n_boot, seed=seed), "pairs": pairs}
    return out
