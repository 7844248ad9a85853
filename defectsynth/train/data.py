"""Training data: rows become one uint8 tensor (decoded once, through the image cache), a validation
fold carved from the real training images, and augmentation that runs batched on the device."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from defectsynth.data.cache import ImageCache
from defectsynth.data.layout import GOOD
from defectsynth.data.manifest import Row
from defectsynth.train.reference import MEAN as REFERENCE_MEAN
from defectsynth.train.reference import STD as REFERENCE_STD
from defectsynth.train.reference import Reference

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def image_channels(rows: list[Row], cache: ImageCache, size: int) -> int:
    """1 when every image of the first rows is grayscale, else 3."""
    return 1 if all(cache.image(r.path, size).ndim == 2 for r in rows[:8]) else 3


NO_MASK = 255  # coverage value of a defect image without a mask: its pixels are left out of the map loss


class ImageSet(Dataset):
    """Rows as an N x C x S x S uint8 tensor in memory and their class indices; items are (image, label).

    With a `reference` (train/reference.py) each image gets reference.CHANNELS more channels, last: how
    it differs from the closest good training images.

    With `masks=True` it also holds N x 1 x S x S uint8 mask coverage (0-254 share of the pixel the
    defect covers; good images all 0; a defect image with no mask all NO_MASK) and items are
    (image, label, mask). Masks stay at image resolution so that augmentation moves them with the
    image; the loss pools them to the map's cells."""

    def __init__(self, rows: list[Row], classes: list[str], cache: ImageCache, size: int, channels: int,
                 masks: bool = False, reference: Reference | None = None):
        self.rows = rows
        images = cache.stack([r.path for r in rows], size, channels)
        if reference is not None:
            images = np.concatenate([images, reference.stack(rows)], axis=1)
        self.images = torch.from_numpy(images)
        self.labels = torch.tensor([classes.index(r.label) for r in rows], dtype=torch.long)
        self.masks = torch.from_numpy(np.stack([row_mask(r, cache, size) for r in rows])[:, None]) \
            if masks and rows else None

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, ...]:
        if self.masks is None:
            return self.images[i], self.labels[i]
        return self.images[i], self.labels[i], self.masks[i]


def row_mask(row: Row, cache: ImageCache, size: int) -> np.ndarray:
    if row.label == GOOD:
        return np.zeros((size, size), np.uint8)
    if not row.mask:
        return np.full((size, size), NO_MASK, np.uint8)
    return np.minimum(cache.coverage(row.mask, size), NO_MASK - 1)


def cell_targets(masks: torch.Tensor, labels: torch.Tensor, cells: tuple[int, int], good: int = 0,
                 cover: float = 0.25) -> torch.Tensor:
    """N x h x w class index per map cell: the image's label where the (augmented) mask covers at least
    `cover` of the cell, else `good` (background); -100 (ignored) for defect images without a mask."""
    missing = (masks == NO_MASK).flatten(1).any(1)  # the affine pads with 0, so test for any
    share = F.adaptive_avg_pool2d(masks.float() / 254, cells)[:, 0]
    target = torch.where(share >= cover, labels.view(-1, 1, 1), torch.full_like(labels.view(-1, 1, 1), good))
    target[missing] = -100
    return target


def to_unit(images: torch.Tensor) -> torch.Tensor:
    """uint8 N x C x H x W -> float in [0, 1], the range Augment works in."""
    return images.float().div_(255)


def normalize(images: torch.Tensor, reference_channels: int = 0) -> torch.Tensor:
    """uint8 images, or floats in [0, 1], standardized with the ImageNet statistics (grayscale: their mean);
    the last `reference_channels` are difference channels (train/reference.py), with their own statistics."""
    x = to_unit(images) if images.dtype == torch.uint8 else images
    mean, std = torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)
    if x.shape[1] - reference_channels == 1:
        mean, std = mean.mean(0, keepdim=True), std.mean(0, keepdim=True)
    if reference_channels:
        mean = torch.cat([mean, torch.tensor(REFERENCE_MEAN[:reference_channels])])
        std = torch.cat([std, torch.tensor(REFERENCE_STD[:reference_channels])])
    return (x - mean.to(x.device).view(1, -1, 1, 1)) / std.to(x.device).view(1, -1, 1, 1)


class Augment:
    """Per-image random affine (small rotation, shift, scale) and brightness/contrast jitter on a whole
    batch at once with affine_grid/grid_sample, so it runs on the GPU when training does. Unlike
    transforms.v2 on a batch tensor, every image gets its own parameters. Flips are off by default:
    a mirrored part with a marking or a notch on one side is a part that never occurs; train-eval turns
    them on where the part is measured mirror-symmetric (synth/partpose.py: training_augmentation)."""

    def __init__(self, degrees: float = 8.0, translate: float = 0.06, scale: float = 0.08,
                 brightness: float = 0.15, contrast: float = 0.15, hflip: bool = False, vflip: bool = False):
        self.degrees, self.translate, self.scale = degrees, translate, scale
        self.brightness, self.contrast, self.hflip, self.vflip = brightness, contrast, hflip, vflip

    def __call__(self, x: torch.Tensor, generator: torch.Generator, masks: torch.Tensor | None = None,
                 jitter_channels: int | None = None):
        """x: float N x C x H x W in [0, 1]; the random numbers come from `generator` (CPU) for determinism.
        Brightness and contrast change only the first `jitter_channels` (default all): a difference
        channel moves with its image but is not a picture to relight.

        With `masks` (N x 1 x H' x W' uint8, any resolution) returns (x, masks): each mask goes through
        its image's affine (nearest, so NO_MASK stays NO_MASK; outside the image is 0, background)."""
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
        c = x.shape[1] if jitter_channels is None else jitter_channels
        picture = x[:, :c]
        mean = picture.mean(dim=(1, 2, 3), keepdim=True)
        picture = (picture - mean) * contrast.view(-1, 1, 1, 1) + mean
        x = torch.cat([(picture * bright.view(-1, 1, 1, 1)).clamp_(0, 1), x[:, c:]], 1)
        if masks is None:
            return x
        grid = F.affine_grid(theta, list(masks.shape), align_corners=False)
        moved = F.grid_sample(masks.to(x.device, x.dtype), grid, mode="nearest", padding_mode="zeros",
                              align_corners=False)
        return x, moved.round().to(torch.uint8)


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
