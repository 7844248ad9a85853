"""The procedural demo category: MVTec layout, masks, determinism by seed, and the CLI command."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from defectsynth.cli import app
from defectsynth.data.demo import DEFECTS, make_demo
from defectsynth.errors import DefectsynthError
from defectsynth.io import read_image, read_mask

SMALL = dict(size=64, n_train_good=2, n_test_good=2, n_per_defect=2, progress=False)


def pngs(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.png"))}


def test_layout_and_counts(demo_root):
    assert sorted(p.name for p in (demo_root / "test").iterdir()) == sorted(["good", *DEFECTS])
    assert [p.name for p in sorted((demo_root / "train" / "good").iterdir())] == [f"{i:03d}.png" for i in range(24)]
    assert len(list((demo_root / "test" / "good").iterdir())) == 8
    assert sorted(p.name for p in (demo_root / "ground_truth").iterdir()) == sorted(DEFECTS)
    for label in DEFECTS:
        assert [p.name for p in sorted((demo_root / "test" / label).iterdir())] == [f"{i:03d}.png" for i in range(6)]
    assert not list(demo_root.rglob("*.tmp*"))


def test_every_defect_has_a_mask_of_its_size_and_good_has_none(demo_root):
    for label in DEFECTS:
        for image_path in sorted((demo_root / "test" / label).iterdir()):
            image = read_image(image_path)
            assert image.shape == (128, 128, 3) and image.dtype == np.uint8
            raw = read_image(demo_root / "ground_truth" / label / f"{image_path.stem}_mask.png")
            assert raw.shape == (128, 128) and set(np.unique(raw)) <= {0, 255}
            area = read_mask(demo_root / "ground_truth" / label / f"{image_path.stem}_mask.png").mean()
            assert 0.002 < area < 0.5, (label, image_path.name, area)
    assert not (demo_root / "ground_truth" / "good").exists()


def test_defects_change_the_image_where_the_mask_says(demo_root):
    """Outside its mask a defect image looks like a good one; inside, it differs (mean absolute difference)."""
    good = np.stack([read_image(p).astype(np.float32) for p in sorted((demo_root / "test" / "good").iterdir())])
    for label in ("bent_lead", "cut_lead", "misplaced"):
        for image_path in sorted((demo_root / "test" / label).iterdir()):
            image = read_image(image_path).astype(np.float32)
            mask = read_mask(demo_root / "ground_truth" / label / f"{image_path.stem}_mask.png")
            # The nearest good image in the masked area still differs much more there than the same good
            # image does elsewhere, because the part's pose and the lighting vary only a little.
            inside = np.abs(good[:, mask] - image[mask]).mean(axis=(1, 2)).min()
            assert inside > 12, (label, image_path.name, inside)


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    a = pngs(make_demo(tmp_path / "a", seed=3, **SMALL))
    b = pngs(make_demo(tmp_path / "b", seed=3, **SMALL))
    c = pngs(make_demo(tmp_path / "c", seed=4, **SMALL))
    assert len(a) == 2 + 2 + 2 * 2 * len(DEFECTS) and a == b
    assert a.keys() == c.keys() and all(a[k] != c[k] for k in a)


def test_images_do_not_depend_on_counts_and_rerun_keeps_files(tmp_path):
    small = pngs(make_demo(tmp_path / "d", seed=1, **SMALL))
    root = make_demo(tmp_path / "e", seed=1, **{**SMALL, "n_per_defect": 3})
    more = pngs(root)
    assert all(more[k] == v for k, v in small.items()) and len(more) == len(small) + 2 * len(DEFECTS)
    stamp = (root / "train" / "good" / "000.png").stat().st_mtime_ns
    make_demo(root, seed=1, **{**SMALL, "n_per_defect": 3})
    assert pngs(root) == more and (root / "train" / "good" / "000.png").stat().st_mtime_ns == stamp


def test_too_small_size_is_refused(tmp_path):
    with pytest.raises(DefectsynthError, match="--size"):
        make_demo(tmp_path / "x", size=8, progress=False)


def test_cli_demo(tmp_path, monkeypatch):
    calls = []

    def fake_make_demo(root, size, seed, kind="transistor"):
        calls.append((root, size, seed, kind))
        return make_demo(root, size=size, seed=seed, n_train_good=1, n_test_good=1, n_per_defect=1, progress=False,
                         kind=kind)

    monkeypatch.setattr("defectsynth.data.demo.make_demo", fake_make_demo)
    result = CliRunner().invoke(app, ["data", "demo", "--root", str(tmp_path / "demo"), "--size", "48",
                                      "--seed", "2"])
    assert result.exit_code == 0, result.output
    assert calls == [(tmp_path / "demo", 48, 2, "transistor")]
    assert str(tmp_path / "demo") in result.output and "213 train/good" in result.output
    assert read_image(tmp_path / "demo" / "test" / "misplaced" / "000.png").shape == (48, 48, 3)

    result = CliRunner().invoke(app, ["data", "demo", "--root", str(tmp_path / "bad"), "--size", "4"])
    assert result.exit_code == 2 and "--size" in result.output and "Traceback" not in result.output

    result = CliRunner().invoke(app, ["data", "demo", "--root", str(tmp_path / "rot"), "--size", "48",
                                      "--kind", "rotated"])
    assert result.exit_code == 0 and calls[-1][3] == "rotated" and "scratch_head" in result.output
    assert read_image(tmp_path / "rot" / "test" / "scratch_head" / "000.png").shape == (48, 48)
    result = CliRunner().invoke(app, ["data", "demo", "--root", str(tmp_path / "x"), "--kind", "spiral"])
    assert result.exit_code == 2 and "--kind" in result.output and not (tmp_path / "x").exists()
