"""`defectsynth data check`: the per-class summary, and one broken folder per problem it must name."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from defectsynth.cli import app
from defectsynth.data.check import check_category
from defectsynth.io import read_image, read_mask, write_png


@pytest.fixture
def category(demo_root, tmp_path) -> Path:
    """A private copy of the demo category that a test may break."""
    return Path(shutil.copytree(demo_root, tmp_path / "transistor"))


def run_check(path: Path):
    return CliRunner().invoke(app, ["data", "check", str(path)])


def problem_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("problem: ")]


def test_clean_demo_folder_passes_with_the_right_counts(category):
    result = check_category(category, progress=False)
    assert result.ok, [p.line for p in result.problems]
    counts = {c.label: (c.train, c.test) for c in result.classes}
    assert counts == {"good": (24, 8), "bent_lead": (0, 6), "cut_lead": (0, 6), "damaged_case": (0, 6),
                      "misplaced": (0, 6)}
    assert {c.size for c in result.classes} == {"128x128"}
    assert result.imbalance == 24 / 6
    assert result.classes[0].mean_mask_area is None
    assert all(0 < c.mean_mask_area < 1 for c in result.classes[1:])

    cli = run_check(category)
    assert cli.exit_code == 0, cli.output
    assert "4.0 : 1" in " ".join(cli.output.split()) and problem_lines(cli.output) == []
    assert [line.split()[:3] for line in cli.output.splitlines() if "│ good" in line] == [["│", "good", "│"]]


def test_grayscale_category_passes(category):
    for path in category.rglob("*.png"):
        if "ground_truth" not in path.parts:
            image = read_image(path)
            write_png(path, image if image.ndim == 2 else image.mean(axis=2).astype(np.uint8))
    result = check_category(category, progress=False)
    assert result.ok and {c.channel for c in result.classes} == {"1 (gray)"}


def delete_mask(root: Path) -> str:
    (root / "ground_truth/bent_lead/000_mask.png").unlink()
    return f"problem: {root}/test/bent_lead/000.png: missing mask (expected ground_truth/bent_lead/000_mask.png)"


def resize_mask(root: Path) -> str:
    path = root / "ground_truth/cut_lead/001_mask.png"
    write_png(path, read_mask(path)[::2, ::2])
    return f"problem: {path}: mask is 64x64 but its image is 128x128"


def blank_mask(root: Path) -> str:
    path = root / "ground_truth/damaged_case/002_mask.png"
    write_png(path, np.zeros_like(read_mask(path)))
    return f"problem: {path}: empty mask"


def truncate_png(root: Path) -> str:
    path = root / "train/good/003.png"
    path.write_bytes(path.read_bytes()[:400])
    return f"problem: {path}: unreadable or truncated image"


def garbage_png(root: Path) -> str:
    path = root / "test/good/001.png"
    path.write_bytes(b"not a png at all")
    return f"problem: {path}: unreadable or truncated image"


def unknown_top_folder(root: Path) -> str:
    (root / "previews").mkdir()
    return f"problem: {root}/previews: unknown folder at the top level"


def unknown_train_folder(root: Path) -> str:
    (root / "train/bent_lead").mkdir()
    return f"problem: {root}/train/bent_lead: unknown folder under train/"


def masks_without_test_folder(root: Path) -> str:
    (root / "ground_truth/scratch").mkdir()
    return f"problem: {root}/ground_truth/scratch: unknown folder under ground_truth/ (no matching test/scratch/)"


def mask_without_image(root: Path) -> str:
    (root / "test/misplaced/004.png").unlink()
    return f"problem: {root}/ground_truth/misplaced/004_mask.png: mask without its image"


@pytest.mark.parametrize("breakage", [delete_mask, resize_mask, blank_mask, truncate_png, garbage_png,
                                      unknown_top_folder, unknown_train_folder, masks_without_test_folder,
                                      mask_without_image])
def test_each_broken_folder_gets_its_one_line(category, breakage):
    expected = breakage(category)
    result = run_check(category)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = problem_lines(result.output)
    assert len(lines) == 1, result.output
    assert lines[0].startswith(expected) and " — " in lines[0], lines[0]


def test_missing_folder_says_how_to_get_the_data(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DEFECTSYNTH_DATA", raising=False)
    result = CliRunner().invoke(app, ["data", "check"])  # defaults to data/transistor
    assert result.exit_code == 2
    text = " ".join(result.output.split())
    assert "data folder data/transistor not found" in text and "defectsynth data download" in text
    assert "Traceback" not in result.output


def test_path_defaults_to_env(category, monkeypatch):
    monkeypatch.setenv("DEFECTSYNTH_DATA", str(category))
    result = CliRunner().invoke(app, ["data", "check"])
    assert result.exit_code == 0 and f"OK: {category} has no problems" in result.output


def test_parent_folder_names_the_categories(category):
    result = run_check(category.parent)
    assert result.exit_code == 2
    assert "holds category folders (transistor)" in " ".join(result.output.split())


@pytest.mark.real
def test_real_transistor(real_root):
    result = check_category(real_root, progress=False)
    assert result.ok, [p.line for p in result.problems[:5]]
    assert [(c.label, c.train, c.test) for c in result.classes] == [
        ("good", 213, 60), ("bent_lead", 0, 10), ("cut_lead", 0, 10), ("damaged_case", 0, 10), ("misplaced", 0, 10)]
