"""Training data: rows become one uint8 tensor (decoded once, through the image cache), a validation
fold carved from the real training images, and augmentation that runs batched on the device."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from defectsynth.data.cache import ImageCache
from defectsynth.data.manifest import Row

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def image_channels(rows: list[Row], cache: ImageCache, size: int) -> int:
    """1 when every image of the first rows is grayscale, else 3."""
    return 1 if all(cache.image(r.path, size).ndim == 2 for r in rows[:8]) else 3


class ImageSet(Dataset):
    """Rows as an N x C x S x S uint8 tensor in memory and their class indices; items are (image, label)."""

    def __init__(self, rows: list[Row], classes: list[str], cache: ImageCache, size: int, channels: int):
        self.rows = rows
        self.images = torch.from_numpy(cache.stack([r.path for r in rows], size, channels))
        self.labels = torch.tensor([classes.index(r.label) for r in rows], dtype=torch.long)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images[i], self.labels[i]


def to_unit(images: torch.Tensor) -> torch.Tensor:
    """uint8 N x C x H x W -> float in [0, 1], the range Augment works in."""
    return images.float().div_(255)


def normalize(images: torch.Tensor) -> torch.Tensor:
    """uint8 images, or floats in [0, 1], standardized with the ImageNet statistics (grayscale: their mean)."""
    x = to_unit(images) if images.dtype == torch.uint8 else images
    mean, std = torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)
    if x.shape[1] == 1:
        mean, std = mean.mean(0, keepdim=True), std.mean(0, keepdim=True)
    return (x - mean.to(x.device).view(1, -1, 1, 1)) / std.to(x.device).view(1, -1, 1, 1)


class Augment:
    """Per-image random affine (small rotation, shift, scale) and brightness/contrast jitter on a whole
    batch at once with affine_grid/grid_sample, so it runs on the GPU when training does. Unlike
    transforms.v2 on a batch tensor, every image gets its own parameters. Flips are off by default:
    on parts with a fixed orientation (transistor) a mirrored good part can look like a defect."""

    def __init__(self, degrees: float = 8.0, translate: float = 0.06, scale: float = 0.08,
                 brightness: float = 0.15, contrast: float = 0.15, hflip: bool = False, vflip: bool = False):
        self.degrees, self.translate, self.scale = degrees, translate, scale
        self.brightness, self.contrast, self.hflip, self.vflip = brightness, contrast, hflip, vflip

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """x: float N x C x H x W in [0, 1]; the random numbers come from `generator` (CPU) for determinism."""
        n = x.shape[0]

        def uniform(lo: float, hi: float) -> torch.Tensor:
            return lo + (hi - lo) * torch.rand(n, generator=generator)

        angle = uniform(-self.degrees, self.degrees) * math.pi / 180
        s = 1 + uniform(-self.scale, self.scale)
        sx = s * torch.where(torch.rand(n, generator=generator) < 0.5, -1.0, 1.0) if self.hflip else s
        sy = s * torch.where(torch.rand(n, generator=generator) < 0.5, -1.0, 1.0) if self.vflip else s
        tx, ty = uniform(-self.translate, self.translate) * 2, uniform(-self.translate, self.translate) * 2
        theta = torch.stack([torch.stack([sx * torch.cos(angle), -sy * torch.sin(angle), tx], 1),
                             torch.stack([sx * torch.sin(angle), sy * torch.cos(angle), ty], 1)], 1)
        bright = 1 + uniform(-self.brightness, self.brightness)
        contrast = 1 + uniform(-self.contrast, self.contrast)
        theta, bright, contrast = (t.to(x.device, x.dtype) for t in (theta, bright, contrast))
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        x = (x - mean) * contrast.view(-1, 1, 1, 1) + mean
        return (x * bright.view(-1, 1, 1, 1)).clamp_(0, 1)


def validation_fold(real_train: list[Row], seed: int, fraction: float = 0.15) -> list[Row]:
    """A stratified validation fold of the real training images, for model selection (never test rows).

    Each class gives round(fraction * n) of its real training images, at least one when it has two or
    more, so every defect type with a spare real image is represented; a class with a single real
    training image keeps it for training and is absent from validation."""
    rng = np.random.default_rng([seed, 7919])
    fold = []
    for label in sorted({r.label for r in real_train}):
        rows = sorted((r for r in real_train if r.label == label), key=lambda r: r.path)
        if len(rows) < 2:
            continue
        n = min(len(rows) - 1, max(1, round(fraction * len(rows))))
        fold += [rows[i] for i in sorted(rng.choice(len(rows), size=n, replace=False).tolist())]
    return fold


def without_fold(rows: list[Row], fold: list[Row]) -> list[Row]:
    """Training rows minus the validation images and every synthetic image made from one of them."""
    held = {r.path for r in fold}
    return [r for r in rows if r.path not in held and not held.intersection(r.parent_paths)]
