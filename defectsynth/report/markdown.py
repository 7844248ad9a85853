"""report.md and metrics.json: what was run, what it measured, and whether the gain is more than noise."""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from defectsynth.io import write_text
from defectsynth.report.figures import MapExamples, write_figures
from defectsynth.report.table import (
    BASELINE,
    METRICS,
    PRIMARY,
    interval,
    markdown_table,
    mean_std,
    metric_title,
    summary_table,
)
from defectsynth.train.decide import FALSE_ALARM_TARGET
from defectsynth.train.metrics import pooled_imbalanced_report, summed_confusion
from defectsynth.train.stats import by_arm, compare_arms, summarize

# Transistor, 4-way defect-type accuracy (%), ResNet-34 ImageNet-pretrained, first-3 split (AnomalyDiffusion, AAAI 2024)
PUBLISHED_ON = "transistor"  # shown only for this category: the figures mean nothing beside another one
PUBLISHED = [("AnomalyDiffusion (AAAI 2024)", 60.71), ("DFMGAN (AAAI 2023)", 52.38), ("Crop&Paste", 41.67)]
SETTINGS_FIRST = ["device_used", "device", "model", "reference", "weights", "weights_notes", "size", "epochs", "batch_size", "lr",
                  "preset", "wall_s", "data", "work", "protocol", "shots", "splits", "seeds", "arms", "validation"]
DISTINGUISHABLE = "distinguishable from noise"
NOT_DISTINGUISHABLE = "not distinguishable from noise"


def _value(value) -> str:
    if isinstance(value, (list, tuple)):
        return "; ".join(map(str, value)) if value else "-"
    return str(value).replace("|", "\\|")


def settings_section(settings: dict, runs: Sequence[dict]) -> str:
    keys = [k for k in SETTINGS_FIRST if k in settings] + sorted(k for k in settings if k not in SETTINGS_FIRST)
    lines = ["## Settings", "", "| setting | value |", "|---|---|"]
    lines += [f"| {k} | {_value(settings[k])} |" for k in keys]
    notes = settings.get("weights_notes") or sorted({r["weights_note"] for r in runs if r.get("weights_note")})
    lines += ["", f"**Weights:** {_value(list(notes)) if notes else 'not recorded'}."]
    if "wall_s" in settings:
        per_run = summarize([r.get("wall_s") for r in runs])
        each = f"; training one classifier took {per_run['mean']:.0f} s on average" if per_run["n"] else ""
        lines += ["", f"**Wall time:** {settings['wall_s']:.0f} s ({settings['wall_s'] / 60:.1f} min) for "
                     f"{len(runs)} classifier(s){each}."]
    return "\n".join(lines) + "\n"


def verdict(arm: str, diff: dict, baseline: str, what: str) -> str:
    """One plain sentence: the paired difference, its interval, and whether it is more than noise."""
    if diff["n"] < 2:
        return (f"**{arm}** vs {baseline}, {what}: {diff['mean']:+.3f} on a single pair of runs. One pair gives no "
                f"interval, so this is {NOT_DISTINGUISHABLE}; run more splits or seeds.")
    head = (f"**{arm}** vs {baseline}, {what}: {diff['mean']:+.3f} (95% CI {diff['low']:+.3f} to "
            f"{diff['high']:+.3f}, {diff['n']} paired runs).")
    if diff["excludes_zero"]:
        kind = "gain" if diff["mean"] > 0 else "loss"
        return f"{head} The interval excludes 0: the {kind} is {DISTINGUISHABLE}."
    return f"{head} The interval includes 0: the difference is {NOT_DISTINGUISHABLE}."


