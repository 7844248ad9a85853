"""The split protocol: which real defects feed generation and training, which are held out.

For each defect type, `shots` real defects go to train (the first ones by file name, the
published protocol, or a seeded random choice); the rest are held out for evaluation.
MVTec train/good is for training and test/good is held out.

A split.json is checked against its protocol when it is read, so a hand edit cannot pass for the
published protocol; a hand-made split says `"protocol": "custom"` and is reported as such.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from defectsynth.data.layout import GOOD, RealImage, defect_types, read_category
from defectsynth.data.manifest import Row
from defectsynth.errors import DefectsynthError
from defectsynth.io import write_text

PROTOCOLS = ("first", "random")
CUSTOM = "custom"  # a hand-made split.json: used as it is, and reports say so


@dataclass(frozen=True)
class Split:
    data_root: Path
    protocol: str
    shots: int
    seed: int
    classes: list[str]  # "good" first, then defect types in name order
    rows: list[Row]  # every real image with its split

    @property
    def defect_classes(self) -> list[str]:
        return [c for c in self.classes if c != GOOD]

    def real_rows(self, split: str) -> list[Row]:
        return [r for r in self.rows if r.split == split]

    def train_defects(self, label: str) -> list[Row]:
        return [r for r in self.rows if r.split == "train" and r.label == label]

    def heldout_paths(self) -> frozenset[str]:
        return frozenset(r.path for r in self.rows if r.split == "test")

    def identity(self) -> dict:
        """What makes two splits the same: trained state is re-used only for an identical split."""
        return {"data_root": str(self.data_root), "protocol": self.protocol, "shots": self.shots,
                "seed": self.seed, "train": sorted(r.path for r in self.rows if r.split == "train")}


def _row(image: RealImage, split: str) -> Row:
    return Row(path=str(image.path), label=image.label, split=split, source="real", method="real",
               mask=str(image.mask) if image.mask else "")


def make_split(data_root: Path, shots: int = 3, protocol: str = "first", seed: int = 0) -> Split:
    if protocol not in PROTOCOLS:
        raise DefectsynthError(f"--split {protocol!r} is unknown; use one of: {', '.join(PROTOCOLS)}")
    if shots < 1:
        raise DefectsynthError(f"--shots {shots} is too small; use 1 or more")
    data_root = Path(data_root).resolve()
    images = read_category(data_root)
    labels = defect_types(data_root)
    rows = [_row(im, "train" if im.folder == "train" else "test") for im in images if im.label == GOOD]
    rng = np.random.default_rng(seed)
    for label in labels:
        of_label = [im for im in images if im.label == label]
        if len(of_label) <= shots:
            raise DefectsynthError(
                f"{label} has {len(of_label)} real defects, not enough for --shots {shots} plus a held-out image; "
                f"use --shots {max(1, len(of_label) - 1)} or fewer")
        if protocol == "first":
            chosen = set(range(shots))
        else:
            chosen = set(rng.choice(len(of_label), size=shots, replace=False).tolist())
        rows += [_row(im, "train" if i in chosen else "test") for i, im in enumerate(of_label)]
    return Split(data_root, protocol, shots, seed, [GOOD, *labels], rows)


def save_split(split: Split, path: Path) -> None:
    root = split.data_root

    def rel(p: str) -> str:
        return str(Path(p).relative_to(root)) if p else ""

    doc = {
        "version": 1,
        "data_root": str(root),
        "protocol": split.protocol,
        "shots": split.shots,
        "seed": split.seed,
        "classes": split.classes,
        "images": [{"path": rel(r.path), "label": r.label, "split": r.split, "mask": rel(r.mask)}
                   for r in split.rows],
    }
    write_text(path, json.dumps(doc, indent=1) + "\n")


def check_split(split: Split, path: Path) -> None:
    """Refuse a split that is not what its protocol makes on its data folder (unless it says custom), and
    any split that leaves a class without a training image or without a held-out one."""
    for label in split.classes:
        for part in ("train", "test"):
            if not any(r.label == label and r.split == part for r in split.rows):
                raise DefectsynthError(f"{path}: {label} has no {part}-split image; every class needs a training "
                                       "image and a held-out one; re-run 'defectsynth split' or fix the file")
    unknown = sorted({r.label for r in split.rows} - set(split.classes)) + \
        sorted({r.split for r in split.rows} - {"train", "test"})
    if unknown:
        raise DefectsynthError(f"{path}: {unknown[0]!r} is not one of its classes or of train/test; "
                               "re-run 'defectsynth split' or fix the file")
    if split.protocol == CUSTOM:
        return
    expected = {r.path: r.split for r in make_split(split.data_root, split.shots, split.protocol, split.seed).rows}
    found = {r.path: r.split for r in split.rows}
    for image in sorted(expected.keys() | found.keys()):
        if expected.get(image) != found.get(image):
            rel = Path(image).relative_to(split.data_root) if Path(image).is_relative_to(split.data_root) else image
            what = f"it lists {rel} as {found[image]}" if image in found else f"it does not list {rel}"
            makes = f"makes it {expected[image]}" if image in expected else "does not list it"
            raise DefectsynthError(
                f"{path} is not the {split.protocol} split it declares (shots {split.shots}, seed {split.seed}): "
                f"{what}, which the protocol {makes}; re-run 'defectsynth split', or, for a hand-made split, "
                f'set "protocol": "{CUSTOM}" in it (reports then call it custom)')


def load_split(path: Path) -> Split:
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
        root = Path(doc["data_root"])
        rows = [Row(path=str(root / im["path"]), label=im["label"], split=im["split"], source="real",
                    method="real", mask=str(root / im["mask"]) if im["mask"] else "") for im in doc["images"]]
        return Split(root, doc["protocol"], int(doc["shots"]), int(doc["seed"]), list(doc["classes"]), rows)
    except FileNotFoundError as e:
        raise DefectsynthError(f"{path} not found; run 'defectsynth split' first") from e
    except (ValueError, KeyError, TypeError) as e:
        raise DefectsynthError(f"{path} is not a valid split file ({e}); delete it and run 'defectsynth split'") from e
