"""What averaging over mirror images buys: a train-eval run's models scored on the image alone and on the
image with the mirror images they trained on (train/loop.py flip_views), paired by model.

No training: each checkpoint of the report predicts its split's held-out real images and the held-back
good images its thresholds were set on (config.json "calibration"; the threshold is set again on them,
seen the same way and at the same false-alarm target, as train-eval does, where the model decides at a
threshold rather than by the argmax), once per way of looking. On
a CPU run the row of the model's own views reproduces the report's figures (a CUDA run set its
thresholds under mixed precision).

    .venv/bin/python bench/views.py <work>/reports/<run>                 # every arm
    .venv/bin/python bench/views.py <work>/reports/<run> --arm balanced
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.progress import track
from rich.table import Table

from defectsynth.data.cache import ImageCache
from defectsynth.data.layout import GOOD
from defectsynth.data.split import load_split
from defectsynth.errors import DefectsynthError
from defectsynth.report.read import read_report
from defectsynth.train.data import ImageSet
from defectsynth.train.decide import calibrate, class_scores, decide, detection_score, saved_decision
from defectsynth.train.loop import load_classifier, predict_outputs, saved_views
from defectsynth.train.metrics import compute_metrics, detection_metrics
from defectsynth.train.reference import Reference, reference_channels
from defectsynth.train.stats import paired_bootstrap

METRICS = ("balanced_accuracy", "false_alarm_rate", "image_auroc")


def score(run: dict, cache: ImageCache) -> dict[str, dict]:
    """{"one view": metrics, "model's views": metrics} of one trained model on its held-out images."""
    model, config = load_classifier(Path(run["checkpoint"]))
    split = load_split(Path(run["split_json"]))
    classes, rule = config["classes"], config.get("rule", "image")
    good = classes.index(GOOD)
    if "calibration" not in config:
        raise SystemExit(f"{run['checkpoint']}: its config.json does not name the good images its thresholds "
                         "were set on (trained before they were recorded); train it again")
    train = {r.path: r for r in split.real_rows("train")}
    calibration = [train[path] for path in config["calibration"]]
    test = split.real_rows("test")
    reference = Reference.of_model(config, cache)
    images = {name: ImageSet(rows, classes, cache, config["size"], config["in_channels"], reference=reference).images
              for name, rows in (("test", test), ("calibration", calibration))}
    truth = [r.label for r in test]
    out = {}
    for name, flips in (("one view", ((),)), ("model's views", saved_views(config))):
        scores = {}
        for part, x in images.items():
            logits, maps = predict_outputs(model, x, torch.device("cpu"), reference_channels=reference_channels(config),
                                           flips=flips)
            scores[part] = class_scores(logits, maps, rule, good)
        # a checkpoint saved before the target was recorded had its thresholds set at 5%
        target = config.get("false_alarm_target", 0.05)
        threshold = calibrate(detection_score(scores["calibration"], good), target)
        labels = decide(scores["test"], good, threshold if saved_decision(config) == "calibrated" else None)
        m = compute_metrics(truth, [classes[i] for i in labels], classes)
        m["image_auroc"] = detection_metrics([t != GOOD for t in truth], detection_score(scores["test"], good),
                                             None)["image_auroc"]
        out[name] = m
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("report", type=Path, help="a train-eval report folder (or its metrics.json)")
    parser.add_argument("--arm", default=None, help="only this arm (default: every arm)")
    args = parser.parse_args()
    try:
        runs, settings = read_report(args.report, args.arm)
    except DefectsynthError as e:
        parser.error(str(e))
    cache = ImageCache(Path(settings["work"]) / "cache")
    scored = [(r, score(r, cache)) for r in track(runs, description="scoring checkpoints")]
    console = Console()
    for arm in dict.fromkeys(r["arm"] for r in runs):
        pairs = [s for r, s in scored if r["arm"] == arm]
        table = Table(title=f"{arm}: model's views − one view, {len(pairs)} models")
        for column in ("metric", "one view", "model's views", "Δ [95% CI]", "report"):
            table.add_column(column)
        reported = [r["metrics"] for r, _ in scored if r["arm"] == arm]
        for metric in METRICS:
            a = [s["one view"][metric] for s in pairs]
            b = [s["model's views"][metric] for s in pairs]
            d = paired_bootstrap([y - x for x, y in zip(a, b, strict=True)])
            table.add_row(metric, f"{np.mean(a):.3f}", f"{np.mean(b):.3f}",
                          f"{d['mean']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}]",
                          f"{np.mean([m[metric] for m in reported]):.3f}")
        for c in pairs[0]["one view"]["per_class"]:
            a = [s["one view"]["per_class"][c]["recall"] for s in pairs]
            b = [s["model's views"]["per_class"][c]["recall"] for s in pairs]
            table.add_row(f"recall {c}", f"{np.mean(a):.3f}", f"{np.mean(b):.3f}", "",
                          f"{np.mean([m['per_class'][c]['recall'] for m in reported]):.3f}")
        console.print(table)


if __name__ == "__main__":
    main()
