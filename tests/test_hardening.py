"""Issue 13: deliberately broken inputs, each refused with one line (exit 2, no traceback) and nothing
already written lost. The numbers are the cases of the issue."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from defectsynth.balance import RebalanceConfig, rebalance
from defectsynth.cli import app
from defectsynth.data.check import check_category
from defectsynth.data.guard import check_no_leakage
from defectsynth.data.manifest import read_manifest, write_manifest
from defectsynth.errors import DefectsynthError, LeakageError
from defectsynth.io import read_image, write_png
from defectsynth.synth.generate import generate
from defectsynth.workspace import Workspace

runner = CliRunner()
ORIGINAL = RebalanceConfig(strategy="none", sampler="none", loss="ce")


def cli(*args: str):
    result = runner.invoke(app, [str(a) for a in args])
    return result, result.output  # stdout and stderr, interleaved


def one_line_error(result, out: str) -> str:
    """The error line of a refused command, after checking it is the only one and there is no traceback."""
    assert result.exit_code == 2 and "Traceback" not in out, out
    errors = [line for line in out.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, out
    return errors[0]


@pytest.fixture
def category(demo_root, tmp_path) -> Path:
    """A private copy of the demo category that a test may break."""
    return Path(shutil.copytree(demo_root, tmp_path / "transistor"))


def quiet_generate(ws, label, n, **kw):
    return generate(ws, ws.split(say=lambda _m: None), label, n, progress=False, say=lambda _m: None, **kw)


# 1. the leakage guard compares files, not path strings

def test_01_guard_sees_through_spellings_links_and_copies(workspace, tmp_path, monkeypatch):
    split = workspace.split(say=lambda _m: None)
    held = Path(sorted(r.path for r in split.real_rows("test") if r.label == "cut_lead")[0])
    train = next(r for r in split.real_rows("train") if r.label == "cut_lead")
    (tmp_path / "link.png").symlink_to(held)
    os.link(held, tmp_path / "hardlink.png")
    shutil.copyfile(held, tmp_path / "copy.png")
    monkeypatch.chdir(held.parent.parent)
    disguises = [f"{held.parent}/./{held.name}", f"{held.parent}//{held.name}",
                 f"{held.parent}/../{held.parent.name}/{held.name}", f"{held.parent.name}/{held.name}",
                 str(tmp_path / "link.png"), str(tmp_path / "hardlink.png"), str(tmp_path / "copy.png")]
    for path in disguises:
        with pytest.raises(LeakageError, match="held-out"):
            check_no_leakage([replace(train, path=path)], split, "test")
        child = replace(train, path=str(tmp_path / "synthetic.png"), source="synthetic", method="cutpaste",
                        parents=f"{train.path};{path}")
        with pytest.raises(LeakageError, match="made from held-out"):
            check_no_leakage([child], split, "test")
    # a copy of a training image, or a spelling of it, is fine
    shutil.copyfile(train.path, tmp_path / "train-copy.png")
    ok = [replace(train, path=str(tmp_path / "train-copy.png")), replace(train, path=train.path.replace("/", "//"))]
    assert check_no_leakage(ok, split, "test") == ok


def test_01_train_eval_refuses_a_disguised_heldout_row(workspace):
    split = workspace.split(say=lambda _m: None)
    rebalance(workspace, split, ORIGINAL, name="original", progress=False)
    held = sorted(r.path for r in split.real_rows("test") if r.label == "cut_lead")[0]
    csv = workspace.training_csv("original")
    rows = read_manifest(csv)
    train = next(r for r in rows if r.label == "cut_lead")
    write_manifest(csv, rows + [replace(train, path=held.replace("/test/", "/test/./"))])
    result, out = cli("train-eval", "--data", workspace.data, "--work", workspace.root, "--arms", "original",
                      "--preset", "fast", "--device", "cpu")
    assert "held-out image" in one_line_error(result, out)
    assert not (workspace.root / "classifiers").exists()


# 2. 16-bit images

def test_02_sixteen_bit_gray_and_colour_are_scaled(category, tmp_path):
    eight = (np.arange(64 * 64) % 256).astype(np.uint8).reshape(64, 64)
    colour = np.dstack([eight, eight[::-1], eight.T])
    cv2.imwrite(str(tmp_path / "gray16.png"), eight.astype(np.uint16) * 257)
    cv2.imwrite(str(tmp_path / "rgb16.png"), cv2.cvtColor(colour, cv2.COLOR_RGB2BGR).astype(np.uint16) * 257)
    assert np.array_equal(read_image(tmp_path / "gray16.png"), eight)
    assert np.array_equal(read_image(tmp_path / "rgb16.png"), colour)

    for path in category.rglob("*.png"):
        image = read_image(path)
        if image.ndim == 3:
            image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
        cv2.imwrite(str(path), image.astype(np.uint16) * 257)
    result = check_category(category, progress=False)
    assert result.ok, [p.line for p in result.problems]
    assert {c.bits for c in result.classes} == {"16"}
    assert all(0 < c.mean_mask_area < 0.5 for c in result.classes[1:])  # masks read as masks, not all white
    out = cli("data", "check", category)[1]
    assert "16-bit" in out and "bits" in out


# 3 and 4. masks that do not fit their image: the same message as `data check`

def _break_train_mask(category: Path, how: str) -> Path:
    mask = category / "ground_truth" / "bent_lead" / "000_mask.png"  # a train defect under the first-3 split
    if how == "size":
        write_png(mask, cv2.resize(read_image(mask), (64, 48), interpolation=cv2.INTER_NEAREST))
    else:
        write_png(mask, np.zeros_like(read_image(mask)))
    return mask


@pytest.mark.parametrize("how, what", [("size", "mask is 64x48 but its image is 128x128"),
                                       ("empty", "empty mask (no white defect pixels)")])
def test_03_04_generate_refuses_a_mask_that_data_check_flags(category, tmp_path, how, what):
    mask = _break_train_mask(category, how)
    flagged = [p.line.removeprefix("problem: ") for p in check_category(category, progress=False).problems]
    assert flagged == [f"{mask}: {what} — " + flagged[0].split(" — ")[1]]
    work = tmp_path / "work"
    result, out = cli("generate", "--data", category, "--work", work, "--class", "bent_lead", "--n", "3")
    said = " ".join(flagged[0].split())
    assert " ".join(one_line_error(result, out).split()).removeprefix("error: ").startswith(said)
    assert not list((work / "synthetic").rglob("*.png")) if (work / "synthetic").exists() else True
    # so does training a learned generator, before it trains
    result, out = cli("fit", "--method", "gan", "--preset", "tiny", "--device", "cpu", "--data", category,
                      "--work", work)
    assert " ".join(one_line_error(result, out).split()).removeprefix("error: ").startswith(said)
    assert not (work / "models").exists()
    # the other classes still generate
    result, out = cli("generate", "--data", category, "--work", work, "--class", "cut_lead", "--n", "2")
    assert result.exit_code == 0, out


# 5. workers die with their parent

SCRIPT = """
import sys
from pathlib import Path
from defectsynth.synth.generate import generate
from defectsynth.workspace import Workspace
ws = Workspace.open(Path(sys.argv[1]), Path(sys.argv[2]))
generate(ws, ws.split(say=lambda _m: None), "bent_lead", 100000, workers=2, progress=False, say=lambda _m: None)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_05_workers_die_with_their_parent(workspace, sig):
    psutil = pytest.importorskip("psutil")
    parent = subprocess.Popen([sys.executable, "-c", SCRIPT, str(workspace.data), str(workspace.root)])
    workers = []
    try:
        deadline = time.monotonic() + 120
        out = workspace.synthetic_dir("bent_lead", "cutpaste")
        while time.monotonic() < deadline and (len(workers) < 2 or len(list(out.glob("*_mask.png"))) < 4):
            assert parent.poll() is None, "generate ended early"
            workers = psutil.Process(parent.pid).children()
            time.sleep(0.2)
        assert len(workers) == 2
        parent.send_signal(sig)
        parent.wait(30)

        def alive(p):
            try:
                return p.status() != psutil.STATUS_ZOMBIE
            except psutil.NoSuchProcess:
                return False
        deadline = time.monotonic() + 20
        while any(alive(p) for p in workers) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not any(alive(p) for p in workers)
    finally:
        for p in [parent, *workers]:
            try:
                p.kill()
            except Exception:  # noqa: BLE001 - already gone
                pass
    # and a re-run completes what the killed one left
    rows = quiet_generate(workspace, "bent_lead", 6)
    assert all(Path(r.path).is_file() for r in rows)


