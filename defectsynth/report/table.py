"""The summary table (one row per arm), shared by report.md and the command line."""

from __future__ import annotations

from collections.abc import Sequence

from rich.table import Table

from defectsynth.train.stats import by_arm, compare_arms, summarize

BASELINE = "original"
PRIMARY = "balanced_accuracy"
# (key in a run's metrics, column title), the three tasks: classification (balanced accuracy to false alarms,
# at the model's own decision), detection (image AUROC), localization (pixel metrics; map models only).
# Higher is better for all but the false-alarm rate..
# {classes} and {types} become the run's class count and defect-type count (metric_title).
METRICS = [
    ("balanced_accuracy", "Balanced acc. ({classes}-way)"),
    ("macro_f1", "Macro-F1"),
    ("defect_type_accuracy", "Defect-type acc. ({types}-way)"),
    ("detection_recall", "Detection recall"),
    ("false_alarm_rate", "False alarms (good)"),
    ("image_auroc", "Detection: image AUROC"),
    ("pixel_auroc", "Pixel AUROC"),
    ("pixel_ap", "Pixel AP"),
    ("pixel_f1_max", "Pixel F1-max"),
]


def mean_std(stats: dict, scale: float = 1.0, digits: int = 3) -> str:
    if not stats["n"]:
        return "n/a"
    if stats["n"] == 1:
        return f"{stats['mean'] * scale:.{digits}f} (1 run)"
    return f"{stats['mean'] * scale:.{digits}f} ± {stats['std'] * scale:.{digits}f}"


def interval(diff: dict, digits: int = 3) -> str:
    if diff["n"] < 2:
        return f"{diff['mean']:+.{digits}f} (1 pair: no interval)"
    return f"{diff['mean']:+.{digits}f} [{diff['low']:+.{digits}f}, {diff['high']:+.{digits}f}]"


def metric_title(title: str, runs: Sequence[dict]) -> str:
    """A METRICS title with the class counts of the runs' split filled in ("5-way" on transistor)."""
    n = len(runs[0]["metrics"]["classes"]) if runs else 0
    return title.format(classes=n, types=max(0, n - 1))


def summary_table(runs: Sequence[dict], baseline: str = BASELINE) -> list[dict[str, str]]:
    """One row per arm: number of runs, mean ± std of each headline metric over splits × seeds, and the
    paired difference in balanced accuracy against `baseline` with its bootstrap 95% interval."""
    diffs = compare_arms(runs, PRIMARY, baseline=baseline)
    rows = []
    for arm, arm_runs in by_arm(runs).items():
        row = {"Arm": arm, "Runs": str(len(arm_runs))}
        for key, title in METRICS:
            row[metric_title(title, runs)] = mean_std(summarize([r["metrics"].get(key) for r in arm_runs]))
        if arm == baseline:
            row[f"Δ bal. acc. vs {baseline} [95% CI]"] = "baseline"
        else:
            row[f"Δ bal. acc. vs {baseline} [95% CI]"] = interval(diffs[arm]) if arm in diffs else "no pairs"
        rows.append(row)
    return rows


def rich_table(rows: Sequence[dict[str, str]], title: str = "Held-out real images, mean ± std") -> Table:
    """The summary turned on its side (one column per arm), so that it fits an 80-column terminal."""
    table = Table(title=title)
    table.add_column("")
    for row in rows:
        table.add_column(row["Arm"], justify="right")
    for key in [k for k in (rows[0] if rows else {}) if k != "Arm"]:
        table.add_row(key, *(row[key] for row in rows))
    return table


def markdown_table(rows: Sequence[dict[str, str]]) -> str:
    if not rows:
        return "_(no runs)_\n"
    header = list(rows[0])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row[h] for h in header) + " |" for row in rows]
    return "\n".join(lines) + "\n"
