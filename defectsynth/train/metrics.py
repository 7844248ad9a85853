"""Held-out metrics of one classifier: plain Python numbers, so a run's metrics go straight into JSON.

The classifier is 5-way (good + four defect types). The primary figure is the 5-way balanced accuracy
(mean per-class recall); the defect-type accuracies put our numbers beside the published 4-way tables.
Values that are undefined for a test set (no defect images, a class with no true image) are None,
never NaN, so that JSON stays valid and averages can skip them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from imblearn.metrics import classification_report_imbalanced, geometric_mean_score
from sklearn.metrics import (
    average_precision_score,
    balanced_accuracy_score,
    confusion_matrix,
    f1_score,
    precision_recall_curve,
    precision_recall_fscore_support,
    roc_auc_score,
)

from defectsynth.data.layout import GOOD


def _share(hits: np.ndarray) -> float | None:
    return float(hits.mean()) if hits.size else None


def _defined(value: float) -> float | None:
    return None if np.isnan(value) else float(value)


def compute_metrics(y_true: Sequence[str], y_pred: Sequence[str], classes: Sequence[str],
                    scores: Sequence[Sequence[float]] | np.ndarray | None = None, good: str = GOOD) -> dict:
    """Metrics of predictions `y_pred` against `y_true` (class names), for the classes in `classes`.

    Returns a dict of:
    - balanced_accuracy: 5-way mean per-class recall over the classes present in y_true (the primary
      figure; sklearn's balanced_accuracy_score).
    - accuracy: plain share of correct predictions (dominated by good; for reference only).
    - macro_f1: unweighted mean F1 over the classes present in y_true or y_pred (sklearn's default set).
    - per_class: {class: {recall, precision, f1, support}} in `classes` order; recall is None for a class
      with no true image, precision None for a class never predicted.
    - geometric_mean: geometric mean of the per-class recalls of the classes present in y_true
      (imbalanced-learn); 0 as soon as one class is never recognised.
    - imbalanced_report: imbalanced-learn's classification_report_imbalanced, as text.
    - defect_type_accuracy: among held-out defect images (true label != good), the share predicted as
      exactly their true type; a defect predicted as good counts as wrong. This is the closest a 5-way
      classifier comes to the papers' 4-way figure, and a little stricter than it.
    - defect_type_accuracy_4way_argmax: with `scores` (N x C class scores or probabilities, columns in
      `classes` order): among held-out defect images, the share whose highest-scoring *defect* class is
      the true type, ignoring the good column. This is what the published tables measure (a classifier
      over defect types only). None when `scores` is not given.
    - detection_recall: among defect images, the share predicted as any defect type.
    - false_alarm_rate: among good images, the share predicted as any defect type.
    - confusion: counts, rows = true class, columns = predicted class, both in `classes` order.
    - classes, n_test, n_defects, n_good: what the figures were computed on.
    """
    classes = list(classes)
    y_true = np.asarray(list(y_true), dtype=object)
    y_pred = np.asarray(list(y_pred), dtype=object)
    if len(y_true) != len(y_pred):
        raise ValueError(f"y_true has {len(y_true)} labels but y_pred has {len(y_pred)}")
    if not len(y_true):
        raise ValueError("no test images to compute metrics on")
    unknown = sorted((set(y_true.tolist()) | set(y_pred.tolist())) - set(classes))
    if unknown:
        raise ValueError(f"labels {unknown} are not in classes {classes}")
    if good not in classes:
        raise ValueError(f"classes {classes} lack the good class {good!r}")

    present = [c for c in classes if c in set(y_true.tolist())]
    seen = [c for c in classes if c in set(y_true.tolist()) | set(y_pred.tolist())]
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=classes, zero_division=np.nan)
    per_class = {c: {"recall": _defined(recall[i]), "precision": _defined(precision[i]),
                     "f1": _defined(f1[i]), "support": int(support[i])} for i, c in enumerate(classes)}

    is_defect = y_true != good
    defect_type = _share(y_pred[is_defect] == y_true[is_defect])
    argmax_4way = None
    if scores is not None:
        scores = np.asarray(scores, dtype=float)
        if scores.shape != (len(y_true), len(classes)):
            raise ValueError(f"scores has shape {scores.shape}; expected ({len(y_true)}, {len(classes)})")
        defect_cols = [i for i, c in enumerate(classes) if c != good]
        best = np.asarray([classes[defect_cols[j]] for j in scores[:, defect_cols].argmax(axis=1)], dtype=object)
        argmax_4way = _share(best[is_defect] == y_true[is_defect])

    return {
        "balanced_accuracy": float(balanced_accuracy_score(y_true, y_pred)),
        "accuracy": float((y_true == y_pred).mean()),
        "macro_f1": float(f1_score(y_true, y_pred, labels=seen, average="macro", zero_division=0)),
        "per_class": per_class,
        "geometric_mean": float(geometric_mean_score(y_true, y_pred, labels=present, average="multiclass")),
        "imbalanced_report": imbalanced_report(y_true, y_pred, seen),
        "defect_type_accuracy": defect_type,
        "defect_type_accuracy_4way_argmax": argmax_4way,
        "detection_recall": _share(y_pred[is_defect] != good),
        "false_alarm_rate": _share(y_pred[~is_defect] != good),
        "confusion": confusion_matrix(y_true, y_pred, labels=classes).tolist(),
        "classes": classes,
        "n_test": int(len(y_true)),
        "n_defects": int(is_defect.sum()),
        "n_good": int((~is_defect).sum()),
    }


def imbalanced_report(y_true: Sequence[str], y_pred: Sequence[str], labels: Sequence[str]) -> str:
    return classification_report_imbalanced(list(y_true), list(y_pred), labels=list(labels), digits=3,
                                            zero_division=0)


def summed_confusion(runs: Sequence[dict]) -> np.ndarray:
    """The confusion matrices of several runs (same classes) added up."""
    return np.sum([np.asarray(r["metrics"]["confusion"], dtype=int) for r in runs], axis=0)


def pooled_imbalanced_report(confusion: np.ndarray, classes: Sequence[str]) -> str:
    """classification_report_imbalanced of all the predictions a summed confusion matrix counts."""
    rows, cols = np.nonzero(confusion)
    counts = confusion[rows, cols]
    y_true = np.repeat(np.asarray(classes, dtype=object)[rows], counts)
    y_pred = np.repeat(np.asarray(classes, dtype=object)[cols], counts)
    seen = [c for c in classes if c in set(y_true.tolist()) | set(y_pred.tolist())]
    return imbalanced_report(y_true, y_pred, seen)


def detection_metrics(is_defect: Sequence[bool], score: Sequence[float], threshold: float | None) -> dict:
    """Good-vs-defect detection from a defect score per image (higher = more defective).

    - image_auroc: ROC AUC of the score (sklearn); None unless both good and defect images are present.
    - recall_at_threshold / false_alarms_at_threshold: the shares of defect / good images whose score
      exceeds `threshold` (set on training data only, e.g. held-back good images); None without one.
    """
    is_defect = np.asarray(is_defect, dtype=bool)
    score = np.asarray(score, dtype=float)
    both = is_defect.any() and (~is_defect).any()
    flagged = score > threshold if threshold is not None else None
    return {
        "image_auroc": float(roc_auc_score(is_defect, score)) if both else None,
        "recall_at_threshold": _share(flagged[is_defect]) if flagged is not None else None,
        "false_alarms_at_threshold": _share(flagged[~is_defect]) if flagged is not None else None,
        "threshold": threshold,
    }


def pixel_metrics(defect_probability: np.ndarray, truth: np.ndarray) -> dict:
    """Localization over every pixel of every image: `defect_probability` (N x H x W floats) against
    `truth` (N x H x W booleans; good images all False), at one common resolution.

    - pixel_auroc: ROC AUC over all pixels (sklearn roc_auc_score).
    - pixel_ap: average precision over all pixels (sklearn average_precision_score).
    - pixel_f1_max: the best F1 over all thresholds of the precision-recall curve.
    None when there is no defect pixel (or no background pixel)."""
    y = np.asarray(truth, dtype=bool).ravel()
    p = np.asarray(defect_probability, dtype=np.float32).ravel()
    if y.shape != p.shape:
        raise ValueError(f"probabilities have {p.size} pixels but the masks {y.size}")
    if not y.any() or y.all():
        return {"pixel_auroc": None, "pixel_ap": None, "pixel_f1_max": None}
    precision, recall, _ = precision_recall_curve(y, p)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros_like(precision),
                   where=precision + recall > 0)
    return {"pixel_auroc": float(roc_auc_score(y, p)), "pixel_ap": float(average_precision_score(y, p)),
            "pixel_f1_max": float(f1.max())}