def comparison_section(runs: Sequence[dict], baseline: str) -> tuple[str, dict]:
    paired = {key: compare_arms(runs, key, baseline=baseline) for key, _title in METRICS}
    lines = [f"## Paired difference against `{baseline}`", ""]
    if not any(paired.values()):
        lines.append(f"No arm could be paired with `{baseline}` (same split and seed), so there is no paired "
                     "comparison in this run.")
        return "\n".join(lines) + "\n", paired
    lines += ["Each arm minus the baseline on the same split and training seed (same test images, validation "
              "fold and initialisation); mean over pairs, percentile bootstrap 95% interval (10,000 resamples). "
              "For false alarms, lower is better.", "",
              "| arm | metric | mean difference [95% CI] | pairs | interval excludes 0 |", "|---|---|---|---|---|"]
    for arm in by_arm(runs):
        for key, title in METRICS:
            diff = paired[key].get(arm)
            if diff:
                lines.append(f"| {arm} | {metric_title(title, runs)} | {interval(diff)} | {diff['n']} | "
                             f"{'yes' if diff['excludes_zero'] else 'no'} |")
    lines.append("")
    what = f"{len(runs[0]['metrics']['classes'])}-way balanced accuracy"
    lines += [f"- {verdict(arm, diff, baseline, what)}" for arm, diff in paired[PRIMARY].items()]
    return "\n".join(lines) + "\n", paired


