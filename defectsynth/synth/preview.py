"""The contact sheet <work>/synthetic/<class>/<method>/preview.png: the real train defects (left,
outlined in green; what the generator cut from them, when that is more than the mask, in blue) beside a
grid of synthetic ones (outlined in red), to judge them by eye."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from defectsynth.data.manifest import Row
from defectsynth.io import read_image, read_mask, write_png

PREVIEW = "preview.png"
TILE = 224
COLUMNS = 6
ROWS = 4
GAP = 6


CUT_COLOR = (0, 120, 255)


def _outline(image: np.ndarray, mask: np.ndarray, color: tuple[int, int, int]) -> None:
    mask = cv2.resize(mask.astype(np.uint8), image.shape[1::-1], interpolation=cv2.INTER_NEAREST)
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(image, contours, -1, color, 1)


def _tile(row: Row, color: tuple[int, int, int], cut: np.ndarray | None = None) -> np.ndarray:
    image = read_image(Path(row.path))
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    h, w = image.shape[:2]
    s = TILE / max(h, w)
    small = cv2.resize(image, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
    if cut is not None:
        _outline(small, cut, CUT_COLOR)
    if row.mask:
        _outline(small, read_mask(Path(row.mask)), color)
    tile = np.full((TILE, TILE, 3), 255, np.uint8)
    tile[:small.shape[0], :small.shape[1]] = small
    return tile


def write_preview(path: Path, real: list[Row], synthetic: list[Row],
                  cut: dict[str, np.ndarray] | None = None) -> None:
    """`cut`: what the generator takes from each real defect (path -> mask), outlined in blue."""
    cut = cut or {}
    real = real[:ROWS]
    synthetic = synthetic[:ROWS * COLUMNS]
    step = TILE + GAP
    rows = max(len(real), -(-len(synthetic) // COLUMNS), 1)
    sheet = np.full((rows * step + GAP, (1 + COLUMNS) * step + 3 * GAP, 3), 255, np.uint8)
    for i, row in enumerate(real):
        sheet[GAP + i * step:GAP + i * step + TILE, GAP:GAP + TILE] = _tile(row, (0, 200, 0), cut.get(row.path))
    left = step + 3 * GAP  # a wider gap separates the real column from the synthetic grid
    for i, row in enumerate(synthetic):
        y, x = GAP + (i // COLUMNS) * step, left + (i % COLUMNS) * step
        sheet[y:y + TILE, x:x + TILE] = _tile(row, (230, 0, 0))
    write_png(path, sheet)
