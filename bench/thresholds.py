"""Where to put the detection threshold: a train-eval run's models decided at several false-alarm targets
on the good images their thresholds were set on, and by the argmax, side by side.

No training: each checkpoint of the report predicts its split's held-out real images and the images
named in its config.json "calibration" (the held-back good training images its thresholds were set
on), by its own rule (or `--rule`) and views, as train-eval does. The row of the checkpoint's own
decision (config.json "decision": the argmax, or train-eval's target, train/decide.py FALSE_ALARM_TARGET,
recorded in the checkpoint) reproduces the report on a CPU run.

    .venv/bin/python bench/thresholds.py <work>/reports/<run>                    # every arm
    .venv/bin/python bench/thresholds.py <work>/reports/<run> --arm balanced --targets 0.03 0.04 0.05
    .venv/bin/python bench/thresholds.py <work>/reports/<run> --arm balanced --rule map   # per-class recall of a rule
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import track
from rich.table import Table

from defectsynth.data.cache import ImageCache
from defectsynth.data.layout import GOOD
from defectsynth.data.split import load_split
from defectsynth.errors import DefectsynthError
from defectsynth.report.read import read_report
from defectsynth.train.decide import RULES, calibrate, class_scores, decide, detection_score
from defectsynth.train.evaluate import predict_rows
from defectsynth.train.metrics import compute_metrics

TARGETS = (0.02, 0.03, 0.04, 0.05, 0.06, 0.08)


def decisions(run: dict, cache: ImageCache, targets: list[float], rule: str | None = None) -> dict[str, dict]:
    """{"argmax" | target: metrics} of one trained model on its held-out images."""
    checkpoint = Path(run["checkpoint"])
    config = json.loads((checkpoint / "config.json").read_text())
    if not config.get("calibration"):
        raise SystemExit(f"{checkpoint}: its config.json does not name the good images its thresholds were "
                         "set on (trained before they were recorded); train it again")
    split = load_split(Path(run["split_json"]))
    train = {r.path: r for r in split.real_rows("train")}
    test = split.real_rows("test")
    # one pass over both: the held-out images first, then the held-back goods
    preds = predict_rows(checkpoint, test + [train[p] for p in config["calibration"]], cache, "cpu")
    good = preds.classes.index(GOOD)
    if rule is not None and preds.maps is None and rule != "image":
        raise SystemExit(f"--rule {rule}: {checkpoint} is a plain classifier without a defect map; use --rule image")
    scores = np.asarray(preds.scores) if rule is None else class_scores(preds.logits, preds.maps, rule, good)
    goods = detection_score(scores[len(test):], good)
    out = {}
    for name, threshold in [("argmax", None)] + [(f"{100 * t:g}%", calibrate(goods, t)) for t in targets]:
        labels = [preds.classes[i] for i in decide(scores[:len(test)], good, threshold)]
        out[name] = compute_metrics(preds.y_true[:len(test)], labels, preds.classes)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("report", type=Path, help="a train-eval report folder (or its metrics.json)")
    parser.add_argument("--arm", default=None, help="only this arm (default: every arm)")
    parser.add_argument("--targets", type=float, nargs="+", default=list(TARGETS),
                        help="false-alarm targets on the calibration images (shares, e.g. 0.04)")
    parser.add_argument("--rule", choices=RULES, default=None,
                        help="decide by this rule (train/decide.py) instead of each model's own")
    args = parser.parse_args()
    if not all(0 < t < 1 for t in args.targets):
        parser.error(f"--targets {' '.join(map(str, args.targets))}: each must be a share between 0 and 1")
    try:
        runs, settings = read_report(args.report, args.arm)
    except DefectsynthError as e:
        parser.error(str(e))
    cache = ImageCache(Path(settings["work"]) / "cache")
    scored = [(r, decisions(r, cache, args.targets, args.rule)) for r in track(runs, description="scoring checkpoints")]
    console = Console(width=max(Console().width, 150))  # a column per class
    for arm in dict.fromkeys(r["arm"] for r in runs):
        models = [s for r, s in scored if r["arm"] == arm]
        classes = list(models[0]["argmax"]["per_class"])
        table = Table(title=f"{arm}, rule {args.rule or 'of each model'}: {len(models)} models, mean over them "
                            "(sd of balanced accuracy)")
        for column in ["decision", "bal. acc.", "false alarms", "max false alarms", *classes]:
            table.add_column(column)
        for name in models[0]:
            acc = [m[name]["balanced_accuracy"] for m in models]
            alarms = [m[name]["false_alarm_rate"] for m in models]
            recall = [f"{np.mean([m[name]['per_class'][c]['recall'] for m in models]):.3f}" for c in classes]
            table.add_row(name, f"{np.mean(acc):.3f} ({np.std(acc, ddof=1) if len(acc) > 1 else 0:.3f})",
                          f"{np.mean(alarms):.3f}", f"{np.max(alarms):.3f}", *recall)
        console.print(table)


if __name__ == "__main__":
    main()
