"""Crops, masks and paste-back shared by the learned inpainting generators (diffusion, gan).

Conventions, in one place:
- Masks are boolean, True (MVTec white) where the defect is, i.e. the region a model fills in.
- A model works on square crops around a mask, resized to `crop` px; pixels are floats in [-1, 1].
- The inpainting input is the channels (noisy or noise image, mask, masked image): `inpaint_input`.
- Pasting back writes only pixels inside the mask, so the rest of the good image is untouched.
"""

from __future__ import annotations

from dataclasses import dataclass

import albumentations as A
import cv2
import numpy as np
import torch

# The crop around a mask is this many times the mask's larger side, and at least MIN_FRAC of the image
# side, so a model always sees some surrounding context.
MARGIN = 1.5
MIN_FRAC = 0.25


@dataclass(frozen=True)
class Box:
    top: int
    left: int
    side: int


def crop_box(mask: np.ndarray, jitter: float = 0.0, rng: np.random.Generator | None = None) -> Box:
    """A square around the mask's bounding box, kept inside the image; `jitter` shifts it by up to that
    fraction of its side (training augmentation)."""
    h, w = mask.shape
    ys, xs = np.nonzero(mask)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    side = int(min(min(h, w), max(MARGIN * max(y1 - y0, x1 - x0), MIN_FRAC * min(h, w))))
    cy, cx = (y0 + y1) / 2, (x0 + x1) / 2
    if jitter and rng is not None:
        cy, cx = cy + rng.uniform(-jitter, jitter) * side, cx + rng.uniform(-jitter, jitter) * side
    top = int(np.clip(round(cy - side / 2), 0, h - side))
    left = int(np.clip(round(cx - side / 2), 0, w - side))
    return Box(top, left, side)


def cut(image: np.ndarray, mask: np.ndarray, box: Box, crop: int) -> tuple[np.ndarray, np.ndarray]:
    """(C x crop x crop float32 in [-1, 1], 1 x crop x crop float32 in {0, 1}) of the box."""
    sl = (slice(box.top, box.top + box.side), slice(box.left, box.left + box.side))
    im = cv2.resize(image[sl], (crop, crop), interpolation=cv2.INTER_AREA)
    # Any crop pixel the mask touches is in the hole, so thin defects (a cut lead) survive downscaling.
    m = cv2.resize(mask[sl].astype(np.float32), (crop, crop), interpolation=cv2.INTER_AREA) > 0
    if im.ndim == 2:
        im = im[:, :, None]
    return im.transpose(2, 0, 1).astype(np.float32) / 127.5 - 1.0, m[None].astype(np.float32)


def paste_back(image: np.ndarray, mask: np.ndarray, box: Box, crop: np.ndarray) -> np.ndarray:
    """`image` with the pixels inside `mask` replaced by the generated `crop` (C x S x S in [-1, 1])."""
    out = image.copy()
    patch = ((crop.transpose(1, 2, 0) + 1.0) * 127.5).clip(0, 255).astype(np.uint8)
    patch = cv2.resize(patch, (box.side, box.side), interpolation=cv2.INTER_CUBIC)
    if out.ndim == 2 and patch.ndim == 3:
        patch = patch[:, :, 0]
    sl = (slice(box.top, box.top + box.side), slice(box.left, box.left + box.side))
    region = out[sl]
    region[mask[sl]] = patch[mask[sl]]
    return out


