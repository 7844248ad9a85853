"""Reading and writing images and text files safely.

Every write goes to a temporary name in the same folder and is renamed into place, so an
interrupted command never leaves a half-written file behind.
"""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from defectsynth.errors import DefectsynthError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
_UMASK = os.umask(0)
os.umask(_UMASK)


@contextmanager
def atomic_path(path: Path):
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + path.suffix, dir=path.parent)
    except OSError as e:
        raise DefectsynthError(f"cannot write to {path.parent}: {e.strerror}; choose a writable --work folder") from e
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; give them the mode a plain open() would
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_bytes(path: Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: Path, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def read_image(path: Path) -> np.ndarray:
    """Decode an image to uint8: H x W for grayscale, H x W x 3 (RGB) otherwise."""
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode in ("L", "1", "I;16", "I", "F"):
                im = im.convert("L")
            elif im.mode != "RGB":
                im = im.convert("RGB")
            return np.asarray(im, dtype=np.uint8).copy()
    except FileNotFoundError as e:
        raise DefectsynthError(f"{path}: file not found") from e
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise DefectsynthError(f"{path}: unreadable or truncated image ({e}); replace or remove the file") from e


def read_mask(path: Path) -> np.ndarray:
    """Decode a mask as a boolean H x W array; MVTec masks are white (non-zero) where the defect is."""
    mask = read_image(path)
    if mask.ndim == 3:
        mask = mask.max(axis=2)
    return mask > 127


def encode_png(image: np.ndarray) -> bytes:
    """PNG bytes of an H x W or H x W x 3 (RGB) uint8 array."""
    if image.dtype == bool:
        image = image.astype(np.uint8) * 255
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".png", image, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:
        raise DefectsynthError("PNG encoding failed")
    return buf.tobytes()


def write_png(path: Path, image: np.ndarray) -> None:
    write_bytes(path, encode_png(image))
