"""How the real training images are spent: `--val fold|none|kfold`.

Every mode holds back the good images of `validation_fold` (15% of train/good) from training: they
set the detection threshold (train/decide.py), never test images. The modes differ in the few real
defect shots:

- fold: one shot per defect type (the rest of `validation_fold`) is withheld with its synthetic
  children and selects the best epoch (today's protocol before issue 12).
- none: every shot trains; the schedule is fixed and the last epoch is kept.
- kfold: k folds, fold j withholding the j-th shot of each type (and the held-back goods); the epoch
  with the best mean validation score over the folds is then the stopping point of a refit on every
  shot. Costs k + 1 trainings.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from defectsynth.data.layout import GOOD
from defectsynth.data.manifest import Row
from defectsynth.errors import DefectsynthError
from defectsynth.train.data import validation_fold

VAL_MODES = ("fold", "none", "kfold")
DEFAULT_VAL = "none"  # chosen by measurement: see presets.py


@dataclass
class Plan:
    held_back: list[Row]  # real training images no training run of this mode may see (with their children)
    val: list[Row]  # what selects the epoch ([] for none and for the kfold refit)
    calibration: list[Row]  # held-back good images, for the detection threshold
    kfolds: list[list[Row]]  # kfold: the validation rows of each fold


def plan(real_train: list[Row], mode: str, seed: int, k: int = 3) -> Plan:
    if mode not in VAL_MODES:
        raise DefectsynthError(f"--val {mode!r} is unknown; use one of: {', '.join(VAL_MODES)}")
    fold = validation_fold(real_train, seed=seed)
    goods = [r for r in fold if r.label == GOOD]
    if mode == "fold":
        return Plan(fold, fold, goods, [])
    if mode == "none":
        return Plan(goods, [], goods, [])
    return Plan(goods, [], goods, [goods + shots for shots in shot_folds(real_train, k, seed)])


def shot_folds(real_train: list[Row], k: int, seed: int) -> list[list[Row]]:
    """k lists of real defect images: fold j holds the j-th shot (in a seeded order) of each defect type
    with more than one shot, so every fold leaves each type at least one shot to train on."""
    rng = np.random.default_rng([seed, 104729])
    folds: list[list[Row]] = [[] for _ in range(k)]
    for label in sorted({r.label for r in real_train} - {GOOD}):
        rows = sorted((r for r in real_train if r.label == label), key=lambda r: r.path)
        if len(rows) < 2:
            continue
        for j, i in enumerate(rng.permutation(len(rows))[:k].tolist()):
            folds[j].append(rows[i])
    return [f for f in folds if f]


def best_epoch(histories: list[list[dict]]) -> int:
    """The epoch (1-based) with the best mean validation balanced accuracy over the folds' histories
    (ties: the earlier epoch)."""
    epochs = min(len(h) for h in histories)
    means = [np.mean([h[e]["val_balanced_accuracy"] for h in histories]) for e in range(epochs)]
    return int(np.argmax(means)) + 1
