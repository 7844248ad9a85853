"""The report's figures: confusion matrices per arm, per-class recall bars, a grid of synthetic samples, and
the predicted defect maps of one model over a few held-out images per class.

Figures are drawn on matplotlib's Agg canvas directly (no pyplot), so making a report never opens a
window, needs no display and leaves matplotlib's global backend alone.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from defectsynth.data.cache import ImageCache
from defectsynth.data.manifest import Row
from defectsynth.errors import DefectsynthError
from defectsynth.io import atomic_path, read_image, read_mask
from defectsynth.train.metrics import summed_confusion
from defectsynth.train.stats import by_arm, summarize

MAX_SAMPLES = 64
SAMPLE_SIDE = 160  # pixels per grid cell: full-size images would make a grid of tens of megabytes


def safe_name(arm: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", arm)


def _save(fig: Figure, path: Path) -> Path:
    FigureCanvasAgg(fig)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    return path


def confusion_figure(path: Path, confusion: np.ndarray, classes: Sequence[str], title: str) -> Path:
    """Row-normalised confusion (colour = share of the true class), each cell annotated with its count."""
    totals = confusion.sum(axis=1, keepdims=True)
    shares = np.divide(confusion, totals, out=np.zeros(confusion.shape), where=totals > 0)
    side = 1.2 + 0.9 * len(classes)
    fig = Figure(figsize=(side + 1.2, side))
    ax = fig.add_subplot()
    image = ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of true class")
    for i in range(len(classes)):
        for j in range(len(classes)):
            ax.text(j, i, f"{shares[i, j]:.2f}\n({confusion[i, j]})", ha="center", va="center", fontsize=8,
                    color="white" if shares[i, j] > 0.6 else "black")
    ax.set_xticks(range(len(classes)), classes, rotation=35, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    return _save(fig, path)


def recall_figure(path: Path, runs: Sequence[dict], classes: Sequence[str]) -> Path:
    """Per-class recall per arm: bar = mean over runs, error bar = std."""
    groups = by_arm(runs)
    width = 0.8 / len(groups)
    fig = Figure(figsize=(2.0 + 1.3 * len(classes), 4.0))
    ax = fig.add_subplot()
    x = np.arange(len(classes))
    for k, (arm, arm_runs) in enumerate(groups.items()):
        stats = [summarize([r["metrics"]["per_class"][c]["recall"] for r in arm_runs]) for c in classes]
        means = [s["mean"] if s["n"] else 0.0 for s in stats]
        stds = [s["std"] if s["n"] else 0.0 for s in stats]
        ax.bar(x + (k - (len(groups) - 1) / 2) * width, means, width, yerr=stds, capsize=3,
               label=f"{arm} (n={len(arm_runs)})")
    ax.set_xticks(x, classes, rotation=20, ha="right")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("recall on held-out real images")
    ax.set_title("Per-class recall (mean ± std over splits × seeds)")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def _thumbnail(path: Path, mask_path: str | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """The image at SAMPLE_SIDE and its mask (`mask_path`, else <stem>_mask.png beside it) at the same size."""
    image = read_image(path)
    scale = SAMPLE_SIDE / max(image.shape[:2])
    size = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
    thumb = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    mask_path = Path(mask_path) if mask_path else path.with_name(f"{path.stem}_mask.png")
    if not mask_path.is_file():
        return thumb, None
    mask = read_mask(mask_path)
    if mask.shape != image.shape[:2]:
        return thumb, None
    return thumb, cv2.resize(mask.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST)


def samples_figure(path: Path, sample_paths: Sequence[str]) -> Path | None:
    """A grid of synthetic images, titled <class>/<method> (their folders), with the defect mask outlined
    in red when a <stem>_mask.png lies beside the image. None when there is nothing readable to show."""
    cells = []
    for p in map(Path, list(sample_paths)[:MAX_SAMPLES]):
        try:
            cells.append((p, *_thumbnail(p)))
        except DefectsynthError:
            continue  # a sample deleted or damaged since training must not cost the whole report
    if not cells:
        return None
    cols = min(8, len(cells))
    rows = -(-len(cells) // cols)
    fig = Figure(figsize=(1.7 * cols, 1.9 * rows))
    for k, (p, thumb, mask) in enumerate(cells):
        ax = fig.add_subplot(rows, cols, k + 1)
        ax.imshow(thumb, cmap="gray" if thumb.ndim == 2 else None, vmin=0, vmax=255)
        if mask is not None and mask.any():
            ax.contour(mask, levels=[0.5], colors="red", linewidths=0.8)
        ax.set_title(f"{p.parent.parent.name}/{p.parent.name}", fontsize=7)
        ax.axis("off")
    fig.suptitle("Synthetic training samples (red: mask outline)", fontsize=10)
    return _save(fig, path)


def maps_figure(path: Path, examples: MapExamples) -> Path | None:
    """Held-out images (rows: classes), each with the model's defect probability in red and the true mask
    outlined in green, titled with the model's decision. None when the model has no map."""
    from defectsynth.train.decide import defect_probability
    from defectsynth.train.evaluate import predict_rows

    preds = predict_rows(examples.checkpoint, list(examples.rows), examples.cache, device="cpu")
    if preds.maps is None or not preds.rows:
        return None
    good = preds.classes.index("good") if "good" in preds.classes else 0
    probability = defect_probability(preds.maps, good).numpy()
    classes = [c for c in preds.classes if any(r.label == c for r in preds.rows)]
    cols = max(sum(r.label == c for r in preds.rows) for c in classes)
    fig = Figure(figsize=(2.0 * cols, 2.2 * len(classes)))
    for i, c in enumerate(classes):
        for j, k in enumerate([k for k, r in enumerate(preds.rows) if r.label == c]):
            thumb, mask = _thumbnail(Path(preds.rows[k].path), preds.rows[k].mask or None)
            ax = fig.add_subplot(len(classes), cols, i * cols + j + 1)
            ax.imshow(thumb, cmap="gray" if thumb.ndim == 2 else None, vmin=0, vmax=255)
            heat = cv2.resize(probability[k], thumb.shape[1::-1], interpolation=cv2.INTER_LINEAR)
            ax.imshow(np.dstack([np.ones_like(heat), np.zeros_like(heat), np.zeros_like(heat), 0.6 * heat]))
            if mask is not None and mask.any():
                ax.contour(mask, levels=[0.5], colors="lime", linewidths=0.8)
            ax.set_title(f"{c} → {preds.y_pred[k]}", fontsize=6,
                         color="black" if preds.y_pred[k] == c else "red")
            ax.axis("off")
    fig.suptitle(f"{examples.title}: defect probability (red), true mask (green), true → predicted", fontsize=9)
    return _save(fig, path)


@dataclass
class MapExamples:
    checkpoint: Path
    rows: Sequence[Row]
    cache: ImageCache
    title: str


def write_figures(fig_dir: Path, runs: Sequence[dict], sample_paths: Sequence[str],
                  map_examples: MapExamples | None = None) -> dict[str, Path]:
    """Every figure of the report, by name: confusion_<arm>, recall_per_class, synthetic_samples, defect_maps."""
    written: dict[str, Path] = {}
    if runs:
        classes = runs[0]["metrics"]["classes"]
        for arm, arm_runs in by_arm(runs).items():
            name = f"confusion_{safe_name(arm)}"
            written[name] = confusion_figure(fig_dir / f"{name}.png", summed_confusion(arm_runs), classes,
                                             f"{arm}: summed over {len(arm_runs)} run(s)")
        written["recall_per_class"] = recall_figure(fig_dir / "recall_per_class.png", runs, classes)
    samples = samples_figure(fig_dir / "synthetic_samples.png", sample_paths)
    if samples is not None:
        written["synthetic_samples"] = samples
    if map_examples is not None:
        maps = maps_figure(fig_dir / "defect_maps.png", map_examples)
        if maps is not None:
            written["defect_maps"] = maps
    return written