# 6. a hand-edited split.json

def test_06_hand_edited_split_is_checked_against_its_protocol(workspace):
    doc = json.loads(workspace.split_json.read_text())
    moved = next(im for im in doc["images"] if im["label"] == "cut_lead" and im["split"] == "test")
    moved["split"] = "train"
    workspace.split_json.write_text(json.dumps(doc))
    with pytest.raises(DefectsynthError, match="custom") as err:
        workspace.split(say=lambda _m: None)
    assert moved["path"] in str(err.value) and "first" in str(err.value)
    result, out = cli("generate", "--data", workspace.data, "--work", workspace.root, "--class", "cut_lead",
                      "--n", "2")
    assert "custom" in one_line_error(result, out)

    doc["protocol"] = "custom"  # the user says it is their own split: accepted, and named so
    workspace.split_json.write_text(json.dumps(doc))
    split = workspace.split(say=lambda _m: None)
    assert split.protocol == "custom" and len(split.train_defects("cut_lead")) == 4
    doc["images"] = [im for im in doc["images"] if im["label"] != "cut_lead" or im["split"] == "train"]
    workspace.split_json.write_text(json.dumps(doc))  # even custom: every defect type needs a held-out image
    with pytest.raises(DefectsynthError, match="cut_lead"):
        workspace.split(say=lambda _m: None)