def inpaint_input(x: torch.Tensor, mask: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
    """The model input: x (noisy image or noise), the mask, and the known image with the hole zeroed."""
    return torch.cat([x, mask, known * (1 - mask)], dim=1)


def random_mask(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """1-3 random ellipses and strokes, each up to a quarter of the image side (self-supervised pretraining)."""
    m = np.zeros((h, w), np.uint8)
    s = min(h, w)
    for _ in range(rng.integers(1, 4)):
        cx, cy = int(rng.uniform(0.15, 0.85) * w), int(rng.uniform(0.15, 0.85) * h)
        if rng.random() < 0.5:
            axes = (int(rng.uniform(0.02, 0.12) * s) + 1, int(rng.uniform(0.02, 0.12) * s) + 1)
            cv2.ellipse(m, (cx, cy), axes, float(rng.uniform(0, 180)), 0, 360, 255, -1)
        else:
            pts = np.cumsum(rng.normal(0, 0.06 * s, size=(int(rng.integers(2, 6)), 2)), axis=0) + [cx, cy]
            # Kept inside the image, else a stroke can miss it and leave an empty mask.
            pts = np.clip(pts, 0, [w - 1, h - 1]).astype(np.int32)
            cv2.polylines(m, [pts], False, 255, int(rng.uniform(0.01, 0.04) * s) + 1)
    return m > 0


# No flips: the parts have a fixed orientation, and a mirrored lead is another defect.
_PLACE = A.Compose([A.Affine(translate_percent=(-0.03, 0.03), rotate=(-8, 8), scale=(0.85, 1.15), p=1.0)])
_DEFECT = A.Compose([
    A.Affine(translate_percent=(-0.02, 0.02), rotate=(-10, 10), scale=(0.9, 1.1), p=0.8),
    A.RandomBrightnessContrast(brightness_limit=0.1, contrast_limit=0.1, p=0.5),
])


def place_mask(mask: np.ndarray, shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A train mask, augmented (shift, rotation, scale) and resized to `shape`, near where it was:
    on aligned parts such as the transistor, defects belong where they were seen."""
    if mask.shape != shape:
        mask = cv2.resize(mask.astype(np.uint8), (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST) > 0
    _PLACE.set_random_seed(int(rng.integers(2**31)))
    placed = _PLACE(image=mask.astype(np.uint8) * 255)["image"] > 127
    return placed if placed.any() else mask


def augment_defect(image: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A real defect image and its mask transformed together (training-time augmentation)."""
    _DEFECT.set_random_seed(int(rng.integers(2**31)))
    out = _DEFECT(image=image, mask=mask.astype(np.uint8))
    return (out["image"], out["mask"] > 0) if out["mask"].any() else (image, mask)


class CropData:
    """Training crops at `crop` px from images already resized (image cache) to one size.

    pretrain: a good image with a random mask or a placed train mask, labelled good.
    adapt: a real train defect (augmented) cropped around its own mask, labelled with its class; a share
    `replay` of the batch stays pretrain crops so the model keeps filling holes with plausible context.
    """

    def __init__(self, goods: list[np.ndarray], defects: dict[str, list[tuple[np.ndarray, np.ndarray]]],
                 classes: list[str], crop: int, replay: float):
        self.goods, self.defects, self.classes, self.crop, self.replay = goods, defects, classes, crop, replay
        self.labels = [c for c in classes if c in defects and defects[c]]
        self.masks = [m for items in defects.values() for _, m in items]

    def pretrain_item(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, int]:
        image = self.goods[rng.integers(len(self.goods))]
        if self.masks and rng.random() < 0.5:
            mask = place_mask(self.masks[rng.integers(len(self.masks))], image.shape[:2], rng)
        else:
            mask = random_mask(*image.shape[:2], rng)
        x, m = cut(image, mask, crop_box(mask, 0.1, rng), self.crop)
        return x, m, self.classes.index("good")

    def adapt_item(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, int]:
        label = self.labels[rng.integers(len(self.labels))]
        items = self.defects[label]
        image, mask = augment_defect(*items[rng.integers(len(items))], rng)
        x, m = cut(image, mask, crop_box(mask, 0.1, rng), self.crop)
        return x, m, self.classes.index(label)

    def batch(self, phase: str, size: int, rng: np.random.Generator) -> tuple[torch.Tensor, ...]:
        items = [self.adapt_item(rng) if phase == "adapt" and rng.random() >= self.replay
                 else self.pretrain_item(rng) for _ in range(size)]
        x, m, y = zip(*items, strict=True)
        return torch.from_numpy(np.stack(x)), torch.from_numpy(np.stack(m)), torch.tensor(y, dtype=torch.long)
