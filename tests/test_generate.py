"""generate(): files, provenance rows, determinism, resumption, workers, leakage and bad input."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import replace
from pathlib import Path

import cv2
import pytest
from typer.testing import CliRunner

from defectsynth.cli import app
from defectsynth.data.guard import check_no_leakage
from defectsynth.data.split import Split
from defectsynth.errors import DefectsynthError, LeakageError
from defectsynth.io import read_image, read_mask, write_png
from defectsynth.synth.generate import default_method, generate, read_synthetic
from defectsynth.workers import PER_WORKER, auto_workers
from defectsynth.workspace import Workspace

runner = CliRunner()


def _quiet(ws, split, label, n, **kw):
    return generate(ws, split, label, n, progress=False, say=lambda _m: None, **kw)


def _bytes(rows) -> list[bytes]:
    return [Path(r.path).read_bytes() + Path(r.mask).read_bytes() for r in rows]


@pytest.mark.parametrize("label", ["bent_lead", "misplaced"])
def test_files_rows_and_masks(workspace, label):
    split = workspace.split()
    rows = _quiet(workspace, split, label, 5)
    method = default_method(label)
    assert [Path(r.path).name for r in rows] == [f"0_{i:05d}.png" for i in range(5)]
    assert {r.method for r in rows} == {method} and {r.split for r in rows} == {"train"}
    train = {r.path for r in split.real_rows("train")}
    for r in rows:
        image, mask = read_image(Path(r.path)), read_mask(Path(r.mask))
        assert mask.shape == image.shape[:2] and 0 < mask.sum() < mask.size
        assert r.parent_paths and set(r.parent_paths) <= train
        assert json.loads(r.params)["index"] == int(Path(r.path).stem.split("_")[1])
    assert len(read_synthetic(workspace)) == 5
    assert (workspace.synthetic_dir(label, method) / "preview.png").is_file()


def test_auto_workers_one_per_cpu_only_for_enough_images():
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    assert auto_workers(PER_WORKER - 1) == 1  # a test-sized request starts no pool
    assert auto_workers(PER_WORKER * cpus) == cpus
    assert auto_workers(PER_WORKER * cpus * 4) == cpus  # never more than the CPUs


def test_same_seed_same_bytes_any_workers_and_resume(workspace, tmp_path):
    split = workspace.split()
    first = _bytes(_quiet(workspace, split, "cut_lead", 6, seed=3))
    other = Workspace.open(workspace.data, tmp_path / "other")
    other.split(say=lambda _m: None)
    assert _bytes(_quiet(other, other.split(), "cut_lead", 6, seed=3, workers=2)) == first
    assert _bytes(_quiet(other, other.split(), "cut_lead", 6, seed=4))[0] != first[0]

    # interrupted run: some files gone, a leftover temporary file, a row without its file
    folder = workspace.synthetic_dir("cut_lead", "cutpaste")
    (folder / "3_00001.png").unlink()
    (folder / "3_00004_mask.png").unlink()
    (folder / ".3_00005.png.abc.tmp.png").write_bytes(b"partial")
    rows = _quiet(workspace, split, "cut_lead", 6, seed=3)
    assert _bytes(rows) == first
    assert len(read_synthetic(workspace)) == 6  # re-running duplicates nothing


def test_one_fit_serves_every_class_of_a_split_until_a_file_changes(workspace, tmp_path, monkeypatch):
    from defectsynth.synth import generate as gen_module
    from defectsynth.synth.cutpaste import CutPaste

    fits = []
    real_fit = CutPaste.fit
    monkeypatch.setattr(CutPaste, "fit", lambda self, rows: (fits.append(len(rows)), real_fit(self, rows))[1])
    monkeypatch.setattr(gen_module, "_FITTED", {})
    split = workspace.split()
    reused = Workspace.open(workspace.data, tmp_path / "reused")
    reused.split(say=lambda _m: None)
    _quiet(reused, reused.split(), "bent_lead", 2, method="cutpaste")
    cut = _bytes(_quiet(reused, reused.split(), "cut_lead", 3, method="cutpaste"))
    assert len(fits) == 1
    monkeypatch.setattr(gen_module, "_FITTED", {})  # a fresh fit makes the same images as a reused one
    fresh = Workspace.open(workspace.data, tmp_path / "fresh")
    fresh.split(say=lambda _m: None)
    assert _bytes(_quiet(fresh, fresh.split(), "cut_lead", 3, method="cutpaste")) == cut
    assert len(fits) == 2
    good = next(r.path for r in split.real_rows("train") if r.label == "good")
    before = os.stat(good)
    try:
        os.utime(good, ns=(before.st_atime_ns, before.st_mtime_ns + 10**9))  # an edited image
        _quiet(fresh, fresh.split(), "damaged_case", 1, method="cutpaste")
        assert len(fits) == 3
    finally:
        os.utime(good, ns=(before.st_atime_ns, before.st_mtime_ns))  # the data is shared with other tests


def test_extend_keeps_existing(workspace):
    split = workspace.split()
    small = _quiet(workspace, split, "damaged_case", 3)
    before = _bytes(small)
    mtimes = [os.stat(r.path).st_mtime_ns for r in small]
    big = _quiet(workspace, split, "damaged_case", 7)
    assert len(big) == 7 and _bytes(big[:3]) == before
    assert [os.stat(r.path).st_mtime_ns for r in big[:3]] == mtimes
    assert len(read_synthetic(workspace)) == 7
    assert len(_quiet(workspace, split, "damaged_case", 2)) == 2  # a smaller n returns the first n


def test_leakage(workspace):
    split = workspace.split()
    # a split that makes every real defect held out: generation must refuse, not use them
    no_train = replace(split, rows=[replace(r, split="test") if r.label == "bent_lead" else r for r in split.rows])
    with pytest.raises(DefectsynthError, match="no train-split"):
        _quiet(workspace, no_train, "bent_lead", 2)
    rows = _quiet(workspace, split, "bent_lead", 8)
    heldout = split.heldout_paths()
    assert not any(p in heldout for r in rows for p in r.parent_paths)
    leaked = replace(rows[0], parents=sorted(heldout)[0])
    with pytest.raises(LeakageError):
        check_no_leakage([leaked], split, "test")


def test_heldout_parent_refused_after_split_change(workspace):
    split = workspace.split()
    rows = _quiet(workspace, split, "bent_lead", 3)
    used = rows[0].parent_paths[0]
    # a later split holds out the defect this image was made from: the guard refuses the old row
    moved = Split(split.data_root, split.protocol, split.shots, split.seed, split.classes,
                  [replace(r, split="test") if r.path == used else r for r in split.rows])
    with pytest.raises(LeakageError):
        check_no_leakage(rows, moved, "rebalance")
    # and generate under the new split remakes the stale images instead of reusing them
    remade = _quiet(workspace, moved, "bent_lead", 3)
    assert not any(used in r.parent_paths for r in remade)
    check_no_leakage(read_synthetic(workspace), moved, "rebalance")


def _converted(demo_root: Path, dest: Path, convert) -> Path:
    shutil.copytree(demo_root, dest)
    for path in dest.rglob("*.png"):
        image = read_image(path)
        write_png(path, convert(image, is_mask="ground_truth" in path.parts))
    return dest


def test_grayscale_and_non_square(demo_root, tmp_path):
    def gray_wide(image, is_mask):
        if image.ndim == 3 and not is_mask:
            image = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
        interp = cv2.INTER_NEAREST if is_mask else cv2.INTER_AREA
        return cv2.resize(image, (160, 112), interpolation=interp)

    root = _converted(demo_root, tmp_path / "demo_gray", gray_wide)
    ws = Workspace.open(root, tmp_path / "work")
    split = ws.split(say=lambda _m: None)
    for label in ("bent_lead", "misplaced"):
        for row in _quiet(ws, split, label, 3):
            image, mask = read_image(Path(row.path)), read_mask(Path(row.mask))
            assert image.shape == (112, 160) and mask.shape == (112, 160) and mask.any()


def _cli(demo_root, work, *args):
    return runner.invoke(app, ["generate", "--data", str(demo_root), "--work", str(work), *args])


def test_cli_all_and_bad_input(demo_root, tmp_path):
    work = tmp_path / "work"
    ok = _cli(demo_root, work, "--class", "all", "--n", "2")
    assert ok.exit_code == 0, ok.output
    assert {(r.label, r.method) for r in read_synthetic(Workspace.open(demo_root, work))} == {
        ("bent_lead", "cutpaste"), ("cut_lead", "cutpaste"), ("damaged_case", "cutpaste"), ("misplaced", "pose")}

    bad = _cli(demo_root, work, "--class", "scratch", "--n", "2")
    assert bad.exit_code != 0 and "bent_lead" in bad.output and "Traceback" not in bad.output
    for n in ("0", "-3"):
        bad = _cli(demo_root, work, "--class", "bent_lead", "--n", n)
        assert bad.exit_code != 0 and "--n" in bad.output
    bad = _cli(demo_root, work, "--class", "bent_lead", "--n", "2", "--method", "magic")
    assert bad.exit_code != 0 and "cutpaste" in bad.output


def test_cli_no_train_defects(demo_root, tmp_path):
    work = tmp_path / "work"
    ws = Workspace.open(demo_root, work)
    split = ws.split(say=lambda _m: None)
    doc = json.loads(ws.split_json.read_text())
    for im in doc["images"]:
        if im["label"] == "cut_lead":
            im["split"] = "test"
    ws.split_json.write_text(json.dumps(doc))
    bad = _cli(demo_root, work, "--class", "cut_lead", "--n", "2")
    assert bad.exit_code != 0 and "no train-split" in bad.output
    assert split.train_defects("cut_lead")  # the change came from the edited file only


def test_cli_unwritable_output(demo_root, tmp_path):
    work = tmp_path / "work"
    Workspace.open(demo_root, work).split(say=lambda _m: None)
    (work / "synthetic").write_text("a file where the output folder should be")  # works even as root
    bad = _cli(demo_root, work, "--class", "bent_lead", "--n", "2")
    assert bad.exit_code != 0 and "cannot write" in bad.output and "Traceback" not in bad.output
    if os.geteuid() != 0:  # a read-only --work (root ignores permissions)
        (work / "synthetic").unlink()
        work.chmod(0o500)
        try:
            bad = _cli(demo_root, work, "--class", "bent_lead", "--n", "2")
        finally:
            work.chmod(0o700)
        assert bad.exit_code != 0 and "cannot write" in bad.output
