"""Evaluation on held-out real images only: the test rows of the split, which no training row may be."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from defectsynth.data.cache import ImageCache
from defectsynth.data.guard import check_no_leakage
from defectsynth.data.manifest import Row
from defectsynth.data.split import Split
from defectsynth.train.data import ImageSet
from defectsynth.train.loop import load_classifier, predict_logits


@dataclass
class Predictions:
    rows: list[Row]
    y_true: list[str]
    y_pred: list[str]
    scores: list[list[float]]  # softmax class scores, in the order of `classes`
    classes: list[str]


def predict_rows(checkpoint: Path, rows: list[Row], cache: ImageCache, device: str = "auto") -> Predictions:
    """Labels and class scores of `rows` from the classifier saved in `checkpoint`."""
    model, config = load_classifier(checkpoint)
    classes = config["classes"]
    dev = torch.device("cuda" if device != "cpu" and torch.cuda.is_available() else "cpu")
    images = ImageSet(rows, classes, cache, config["size"], config["in_channels"]).images
    probs = predict_logits(model.to(dev), images, dev).softmax(dim=1)
    return Predictions(rows, [r.label for r in rows], [classes[i] for i in probs.argmax(1).tolist()],
                       probs.tolist(), classes)


def evaluate_heldout(checkpoint: Path, split: Split, trained_on: list[Row], cache: ImageCache,
                     device: str = "auto") -> Predictions:
    """Predictions on split.real_rows("test"), after checking that nothing the model trained or was
    selected on is, or was made from, one of those images."""
    check_no_leakage(trained_on, split, "train-eval")
    return predict_rows(checkpoint, split.real_rows("test"), cache, device)
