"""Evaluation on held-out real images only: the test rows of the split, which no training row may be.

The model's prediction (its logits averaged over the image and the mirror images it trained on) gives
the image logits and (map models) the defect maps; from them come the three tasks: classification
(every decision rule of train/decide.py, argmax and calibrated), detection (image AUROC of the defect
score, recall and false alarms at the threshold set on held-back good training images) and localization
(pixel AUROC, AP, F1-max). Localization is measured at the training image size: the stride-4 map
upsampled bilinearly to it, the real masks downsampled to it by area (a pixel is defect when the mask
covers at least half of it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from defectsynth.data.cache import ImageCache
from defectsynth.data.guard import check_no_leakage
from defectsynth.data.layout import GOOD
from defectsynth.data.manifest import Row
from defectsynth.data.split import Split
from defectsynth.device import pick_device
from defectsynth.train.data import ImageSet
from defectsynth.train.decide import (
    class_scores,
    decide,
    defect_probability,
    detection_score,
    rules_for,
    saved_decision,
)
from defectsynth.train.loop import load_classifier, predict_outputs, saved_views
from defectsynth.train.metrics import compute_metrics, detection_metrics, pixel_metrics
from defectsynth.train.reference import Reference, reference_channels


@dataclass
class Predictions:
    rows: list[Row]
    y_true: list[str]
    y_pred: list[str]  # the model's own decision: its rule, by its recorded decision (argmax or calibrated)
    scores: list[list[float]]  # class scores of that rule, in the order of `classes`
    classes: list[str]
    rule: str = "image"
    thresholds: dict = field(default_factory=dict)  # rule -> detection threshold (held-back good images)
    logits: torch.Tensor | None = None
    maps: torch.Tensor | None = None  # N x C x h x w map logits (map models)
    size: int = 0


def predict_images(model: torch.nn.Module, config: dict, images: torch.Tensor, device: str = "auto"):
    """(logits, maps, class scores, class indices) of a uint8 N x C x S x S tensor, by the checkpoint's
    rule and decision."""
    dev = pick_device(device)
    logits, maps = predict_outputs(model.to(dev), images, dev, reference_channels=reference_channels(config),
                                   flips=saved_views(config))
    good = config["classes"].index(GOOD)
    rule = config.get("rule", "image")
    threshold = config.get("thresholds", {}).get(rule) if saved_decision(config) == "calibrated" else None
    scores = class_scores(logits, maps, rule, good)
    return logits, maps, scores, decide(scores, good, threshold)


def predict_rows(checkpoint: Path, rows: list[Row], cache: ImageCache, device: str = "auto") -> Predictions:
    """Labels and class scores of `rows` from the classifier saved in `checkpoint`."""
    model, config = load_classifier(checkpoint)
    classes = config["classes"]
    images = ImageSet(rows, classes, cache, config["size"], config["in_channels"],
                      reference=Reference.of_model(config, cache)).images
    logits, maps, scores, labels = predict_images(model, config, images, device)
    return Predictions(rows, [r.label for r in rows], [classes[i] for i in labels.tolist()], scores.tolist(),
                       classes, config.get("rule", "image"), config.get("thresholds", {}), logits, maps,
                       config["size"])


def evaluate_heldout(checkpoint: Path, split: Split, trained_on: list[Row], cache: ImageCache,
                     device: str = "auto") -> Predictions:
    """Predictions on split.real_rows("test"), after checking that nothing the model trained or was
    selected on is, or was made from, one of those images."""
    check_no_leakage(trained_on, split, "train-eval")
    return predict_rows(checkpoint, split.real_rows("test"), cache, device)


def true_masks(rows: list[Row], cache: ImageCache, size: int) -> np.ndarray:
    """N x size x size booleans: a pixel is defect when the row's mask covers at least half of it."""
    return np.stack([cache.coverage(r.mask, size) >= 128 if r.mask and r.label != GOOD
                     else np.zeros((size, size), bool) for r in rows])


def heldout_metrics(preds: Predictions, cache: ImageCache) -> tuple[dict, dict]:
    """(metrics of the model's own decision, with detection and localization added; the classification and
    detection figures of every rule x {argmax, calibrated}, for comparing rules on one trained model)."""
    classes, good = preds.classes, preds.classes.index(GOOD)
    is_defect = np.asarray([y != GOOD for y in preds.y_true])
    metrics = compute_metrics(preds.y_true, preds.y_pred, classes, scores=preds.scores)
    own = detection_score(np.asarray(preds.scores), good)
    metrics.update(detection_metrics(is_defect, own, preds.thresholds.get(preds.rule)))
    if preds.maps is not None:
        probability = F.interpolate(defect_probability(preds.maps, good)[:, None], size=(preds.size,) * 2,
                                    mode="bilinear", align_corners=False)[:, 0].numpy()
        truth = true_masks(preds.rows, cache, preds.size)
        metrics.update(pixel_metrics(probability, truth))
        # pooled pixels are dominated by the largest masks (misplaced); per type: its images and the good ones
        labels = np.asarray(preds.y_true)
        metrics["pixel_per_class"] = {
            c: pixel_metrics(probability[(labels == c) | ~is_defect], truth[(labels == c) | ~is_defect])
            for c in classes if c != GOOD and (labels == c).any()}
    rules = {}
    for rule in rules_for(preds.maps):
        scores = class_scores(preds.logits, preds.maps, rule, good)
        threshold = preds.thresholds.get(rule)
        for decision, t in (("argmax", None), ("calibrated", threshold)):
            if decision == "calibrated" and t is None:
                continue
            labels = [classes[i] for i in decide(scores, good, t).tolist()]
            m = compute_metrics(preds.y_true, labels, classes, scores=scores)
            rules[f"{rule}/{decision}"] = {
                key: m[key] for key in ("balanced_accuracy", "defect_type_accuracy", "detection_recall",
                                        "false_alarm_rate")}
            rules[f"{rule}/{decision}"]["image_auroc"] = detection_metrics(
                is_defect, detection_score(scores, good), None)["image_auroc"]
    return metrics, rules
