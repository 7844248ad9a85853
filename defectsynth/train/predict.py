"""`defectsynth predict`: apply a trained classifier to new images, the day after train-eval.

    result = predict(Path("runs/transistor/classifiers/<run>/balanced"), ["new/*.png"], Path("predictions"))

MODEL_DIR is a checkpoint folder (model.safetensors + config.json) or an arm folder of train-eval
(classifiers/<run>/<arm>/), whose first checkpoint (split0-seed0) is used. INPUTs are image files,
folders (their images, not recursive; *_mask.png left out) or glob patterns. Writes
<out>/predictions.csv (path, label, one score column per class, defect_area) and, for defect-map
models, <out>/overlays/<name>.png: the image with the defect probability in red. The decision is the
one train-eval measured: the checkpoint's rule and decision (the argmax, or its threshold set on
held-back good images).
"""

from __future__ import annotations

import csv
import glob
import io
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from rich.progress import Progress

from defectsynth.data.layout import GOOD
from defectsynth.errors import DefectsynthError
from defectsynth.io import IMAGE_SUFFIXES, read_image, write_png, write_text
from defectsynth.train.decide import defect_probability
from defectsynth.train.evaluate import predict_images
from defectsynth.train.loop import load_classifier
from defectsynth.train.reference import Reference

OVERLAY_SIDE = 512  # longest side of an overlay PNG
BATCH = 32


@dataclass
class PredictResult:
    csv: Path
    overlays: list[Path]
    rows: list[dict]
    checkpoint: Path


def find_checkpoint(model_dir: Path) -> Path:
    model_dir = Path(model_dir)
    if (model_dir / "model.safetensors").is_file():
        return model_dir
    found = sorted(p.parent for p in model_dir.glob("*/model.safetensors")) if model_dir.is_dir() else []
    if not found:
        raise DefectsynthError(f"{model_dir}: no trained model here (no model.safetensors in it or its "
                               "subfolders); pass a classifiers/<run>/<arm> folder written by train-eval")
    return found[0]


def find_images(inputs: list[str]) -> list[Path]:
    """Image files named by `inputs` (files, folders or glob patterns), in the order given, each once."""
    paths: list[Path] = []
    for spec in inputs:
        p = Path(spec)
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES
                           and not f.stem.endswith("_mask"))
        elif p.is_file():
            found = [p]
        else:
            found = sorted(Path(f) for f in glob.glob(spec) if Path(f).suffix.lower() in IMAGE_SUFFIXES)
        if not found:
            raise DefectsynthError(f"{spec}: no image found (not an image file, a folder with images or a "
                                   f"glob matching {', '.join(IMAGE_SUFFIXES)} files)")
        paths += [f for f in found if f not in paths]
    return paths


def load_input(path: Path, channels: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(the image as read, channels x size x size uint8 for the model), resized as training resized."""
    image = read_image(path)
    have = 1 if image.ndim == 2 else 3
    if have != channels:
        raise DefectsynthError(f"{path}: the image has {have} channel(s) but the model was trained on "
                               f"{channels}-channel images; convert it ({'grayscale' if channels == 1 else 'RGB'}) "
                               "or use a model trained on images like it")
    small = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)
    return image, (small[None] if small.ndim == 2 else small.transpose(2, 0, 1))


def overlay(image: np.ndarray, probability: np.ndarray) -> np.ndarray:
    """RGB image (longest side OVERLAY_SIDE at most) with the defect probability painted in red."""
    scale = min(1.0, OVERLAY_SIDE / max(image.shape[:2]))
    h, w = round(image.shape[0] * scale), round(image.shape[1] * scale)
    rgb = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)
    rgb = np.repeat(rgb[:, :, None], 3, axis=2) if rgb.ndim == 2 else rgb
    p = cv2.resize(probability.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)[:, :, None]
    red = np.zeros_like(rgb)
    red[..., 0] = 255
    out = rgb * (1 - 0.6 * p) + red * 0.6 * p
    return out.clip(0, 255).astype(np.uint8)


def overlay_name(path: Path, taken: set[str]) -> str:
    name = f"{path.stem}.png"
    k = 1
    while name in taken:
        k += 1
        name = f"{path.stem}-{k}.png"
    taken.add(name)
    return name


def predict(model_dir: Path, inputs: list[str], out_dir: Path, device: str = "auto",
            progress: bool = True) -> PredictResult:
    checkpoint = find_checkpoint(model_dir)
    model, config = load_classifier(checkpoint)
    classes, size, channels = config["classes"], config["size"], config["in_channels"]
    good = classes.index(GOOD)
    reference = Reference.of_model(config)
    paths = find_images(inputs)
    out_dir = Path(out_dir)
    rows, overlays, taken = [], [], set()
    with Progress(disable=not progress, transient=True) as bar:
        task = bar.add_task("predicting", total=len(paths))
        for start in range(0, len(paths), BATCH):
            batch = paths[start:start + BATCH]
            loaded = [load_input(p, channels, size) for p in batch]
            images = np.stack([small for _image, small in loaded])
            if reference is not None:  # an input that is one of its good images is not compared with itself
                differences = [reference.compare(small[0] if channels == 1 else small.transpose(1, 2, 0),
                                                 [str(p.resolve())])
                               for p, (_image, small) in zip(batch, loaded, strict=True)]
                images = np.concatenate([images, np.stack(differences)], 1)
            images = torch.from_numpy(images)
            _logits, maps, scores, labels = predict_images(model, config, images, device)
            probability = None
            if maps is not None:
                probability = F.interpolate(defect_probability(maps, good)[:, None], size=(size, size),
                                            mode="bilinear", align_corners=False)[:, 0].numpy()
            for i, path in enumerate(batch):
                row = {"path": str(path), "label": classes[int(labels[i])],
                       **{f"score_{c}": f"{scores[i, j]:.4f}" for j, c in enumerate(classes)},
                       "defect_area": "" if probability is None else f"{(probability[i] > 0.5).mean():.4f}"}
                rows.append(row)
                if probability is not None:
                    target = out_dir / "overlays" / overlay_name(path, taken)
                    write_png(target, overlay(loaded[i][0], probability[i]))
                    overlays.append(target)
            bar.update(task, advance=len(batch))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text(out_dir / "predictions.csv", buf.getvalue())
    return PredictResult(out_dir / "predictions.csv", overlays, rows, checkpoint)
