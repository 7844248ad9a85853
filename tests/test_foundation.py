"""Split protocol, manifests, the leakage guard, the image cache and the workspace defaults."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from defectsynth.cli import app
from defectsynth.data import cache as cache_mod
from defectsynth.data.cache import ImageCache
from defectsynth.data.guard import check_no_leakage, train_rows
from defectsynth.data.manifest import Row, read_manifest, write_manifest
from defectsynth.data.split import load_split, make_split, save_split
from defectsynth.errors import DefectsynthError, LeakageError
from defectsynth.workspace import Workspace

runner = CliRunner()
DEFECTS = ["bent_lead", "cut_lead", "damaged_case", "misplaced"]


def test_first_split_takes_first_k_by_name(demo_root):
    split = make_split(demo_root, shots=3, protocol="first")
    assert split.classes == ["good", *DEFECTS]
    for label in DEFECTS:
        train = [os.path.basename(r.path) for r in split.train_defects(label)]
        assert train == ["000.png", "001.png", "002.png"]
        assert sum(r.label == label and r.split == "test" for r in split.rows) == 3
    good = [r for r in split.rows if r.label == "good"]
    assert all((r.split == "train") == ("/train/good/" in r.path) for r in good)


def test_random_split_is_deterministic_and_seed_dependent(demo_root):
    a = make_split(demo_root, shots=2, protocol="random", seed=1)
    b = make_split(demo_root, shots=2, protocol="random", seed=1)
    assert a.rows == b.rows
    others = [make_split(demo_root, shots=2, protocol="random", seed=s).rows for s in range(2, 6)]
    assert any(rows != a.rows for rows in others)
    for label in DEFECTS:
        assert len(a.train_defects(label)) == 2


def test_split_round_trip_and_bad_options(demo_root, tmp_path):
    split = make_split(demo_root, shots=3)
    save_split(split, tmp_path / "split.json")
    assert load_split(tmp_path / "split.json") == split
    with pytest.raises(DefectsynthError, match="--split"):
        make_split(demo_root, protocol="last")
    with pytest.raises(DefectsynthError, match="--shots"):
        make_split(demo_root, shots=6)
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(DefectsynthError, match="bad.json"):
        load_split(tmp_path / "bad.json")


def test_manifest_round_trip(tmp_path):
    rows = [Row(path="/a/1.png", label="good", split="train", source="real", method="real"),
            Row(path="/s/2.png", label="cut_lead", split="train", source="synthetic", method="cutpaste",
                parents="/a/1.png;/a/3.png", mask="/s/2_mask.png", seed="0", params='{"angle": 3.5}')]
    write_manifest(tmp_path / "m.csv", rows)
    back = read_manifest(tmp_path / "m.csv")
    assert back == rows
    assert back[1].parent_paths == ["/a/1.png", "/a/3.png"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary file left


def test_leakage_guard(demo_root):
    split = make_split(demo_root, shots=3)
    train = train_rows(split, "test")
    assert train and all(r.split == "train" for r in train)
    heldout = split.real_rows("test")[0]
    with pytest.raises(LeakageError, match="held-out"):
        check_no_leakage([*train, heldout], split, "training")
    child = Row(path="/s/x.png", label=heldout.label, split="train", source="synthetic", method="cutpaste",
                parents=f"{train[0].path};{heldout.path}")
    with pytest.raises(LeakageError, match="made from held-out"):
        check_no_leakage([child], split, "rebalance")
    ok = Row(path="/s/y.png", label="cut_lead", split="train", source="synthetic", method="cutpaste",
             parents=split.train_defects("cut_lead")[0].path)
    assert check_no_leakage([ok], split, "rebalance") == [ok]


def test_cache_decodes_once_and_invalidates_on_change(demo_root, tmp_path, monkeypatch):
    src = tmp_path / "img.png"
    Image.fromarray(np.full((40, 60, 3), 100, np.uint8)).save(src)
    calls = []
    real_read = cache_mod.read_image
    monkeypatch.setattr(cache_mod, "read_image", lambda p: calls.append(p) or real_read(p))
    cache = ImageCache(tmp_path / "cache")
    first = cache.image(src, 32)
    assert first.shape == (32, 32, 3) and first[0, 0, 0] == 100
    again = cache.image(src, 32)
    assert len(calls) == 1 and np.array_equal(first, again)
    time.sleep(0.01)
    Image.fromarray(np.full((40, 60, 3), 200, np.uint8)).save(src)
    assert cache.image(src, 32)[0, 0, 0] == 200 and len(calls) == 2
    gray = tmp_path / "gray.png"
    Image.fromarray(np.full((50, 50), 7, np.uint8)).save(gray)
    stacked = cache.stack([str(src), str(gray)], 16, channels=3)
    assert stacked.shape == (2, 3, 16, 16) and stacked[1].max() == 7


def test_workspace_defaults_and_missing_data(demo_root, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DEFECTSYNTH_DATA", str(demo_root))
    ws = Workspace.open()
    assert ws.data == demo_root.resolve() and ws.root == (tmp_path / "runs" / demo_root.name).resolve()
    monkeypatch.delenv("DEFECTSYNTH_DATA")
    with pytest.raises(DefectsynthError, match="defectsynth data download"):
        Workspace.open()


def test_cli_split_and_automatic_split(demo_root, tmp_path):
    work = tmp_path / "w"
    result = runner.invoke(app, ["split", "--data", str(demo_root), "--work", str(work),
                                 "--split", "random", "--shots", "2", "--seed", "4"])
    assert result.exit_code == 0, result.output
    assert "bent_lead" in result.output and (work / "split.json").is_file()
    assert load_split(work / "split.json") == make_split(demo_root, shots=2, protocol="random", seed=4)

    said = []
    Workspace.open(demo_root, tmp_path / "w2").split(say=said.append)
    assert said and "No split yet" in said[0]

    bad = runner.invoke(app, ["split", "--data", str(tmp_path / "nowhere"), "--work", str(work)])
    assert bad.exit_code == 2 and "not found" in bad.output and "Traceback" not in bad.output
