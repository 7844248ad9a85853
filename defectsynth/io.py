"""Reading and writing images and text files safely.

Every write goes to a temporary name in the same folder and is renamed into place, so an
interrupted command never leaves a half-written file behind.
"""

from __future__ import annotations

import os
import re
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
_TEMP = re.compile(r"\..+\.[a-z0-9_]{8}\.tmp(\.[A-Za-z0-9]+)?")  # see atomic_path()


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
    return decode_image(path)[0]


def decode_image(path: Path) -> tuple[np.ndarray, int]:
    """The image as read_image() returns it, and the bit depth per channel of the file (1, 8 or 16).

    16-bit images (common from industrial cameras) are scaled to 8 bits, not clipped: Pillow's own
    conversion of a 16-bit grayscale image to 8 bits saturates everything above 255 to white."""
    try:
        with Image.open(path) as im:
            bits = _bit_depth(im)  # from the decoder's raw mode, which load() discards
            im.load()
            if im.mode.startswith("I"):  # I;16, I;16B, ... or I (32-bit integers)
                return _scale_16(np.asarray(im), path), 16
            if im.mode == "F":
                raise DefectsynthError(f"{path}: 32-bit floating-point image; export it as an 8- or 16-bit "
                                       "PNG")
            im = im.convert("L") if im.mode in ("L", "1") else im if im.mode == "RGB" else im.convert("RGB")
            return np.asarray(im, dtype=np.uint8).copy(), bits
    except FileNotFoundError as e:
        raise DefectsynthError(f"{path}: file not found") from e
    except IsADirectoryError as e:
        raise DefectsynthError(f"{path} is a folder, not an image; move it away") from e
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise DefectsynthError(f"{path}: unreadable or truncated image ({e}); replace or remove the file") from e


def _bit_depth(im: Image.Image) -> int:
    if im.mode == "1":
        return 1
    if im.mode.startswith("I;16"):
        return 16
    args = im.tile[0].args if im.tile else None
    raw = args[0] if isinstance(args, tuple) and args else args
    return 16 if isinstance(raw, str) and ";16" in raw else 8  # e.g. "RGB;16B": 16-bit colour read as 8-bit


def _scale_16(pixels: np.ndarray, path: Path) -> np.ndarray:
    """0..65535 -> 0..255, rounded (65535 / 257 = 255, so an 8-bit image stored as 16 bits comes back exact)."""
    if pixels.size and (pixels.min() < 0 or pixels.max() > 65535):
        raise DefectsynthError(f"{path}: integer pixel values outside 0..65535; export it as an 8- or 16-bit PNG")
    return ((pixels.astype(np.uint32) + 128) // 257).astype(np.uint8)


def read_mask(path: Path) -> np.ndarray:
    """Decode a mask as a boolean H x W array; MVTec masks are white (non-zero) where the defect is."""
    mask = read_image(path)
    if mask.ndim == 3:
        mask = mask.max(axis=2)
    return mask > 127


def mask_problem(mask: np.ndarray, image_shape: tuple[int, ...]) -> tuple[str, str] | None:
    """(what is wrong, the fix) when a defect mask cannot be used with its image, else None.

    The one mask rule, shared by `data check` and every generator, so both say the same thing."""
    height, width = image_shape[:2]
    if mask.shape != (height, width):
        return (f"mask is {mask.shape[1]}x{mask.shape[0]} but its image is {width}x{height}",
                "resize the mask to its image (nearest neighbour) or re-export it")
    if not mask.any():
        return ("empty mask (no white defect pixels)",
                "draw the defect in white, or move the image to test/good and delete the mask")
    return None


def read_mask_for(mask_path: Path, image_shape: tuple[int, ...]) -> np.ndarray:
    """read_mask(), refusing (with `data check`'s words) a mask that does not fit its image."""
    mask = read_mask(mask_path)
    problem = mask_problem(mask, image_shape)
    if problem is not None:
        raise DefectsynthError(f"{mask_path}: {problem[0]} — {problem[1]} (see 'defectsynth data check')")
    return mask


def remove_stale_temps(folder: Path) -> None:
    """Delete the temporary files atomic_path() leaves behind when a command is killed (kill -9, power
    loss); each is named .<final name>.<8 random characters>.tmp<suffix> and is never a finished file."""
    if not Path(folder).is_dir():
        return
    for path in Path(folder).glob(".*.tmp*"):
        if _TEMP.fullmatch(path.name) and path.is_file():
            path.unlink(missing_ok=True)


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
