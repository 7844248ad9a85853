"""Check an MVTec AD category folder: per-class counts, sizes and mask areas, and every problem by file.

Each image and mask is decoded exactly once (defectsynth.io), so a truncated PNG is found here
rather than halfway through a training run.
"""

from __future__ import annotations

import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from defectsynth.data.layout import (
    GOOD,
    RealImage,
    defect_types,
    list_images,
    missing_data_message,
    read_category,
)
from defectsynth.data.manifest import Row
from defectsynth.errors import DefectsynthError
from defectsynth.io import IMAGE_SUFFIXES, decode_image, mask_problem, read_mask

# MVTec ships these two text files inside each category folder.
KNOWN_TOP_LEVEL = {"train", "test", "ground_truth", "license.txt", "readme.txt"}
MASK_SUFFIX = "_mask.png"


@dataclass(frozen=True)
class Problem:
    path: Path  # as the user would type it: the given root joined with the file's relative path
    what: str
    fix: str

    @property
    def line(self) -> str:
        return f"problem: {self.path}: {self.what} — {self.fix}"


@dataclass
class ClassSummary:
    label: str
    train: int = 0  # images in MVTec's train/<label>
    test: int = 0  # images in MVTec's test/<label>
    sizes: Counter = field(default_factory=Counter)  # "WxH" -> count, readable images only
    channels: Counter = field(default_factory=Counter)  # 1 or 3 -> count
    depths: Counter = field(default_factory=Counter)  # bits per channel in the file (8, 16, ...) -> count
    mask_areas: list[float] = field(default_factory=list)  # defect fraction of each usable mask

    @property
    def total(self) -> int:
        return self.train + self.test

    @property
    def size(self) -> str:
        if not self.sizes:
            return "-"
        return next(iter(self.sizes)) if len(self.sizes) == 1 else f"mixed ({len(self.sizes)} sizes)"

    @property
    def channel(self) -> str:
        if not self.channels:
            return "-"
        if len(self.channels) > 1:
            return "mixed"
        return {1: "1 (gray)", 3: "3 (RGB)"}[next(iter(self.channels))]

    @property
    def bits(self) -> str:
        return "-" if not self.depths else ", ".join(str(b) for b in sorted(self.depths))

    @property
    def mean_mask_area(self) -> float | None:
        return sum(self.mask_areas) / len(self.mask_areas) if self.mask_areas else None


@dataclass
class CheckResult:
    root: Path
    classes: list[ClassSummary]  # good first, then the defect types in name order
    problems: list[Problem]

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def imbalance(self) -> float | None:
        """MVTec train/good images per image of the rarest defect type (None without defects)."""
        good = next((c for c in self.classes if c.label == GOOD), None)
        defects = [c.total for c in self.classes if c.label != GOOD]
        if good is None or not defects or min(defects) == 0:
            return None
        return good.train / min(defects)


def check_category(root: Path, progress: bool = True) -> CheckResult:
    """Read every image and mask of the category at `root` and collect its summary and problems."""
    given = Path(root)
    if not given.is_dir():
        raise DefectsynthError(missing_data_message(given))
    _refuse_parent_folder(given)
    real = given.resolve()

    def shown(path: Path) -> Path:
        return given / path.relative_to(real)

    problems = [Problem(shown(p), what, fix) for p, what, fix in _layout_problems(real)]
    images = read_category(real)

    classes = {label: ClassSummary(label) for label in [GOOD, *defect_types(real)]}
    for image in images:
        summary = classes[image.label]
        setattr(summary, image.folder, getattr(summary, image.folder) + 1)

    # Decoding releases the GIL, so a few threads read the folder about twice as fast on two cores.
    with _progress(progress) as bar, ThreadPoolExecutor(min(4, os.cpu_count() or 1)) as pool:
        task = bar.add_task("checking images", total=len(images))
        for image, seen in zip(images, pool.map(_inspect, images), strict=True):
            bar.advance(task)
            summary = classes[image.label]
            problems += [Problem(shown(path), what, fix) for path, what, fix in seen.problems]
            if seen.size is not None:
                summary.sizes[seen.size] += 1
                summary.channels[seen.channels] += 1
                summary.depths[seen.bits] += 1
            if seen.mask_area is not None:
                summary.mask_areas.append(seen.mask_area)

    for summary in classes.values():
        folder = real / ("train" if summary.label == GOOD else "test") / summary.label
        if summary.total == 0 and folder.is_dir():
            problems.append(Problem(shown(folder), "no images", "add images or remove the folder"))
    return CheckResult(given, list(classes.values()), problems)


@dataclass
class _Seen:
    """What decoding one image (and its mask) found; small, so the thread pool returns no pixels."""
    size: str | None = None  # "WxH"
    channels: int = 0
    bits: int = 8
    mask_area: float | None = None
    problems: list[tuple[Path, str, str]] = field(default_factory=list)


def _inspect(image: RealImage) -> _Seen:
    seen = _Seen()
    try:
        pixels, seen.bits = decode_image(image.path)
    except DefectsynthError as e:
        seen.problems.append((image.path, f"unreadable or truncated image ({e.__cause__ or e})",
                              "replace or remove the file"))
        return seen
    height, width = pixels.shape[:2]
    seen.size, seen.channels = f"{width}x{height}", 1 if pixels.ndim == 2 else 3
    if image.mask is None:
        return seen
    if not image.mask.is_file():
        seen.problems.append((image.path, f"missing mask (expected ground_truth/{image.label}/{image.mask.name})",
                              "add its mask (white = defect) or remove the image"))
        return seen
    try:
        mask = read_mask(image.mask)
    except DefectsynthError as e:
        seen.problems.append((image.mask, f"unreadable or truncated mask ({e.__cause__})",
                              "replace the mask or remove it and its image"))
        return seen
    problem = mask_problem(mask, pixels.shape)
    if problem is not None:
        seen.problems.append((image.mask, *problem))
    else:
        seen.mask_area = float(mask.mean())
    return seen


