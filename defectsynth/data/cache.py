"""Decode and resize each (image, size) once; later reads are a memory-mapped .npy load.

The key covers the file's path, size and modification time, so an edited source image is
decoded again. Training reads from here and never decodes PNGs in its loop.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import cv2
import numpy as np
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from defectsynth.io import atomic_path, read_image, read_mask


class ImageCache:
    def __init__(self, root: Path):
        self.root = Path(root)

    def _key(self, path: Path, size: int, kind: str) -> Path:
        st = os.stat(path)
        ident = f"{Path(path).resolve()}|{st.st_size}|{st.st_mtime_ns}|{size}|{kind}"
        digest = hashlib.sha1(ident.encode()).hexdigest()
        return self.root / str(size) / digest[:2] / f"{digest}.npy"

    def _get(self, path: Path, size: int, kind: str) -> np.ndarray:
        return self.derived(path, size, kind, lambda: self._decode(path, size, kind))

    @staticmethod
    def _decode(path: Path, size: int, kind: str) -> np.ndarray:
        if kind == "mask":
            arr = read_mask(path).astype(np.uint8) * 255
            return cv2.resize(arr, (size, size), interpolation=cv2.INTER_NEAREST)
        if kind == "coverage":
            # area resampling: a 2 px lead at 512 px keeps a partial value at 128 px instead of vanishing
            arr = cv2.resize(read_mask(path).astype(np.float32), (size, size), interpolation=cv2.INTER_AREA)
            return np.round(arr * 255).astype(np.uint8)
        return cv2.resize(read_image(path), (size, size), interpolation=cv2.INTER_AREA)

    def has(self, path: Path | str, size: int, kind: str) -> bool:
        """Whether derived(path, size, kind, ...) would be read from disk rather than computed."""
        return self._key(Path(path), size, kind).exists()

    def derived(self, path: Path | str, size: int, kind: str, compute) -> np.ndarray:
        """An array computed from the image at `path` by `compute()`, cached under `kind` (which must
        name everything else the result depends on)."""
        key = self._key(Path(path), size, kind)
        if key.exists():
            return np.load(key)
        arr = compute()
        with atomic_path(key) as tmp:
            with open(tmp, "wb") as f:
                np.save(f, arr)
        return arr

    def image(self, path: Path | str, size: int) -> np.ndarray:
        """H x W (grayscale) or H x W x 3 (RGB) uint8 at size x size."""
        return self._get(Path(path), size, "image")

    def mask(self, path: Path | str, size: int) -> np.ndarray:
        """size x size uint8 mask, 255 where the defect is."""
        return self._get(Path(path), size, "mask")

    def coverage(self, path: Path | str, size: int) -> np.ndarray:
        """size x size uint8: the share of each pixel the defect mask covers, 0-255 (area resampling)."""
        return self._get(Path(path), size, "coverage")

    def warm(self, images: list[str], masks: list[str], size: int, progress: bool = True) -> None:
        """Decode every image and mask now (cache hits later), so that an unreadable file stops a run
        before it trains rather than after."""
        todo = [(p, self.image) for p in dict.fromkeys(images)] + [(p, self.mask) for p in dict.fromkeys(masks)]
        columns = (TextColumn("checking images"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
        with Progress(*columns, disable=not progress, transient=True) as bar:
            for path, read in bar.track(todo):
                read(path, size)

    def stack(self, paths: list[str], size: int, channels: int = 3) -> np.ndarray:
        """N x channels x size x size uint8 array of the images, for training."""
        out = np.empty((len(paths), channels, size, size), dtype=np.uint8)
        for i, p in enumerate(paths):
            im = self.image(p, size)
            if im.ndim == 2:
                im = im[:, :, None]
            if im.shape[2] != channels:
                im = np.repeat(im[:, :, :1], channels, axis=2) if channels == 3 else im.mean(2, keepdims=True)
            out[i] = im.transpose(2, 0, 1)
        return out