# 7. train-eval checks every image before training

def test_07_unreadable_heldout_image_is_found_before_training(category, tmp_path):
    ws = Workspace.open(category, tmp_path / "work")
    split = ws.split(say=lambda _m: None)
    rebalance(ws, split, ORIGINAL, name="original", progress=False)
    broken = Path(sorted(r.path for r in split.real_rows("test") if r.label == "damaged_case")[-1])
    broken.write_bytes(broken.read_bytes()[: broken.stat().st_size // 2])
    result, out = cli("train-eval", "--data", category, "--work", ws.root, "--arms", "original",
                      "--preset", "fast", "--device", "cpu")
    assert str(broken) in one_line_error(result, out).replace("\n", "")
    assert not (ws.root / "classifiers").exists()


# 8. the remaining tracebacks

def test_08_recipe_not_utf8_or_a_folder(tmp_path):
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes("name: caf\xe9\n".encode("latin-1"))
    assert "UTF-8" in one_line_error(*cli("run", bad))
    assert "folder" in one_line_error(*cli("run", tmp_path))


@pytest.mark.parametrize("damage", ["latin1", "truncated", "cut between escaped quotes"])
def test_08_damaged_synthetic_csv(workspace, damage):
    quiet_generate(workspace, "bent_lead", 3)
    data = workspace.synthetic_csv.read_bytes()
    if damage == "latin1":
        data = data.replace(b"bent_lead", "bent_l\xe9ad".encode("latin-1"), 1)
    elif damage == "truncated":
        data = data[: len(data) - 100]  # cut inside the last row
    else:  # the quotes stay balanced: only the last row's parameters show the cut
        data = data[: data.rindex(b'""') + 1]
    workspace.synthetic_csv.write_bytes(data)
    where = ["--data", workspace.data, "--work", workspace.root]
    for args in (["generate", "--class", "bent_lead", "--n", "4"], ["rebalance"]):
        line = one_line_error(*cli(*args, *where))
        assert str(workspace.synthetic_csv) in line.replace("\n", "")
    assert workspace.synthetic_csv.read_bytes() == data  # left as it was, for the user to look at


def test_08_download_category_must_be_a_folder_name(tmp_path):
    archive = tmp_path / "own.tar.xz"
    archive.write_bytes(b"not an archive")
    for category in ("../../x", "a/b", "..", ""):
        line = one_line_error(*cli("data", "download", "--category", category, "--root", tmp_path / "data",
                                   "--archive", archive, "--no-verify"))
        assert "--category" in line
    assert not (tmp_path / "x").exists()


# 9. arms

def test_09_arms_duplicate_or_empty(workspace, tmp_path):
    split = workspace.split(say=lambda _m: None)
    rebalance(workspace, split, ORIGINAL, name="original", progress=False)
    where = ["--data", workspace.data, "--work", workspace.root, "--preset", "fast", "--device", "cpu"]
    assert "twice" in one_line_error(*cli("train-eval", *where, "--arms", "original,original"))
    assert "--arms" in one_line_error(*cli("train-eval", *where, "--arms", ""))
    assert "--arms" in one_line_error(*cli("train-eval", *where, "--arms", " , "))
    assert not (workspace.root / "classifiers").exists()

    recipe = tmp_path / "r.yaml"
    for arms, expected in ((["original", "original"], "twice"), ([], "at least one")):
        recipe.write_text(yaml.safe_dump({"name": "r", "train_eval": {"arms": arms}}))
        assert expected in one_line_error(*cli("run", recipe))
    # an arm that no rebalance step makes and that is not in the workspace: refused before generating
    work = tmp_path / "work"
    recipe.write_text(yaml.safe_dump({
        "name": "r", "data": {"path": str(workspace.data)}, "work": str(work),
        "generate": [{"class": "all", "n": 2}], "rebalance": {"balanced": {"strategy": "synthetic"}},
        "train_eval": {"arms": ["original", "balancd"], "preset": "fast"}}))
    line = one_line_error(*cli("run", recipe))
    assert "balancd" in line and "balanced" in line
    assert not (work / "synthetic").exists()


# 10. minor

def test_10_stale_temp_files_are_removed(workspace):
    folder = workspace.synthetic_dir("bent_lead", "cutpaste")
    folder.mkdir(parents=True)
    stale = [folder / ".0_00000.png.k2j4h6g8.tmp.png", workspace.synthetic_csv.parent / ".synthetic.csv.abcd1234.tmp.csv"]
    for path in stale:
        path.write_bytes(b"")
    keep = folder / "notes.tmp.txt"  # not one of ours
    keep.write_text("mine")
    quiet_generate(workspace, "bent_lead", 2)
    assert not any(p.exists() for p in stale) and keep.read_text() == "mine"


def test_10_data_given_as_a_file(demo_root, tmp_path):
    image = demo_root / "train" / "good" / "000.png"
    for args in (["generate", "--data", image, "--work", tmp_path / "w", "--class", "bent_lead", "--n", "1"],
                 ["data", "check", image]):
        line = one_line_error(*cli(*args))
        assert "is a file" in line and "--category 000.png" not in line


def test_10_split_not_written_before_options_are_checked(demo_root, tmp_path):
    work = tmp_path / "work"
    for args in (["--class", "scratch", "--n", "2"], ["--class", "bent_lead", "--n", "0"]):
        one_line_error(*cli("generate", "--data", demo_root, "--work", work, *args))
        assert not (work / "split.json").exists()


def test_08_hand_made_manifest_without_final_newline_is_read(tmp_path):
    """Only what defectsynth writes is held to its own form: a hand-made last row without a final newline,
    whose parameters are free text, is read as it stands."""
    path = tmp_path / "hand.csv"
    path.write_text("path,label,split,source,method,parents,mask,seed,params\n"
                    "/a.png,good,train,real,real,,,,\n/b.png,cut_lead,train,synthetic,own,/a.png,/b_mask.png,0,n/a")
    rows = read_manifest(path)
    assert [r.params for r in rows] == ["", "n/a"]
