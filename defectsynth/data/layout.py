"""The MVTec AD folder layout of one product category.

    <root>/train/good/*.png
    <root>/test/good/*.png
    <root>/test/<defect>/*.png
    <root>/ground_truth/<defect>/<stem>_mask.png
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from defectsynth.errors import DefectsynthError
from defectsynth.io import IMAGE_SUFFIXES

GOOD = "good"


@dataclass(frozen=True)
class RealImage:
    path: Path  # absolute
    label: str  # "good" or a defect type
    folder: str  # the MVTec split folder it came from: "train" or "test"
    mask: Path | None  # absolute; None for good images


def list_images(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def mask_path(root: Path, label: str, image: Path) -> Path:
    return root / "ground_truth" / label / f"{image.stem}_mask.png"


def missing_data_message(root: Path) -> str:
    if root.exists():
        holder = next((p for p in root.parents if (p / "train").is_dir() and (p / "test").is_dir()), None)
        return (f"data folder {root} is a file, not a folder; pass the category folder that holds train/ and "
                f"test/{f', here {holder}' if holder else ''}")
    return (
        f"data folder {root} not found; download MVTec AD with "
        f"'defectsynth data download --category {root.name} --root {root.parent}', "
        f"make the demo stand-in with 'defectsynth data demo --root {root}', or pass --data PATH"
    )


def defect_types(root: Path) -> list[str]:
    test = root / "test"
    return sorted(p.name for p in test.iterdir() if p.is_dir() and p.name != GOOD) if test.is_dir() else []


def read_category(root: Path) -> list[RealImage]:
    """Every image of the category, in a fixed order: train/good, test/good, then each defect type."""
    root = Path(root).resolve()
    if not root.is_dir():
        raise DefectsynthError(missing_data_message(root))
    images = [RealImage(p, GOOD, "train", None) for p in list_images(root / "train" / GOOD)]
    images += [RealImage(p, GOOD, "test", None) for p in list_images(root / "test" / GOOD)]
    for label in defect_types(root):
        images += [RealImage(p, label, "test", mask_path(root, label, p)) for p in list_images(root / "test" / label)]
    if not images:
        raise DefectsynthError(f"{root}: no images in train/good or test/*; is this an MVTec AD category folder?")
    return images