def require_usable_defects(rows: list[Row]) -> None:
    """Refuse, in `data check`'s words, a real defect whose image or mask a generator cannot use (a mask of
    another size would put the defect in the wrong place; an empty one has no defect to cut).
    Refusing rather than skipping keeps the number of shots the split promises."""
    for row in rows:
        if row.source == "real" and row.label != GOOD:
            image = RealImage(Path(row.path), row.label, "test", Path(row.mask) if row.mask else None)
            if image.mask is None:
                raise DefectsynthError(f"{row.path}: defect image without a mask in the split; re-run "
                                       "'defectsynth split'")
            problems = _inspect(image).problems
            if problems:
                path, what, fix = problems[0]
                raise DefectsynthError(f"{path}: {what} — {fix} (see 'defectsynth data check')")


def _refuse_parent_folder(root: Path) -> None:
    """A common slip is passing data/ instead of data/transistor; name the category folders found."""
    if (root / "train").is_dir() or (root / "test").is_dir():
        return
    inside = sorted(p.name for p in root.iterdir() if (p / "train" / GOOD).is_dir())
    if inside:
        raise DefectsynthError(f"{root} holds category folders ({', '.join(inside)}), not a category; "
                               f"pass one of them, e.g. {root / inside[0]}")


def _layout_problems(root: Path) -> list[tuple[Path, str, str]]:
    """Anything that does not belong in the MVTec layout. Hidden files (.DS_Store, ...) are ignored."""
    found: list[tuple[Path, str, str]] = []

    def visible(folder: Path) -> list[Path]:
        return sorted(p for p in folder.iterdir() if not p.name.startswith(".")) if folder.is_dir() else []

    def unknown(path: Path, where: str) -> None:
        kind = "folder" if path.is_dir() else "file"
        found.append((path, f"unknown {kind} {where}", "move or delete it"))

    for entry in visible(root):
        if entry.name not in KNOWN_TOP_LEVEL:
            unknown(entry, "at the top level (expected train/, test/, ground_truth/)")
    for folder, why in ((root / "train" / GOOD, "missing folder train/good"),
                        (root / "test" / GOOD, "missing folder test/good")):
        if not folder.is_dir():
            found.append((folder, why, "add the good images there (MVTec AD layout)"))
    for entry in visible(root / "train"):
        if entry.name != GOOD:
            unknown(entry, "under train/ (only train/good is read; defects belong in test/<type>)")
    _non_images(root / "train" / GOOD, found)

    test_types = {p.name for p in visible(root / "test") if p.is_dir()}
    if not test_types - {GOOD} and (root / "test").is_dir():
        found.append((root / "test", "no defect folders (test/<defect_type>/)", "add the real defect images"))
    for entry in visible(root / "test"):
        if not entry.is_dir():
            unknown(entry, "under test/ (expected folders test/good and test/<defect_type>)")
            continue
        _non_images(entry, found)

    for entry in visible(root / "ground_truth"):
        if not entry.is_dir() or entry.name == GOOD or entry.name not in test_types:
            unknown(entry, f"under ground_truth/ (no matching test/{entry.name}/)")
            continue
        stems = {p.stem for p in list_images(root / "test" / entry.name)}
        for mask in visible(entry):
            if not mask.name.endswith(MASK_SUFFIX):
                unknown(mask, f"in {entry.name} masks (expected <image stem>{MASK_SUFFIX})")
            elif mask.name[: -len(MASK_SUFFIX)] not in stems:
                found.append((mask, f"mask without its image (no {mask.name[: -len(MASK_SUFFIX)]}.* in "
                                    f"test/{entry.name}/)", "remove the mask or add its image"))
    return found


def _non_images(folder: Path, found: list[tuple[Path, str, str]]) -> None:
    if not folder.is_dir():
        return
    for entry in sorted(folder.iterdir()):
        if not entry.name.startswith(".") and (entry.is_dir() or entry.suffix.lower() not in IMAGE_SUFFIXES):
            kind = "folder" if entry.is_dir() else "file"
            found.append((entry, f"unknown {kind} (not an image: {', '.join(IMAGE_SUFFIXES)})", "move or delete it"))


def _progress(enabled: bool) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                    transient=True, disable=not enabled)


def check_table(result: CheckResult) -> Table:
    """The per-class table; its caption defines the imbalance ratio."""
    ratio = result.imbalance
    caption = (f"imbalance ratio = train/good images ÷ images of the rarest defect type = "
               f"{ratio:.1f} : 1" if ratio is not None else "imbalance ratio: n/a (no defect images)")
    caption += ("\ntrain/test are MVTec's folders; 'defectsynth split' decides which defects train. "
                "Mask area: mean defect fraction of the image. Bits: per channel, in the files.")
    if any(bits > 8 for c in result.classes for bits in c.depths):
        caption += "\n16-bit images found: they are read scaled to 8 bits (not clipped)."
    table = Table(title=f"{result.root}", caption=caption, caption_justify="left")
    for name in ("class", "train", "test", "size", "channels", "bits", "mean mask area"):
        table.add_column(name, justify="right" if name in ("train", "test", "mean mask area") else "left")
    for c in result.classes:
        area = "-" if c.mean_mask_area is None else f"{100 * c.mean_mask_area:.2f} %"
        table.add_row(c.label, str(c.train), str(c.test), c.size, c.channel, c.bits, area)
    return table