def per_class_section(runs: Sequence[dict], classes: Sequence[str]) -> str:
    lines = ["## Per-class recall (mean ± std)", "", "| arm | " + " | ".join(classes) + " |",
             "|---|" + "---|" * len(classes)]
    for arm, arm_runs in by_arm(runs).items():
        cells = [mean_std(summarize([r["metrics"]["per_class"][c]["recall"] for r in arm_runs])) for c in classes]
        lines.append(f"| {arm} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


MISSED_ROWS = 15  # per arm: the images decided wrong most often, then a count of the rest


def missed_section(runs: Sequence[dict]) -> str:
    """Per arm, the held-out images decided wrong in at least half of the runs that held them out (a defect
    called something else, a good part called a defect), worst first: which real defects the fill-up
    does not teach, and what they are taken for. Empty for runs recorded without their predictions."""
    if not runs or not all("predictions" in r for r in runs):
        return ""
    lines = ["## Held-out images decided wrong in at least half of their runs", "",
             "Each image is held out by the splits that did not train on it; `right` counts the runs that "
             "decided it right.", "", "| arm | image | label | right / runs | decided instead (runs) |",
             "|---|---|---|---|---|"]
    for arm, arm_runs in by_arm(runs).items():
        seen: dict[str, tuple[str, list[str]]] = {}
        for r in arm_runs:
            for p in r["predictions"]:
                seen.setdefault(p["image"], (p["label"], []))[1].append(p["predicted"])
        tallies = [(image, label, Counter(decided)) for image, (label, decided) in seen.items()]
        # the smallest share of right decisions first
        missed = sorted(((c[label], c.total(), image, label, c) for image, label, c in tallies
                         if c[label] <= c.total() / 2), key=lambda m: (m[0] / m[1], m[2]))
        for right, total, image, label, tally in missed[:MISSED_ROWS]:
            wrong = [(name, count) for name, count in tally.most_common() if name != label]
            lines.append(f"| {arm} | {image} | {label} | {right} / {total} | "
                         + ", ".join(f"{name} ({count})" for name, count in wrong) + " |")
        if len(missed) > MISSED_ROWS:
            lines.append(f"| {arm} | and {len(missed) - MISSED_ROWS} more (metrics.json, `predictions`) | | | |")
        if not missed:
            lines.append(f"| {arm} | none | | | |")
    return "\n".join(lines) + "\n"


def shows_published(settings: dict) -> bool:
    return Path(str(settings.get("data", ""))).name == PUBLISHED_ON


def published_section(runs: Sequence[dict], settings: dict) -> str:
    model = settings.get("model", "?")
    n = len(runs[0]["metrics"]["classes"])
    lines = ["## Beside the published figures (transistor, 4-way defect-type accuracy, %)", "",
             "| method | accuracy (%) | classifier |", "|---|---|---|"]
    lines += [f"| {name} | {acc:.2f} | ResNet-34, ImageNet-pretrained, trained on generated images |"
              for name, acc in PUBLISHED]
    for arm, arm_runs in by_arm(runs).items():
        strict = summarize([r["metrics"].get("defect_type_accuracy") for r in arm_runs])
        lines.append(f"| defectsynth `{arm}` ({n}-way prediction; defect called good = wrong) | "
                     f"{mean_std(strict, 100, 2)} | {model}, {len(arm_runs)} run(s) |")
        argmax = summarize([r["metrics"].get("defect_type_accuracy_4way_argmax") for r in arm_runs])
        if argmax["n"]:
            lines.append(f"| defectsynth `{arm}` (argmax over the {n - 1} defect types) | {mean_std(argmax, 100, 2)} | "
                         f"{model}, {argmax['n']} run(s) |")
    if settings.get("protocol") == "first" and settings.get("shots") == 3:
        where = ("This run uses the first-3 split, the split of the published tables, so the rows are comparable "
                 "in protocol; the classifier and its training recipe differ.")
    else:
        where = (f"The published figures are comparable only for the first-3 split; this run uses protocol "
                 f"`{settings.get('protocol', '?')}` with {settings.get('shots', '?')} shots, so they are context "
                 "here, not a comparison.")
    lines += ["", where, "", "The published classifier sees defect types only; the argmax row (when present) "
              f"measures the same thing with our {n}-way classifier; the {n}-way row is stricter (a defect called good "
              "counts as wrong)."]
    return "\n".join(lines) + "\n"


def tasks_section(settings: dict) -> str:
    rule = settings.get("rule", "image, calibrated")
    point = ("is the argmax: a defect when a defect class scores above good (no threshold; the rules table "
             "below also scores each rule at the threshold set on held-back good training images)") \
        if settings.get("decision") == "argmax" else ("uses a threshold set on held-back good *training* images (a "
              f"{FALSE_ALARM_TARGET:.0%} false-alarm target there), never on test images")
    return "\n".join([
        "## How the three tasks are measured", "",
        f"- **Classification**: the model's own decision (rule `{rule}`; train/decide.py): "
        "balanced accuracy, macro-F1, defect-type accuracy, detection recall and false alarms on good.",
        "- **Detection**: image AUROC of the defect score (1 - the good score of the rule), good vs defect. The "
        f"operating point (detection recall, false alarms) {point}.",
        "- **Localization** (defect-map models): pixel AUROC, pixel AP and F1-max over every pixel of every "
        "held-out image (good images all background), at the training image size: the stride-4 map upsampled "
        "bilinearly to it, the real masks downsampled to it by area (defect where the mask covers half a pixel).",
        ""]) + "\n"


def rules_section(runs: Sequence[dict]) -> str:
    """Every decision rule, computed from the same trained models (no extra training), mean ± std."""
    rules = list(runs[0].get("rules") or {}) if runs else []
    if not rules:
        return ""
    keys = [("balanced_accuracy", "balanced acc."), ("false_alarm_rate", "false alarms"),
            ("detection_recall", "detection recall"), ("image_auroc", "image AUROC")]
    lines = ["## Decision rules, all from the same trained models (mean ± std)", "",
             "`argmax`: the highest class score; `calibrated`: a defect when the defect score exceeds the "
             "threshold set on held-back good training images, then the highest defect class.", "",
             "| arm | rule | " + " | ".join(title for _k, title in keys) + " |", "|---|---|" + "---|" * len(keys)]
    for arm, arm_runs in by_arm(runs).items():
        for rule in rules:
            cells = [mean_std(summarize([(r.get("rules") or {}).get(rule, {}).get(k) for r in arm_runs]))
                     for k, _title in keys]
            lines.append(f"| {arm} | {rule} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def pixel_section(runs: Sequence[dict], classes: Sequence[str]) -> str:
    """Localization per defect type (its held-out images with the good ones): pooled pixel figures are
    dominated by the types with the largest masks."""
    defects = [c for c in classes if any(c in (r["metrics"].get("pixel_per_class") or {}) for r in runs)]
    if not defects:
        return ""
    lines = ["## Localization per defect type: pixel AUROC / pixel AP (mean over runs)", "",
             "Each type's held-out images with the good ones; the pooled figures of the summary weigh every "
             "pixel alike, so the types with the largest masks dominate them.", "",
             "| arm | " + " | ".join(defects) + " |", "|---|" + "---|" * len(defects)]
    for arm, arm_runs in by_arm(runs).items():
        cells = []
        for c in defects:
            per = [(r["metrics"].get("pixel_per_class") or {}).get(c, {}) for r in arm_runs]
            auroc, ap = summarize([p.get("pixel_auroc") for p in per]), summarize([p.get("pixel_ap") for p in per])
            cells.append("n/a" if not auroc["n"] else f"{auroc['mean']:.3f} / {ap['mean']:.3f}")
        lines.append(f"| {arm} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def imbalanced_section(runs: Sequence[dict], classes: Sequence[str]) -> str:
    lines = ["## imbalanced-learn report (all held-out predictions of each arm, pooled over its runs)", ""]
    for arm, arm_runs in by_arm(runs).items():
        report = pooled_imbalanced_report(summed_confusion(arm_runs), classes)
        lines += [f"**{arm}**", "", "```text", report.rstrip(), "```", ""]
    return "\n".join(lines)


def figures_section(figures: dict[str, Path], out_dir: Path) -> str:
    lines = ["## Figures", ""]
    lines += [f"![{name}]({path.relative_to(out_dir).as_posix()})" for name, path in figures.items()]
    if "synthetic_samples" not in figures:
        lines.append("No synthetic samples to show (no arm trained on synthetic images).")
    return "\n".join(lines) + "\n"


def runs_section(runs: Sequence[dict]) -> str:
    lines = ["## Every run", "", "| arm | split | seed | balanced acc. | macro-F1 | defect-type acc. | train size | "
             "wall s |", "|---|---|---|---|---|---|---|---|"]
    for r in runs:
        m = r["metrics"]
        dta = "n/a" if m.get("defect_type_accuracy") is None else f"{m['defect_type_accuracy']:.3f}"
        lines.append(f"| {r['arm']} | {r['split']} | {r['seed']} | {m['balanced_accuracy']:.3f} | "
                     f"{m['macro_f1']:.3f} | {dta} | {r.get('train_size', '?')} | {r.get('wall_s', '?')} |")
    return "\n".join(lines) + "\n"


def render(runs: Sequence[dict], settings: dict, figures: dict[str, Path], out_dir: Path,
           baseline: str = BASELINE) -> tuple[str, dict]:
    """The text of report.md, and the paired comparisons it states."""
    classes = runs[0]["metrics"]["classes"] if runs else []
    comparison, paired = comparison_section(runs, baseline)
    title = settings.get("run", out_dir.name)
    parts = [f"# defectsynth train-eval: {title}\n",
             f"{len(runs)} classifier(s): arms {', '.join(by_arm(runs)) or '-'} × splits × seeds, each evaluated "
             "on held-out real images only (no generator, rebalancing step or training run saw them). "
             f"The primary figure is the {len(classes)}-way balanced accuracy (mean per-class recall: good and "
             f"{max(0, len(classes) - 1)} defect types).\n",
             settings_section(settings, runs),
             "## Summary (mean ± std over splits × seeds)\n\n" + markdown_table(summary_table(runs, baseline)),
             comparison]
    if runs:
        parts += [tasks_section(settings), rules_section(runs), pixel_section(runs, classes),
                  per_class_section(runs, classes)]
        parts += [published_section(runs, settings)] if shows_published(settings) else []
        parts += [missed_section(runs), imbalanced_section(runs, classes)]
    parts += [figures_section(figures, out_dir), runs_section(runs)]
    return "\n".join(parts), paired


def _plain(value):
    """JSON-ready: NaN becomes null (strict JSON has no NaN), numpy scalars become Python numbers."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", None) == 0:
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def write_report(out_dir: Path, runs: Sequence[dict], settings: dict, sample_grid_paths: Sequence[str],
                 map_examples: MapExamples | None = None) -> Path:
    """Write <out_dir>/report.md, metrics.json (settings, every run's raw numbers, summaries, paired
    comparisons) and figures/*.png; return the path of report.md. Every file is written atomically."""
    out_dir = Path(out_dir)
    runs = list(runs)
    figures = write_figures(out_dir / "figures", runs, sample_grid_paths, map_examples)
    text, paired = render(runs, settings, figures, out_dir)
    summary = {arm: {key: summarize([r["metrics"].get(key) for r in arm_runs]) for key, _title in METRICS}
               for arm, arm_runs in by_arm(runs).items()}
    doc = {"settings": settings, "runs": runs, "summary": summary, "paired_vs_" + BASELINE: paired,
           "figures": {name: path.relative_to(out_dir).as_posix() for name, path in figures.items()}}
    write_text(out_dir / "metrics.json", json.dumps(_plain(doc), indent=2, default=str) + "\n")
    write_text(out_dir / "report.md", text)
    return out_dir / "report.md"
