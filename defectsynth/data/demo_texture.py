"""A procedural stand-in for an MVTec AD texture category (like `carpet`): no part, defects anywhere.

A woven RGB fabric (two crossing sets of threads, each image with its own phase, tint and light) fills
the picture; defects can be anywhere on it:

- hole: a dark frayed hole through the weave;
- stain: a soft coloured blot soaked into the threads;
- thread: a stray thread lying across the surface.
"""

from __future__ import annotations

import cv2
import numpy as np

DEFECTS = ("hole", "stain", "thread")


def _noise(size: int, cells: int, rng: np.random.Generator) -> np.ndarray:
    small = rng.standard_normal((cells + 1, cells + 1)).astype(np.float32)
    return cv2.resize(small, (size, size), interpolation=cv2.INTER_CUBIC)


def _blob(size: int, rng: np.random.Generator, radius: float) -> np.ndarray:
    """A ragged round blob (float32 0..1) somewhere in the picture."""
    c = rng.uniform(0.15, 0.85, 2)
    ang = np.sort(rng.uniform(0, 2 * np.pi, 13))
    rad = radius * rng.uniform(0.6, 1.2, 13)
    poly = (c + np.stack([np.cos(ang) * rad, np.sin(ang) * rad], 1)) * size
    out = np.zeros((size, size), np.float32)
    cv2.fillPoly(out, [np.round(poly * 16).astype(np.int32)], 1.0, cv2.LINE_AA, 4)
    return out


def render(size: int, label: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray | None]:
    """One RGB image (size x size x 3 uint8) of class `label`, and its uint8 0/255 mask (None for good)."""
    period = 0.03 * size
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    px, py = rng.uniform(0, 2 * np.pi, 2)
    warp = 0.6 * _noise(size, 8, rng)
    weft = 0.5 + 0.5 * np.sin(2 * np.pi * xx / period + px + warp)
    warp_threads = 0.5 + 0.5 * np.sin(2 * np.pi * yy / period + py + warp)
    checker = (np.sin(np.pi * xx / period + px) * np.sin(np.pi * yy / period + py)) > 0
    weave = np.where(checker, weft, warp_threads) * (0.85 + 0.15 * _noise(size, 60, rng))
    base = np.array([150, 120, 95], np.float32) * rng.uniform(0.95, 1.05, 3).astype(np.float32)
    image = base * (0.7 + 0.45 * weave)[..., None]
    mask = None
    if label == "hole":
        hole = _blob(size, rng, rng.uniform(0.04, 0.08))
        frayed = cv2.dilate(hole, np.ones((3, 3), np.uint8), iterations=max(1, size // 128))
        image = image * (1 - 0.5 * (frayed - hole)[..., None])
        image = image * (1 - hole[..., None]) + np.float32(25) * hole[..., None]
        mask = frayed
    elif label == "stain":
        stain = cv2.GaussianBlur(_blob(size, rng, rng.uniform(0.06, 0.12)), (0, 0), size / 200)
        tint = np.array([0.55, 0.75, 0.45], np.float32) * rng.uniform(0.9, 1.1, 3).astype(np.float32)
        image = image * (1 - stain[..., None] * (1 - tint))
        mask = (stain > 0.3).astype(np.float32)
    elif label == "thread":
        start = rng.uniform(0.2, 0.8, 2)
        pts = [start]
        heading = rng.uniform(0, 2 * np.pi)
        for _ in range(6):
            heading += rng.normal(0, 0.5)
            pts.append(pts[-1] + 0.05 * np.array([np.cos(heading), np.sin(heading)]))
        line = np.zeros((size, size), np.float32)
        poly = np.round(np.clip(np.array(pts), 0.02, 0.98) * size * 16).astype(np.int32).reshape(-1, 1, 2)
        cv2.polylines(line, [poly], False, 1.0, max(1, round(0.012 * size)), cv2.LINE_AA, 4)
        image = image * (1 - line[..., None]) + np.float32(225) * line[..., None]
        mask = cv2.dilate(line, np.ones((3, 3), np.uint8), iterations=max(1, size // 256))
    lin = np.linspace(-0.5, 0.5, size, dtype=np.float32)
    gx, gy = rng.normal(0, 0.08, 2)
    image = image * rng.uniform(0.92, 1.08) * (1 + gx * lin[None, :] + gy * lin[:, None])[..., None]
    image = image + 2 * rng.standard_normal((size, size, 3), dtype=np.float32)
    image = np.clip(image + 0.5, 0, 255).astype(np.uint8)
    if mask is not None:
        mask = np.where(mask > 0.5, 255, 0).astype(np.uint8)
    return image, mask
