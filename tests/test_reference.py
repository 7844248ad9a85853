"""The reference difference channel: it marks what differs from good parts, never compares an image with
itself or the good image it was made from, follows a part that lies at any angle, and travels with a
saved model to predict."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from sklearn.metrics import roc_auc_score
from typer.testing import CliRunner

from defectsynth.balance import RebalanceConfig
from defectsynth.cli import app
from defectsynth.data.cache import ImageCache
from defectsynth.data.demo import make_demo
from defectsynth.data.layout import GOOD
from defectsynth.data.manifest import Row
from defectsynth.errors import DefectsynthError
from defectsynth.train import folds
from defectsynth.train.evaluate import predict_rows
from defectsynth.train.loop import TrainConfig, load_classifier, train_classifier
from defectsynth.train.presets import preset
from defectsynth.train.reference import CANDIDATES, CHANNELS, Reference, use_reference
from defectsynth.workspace import Workspace

SIZE = 64


def peak(channels: np.ndarray) -> float:
    """Mean of the top 1% of the distance channel: how much of the image differs from every good part."""
    values = np.sort(channels[0].ravel().astype(float))
    return float(values[-max(1, values.size // 100):].mean())


def test_difference_marks_the_defect_and_not_good_parts(workspace):
    split = workspace.split(say=lambda _m: None)
    cache = ImageCache(workspace.cache_dir)
    goods = [r.path for r in split.real_rows("train") if r.label == GOOD]
    reference = Reference(goods, 128, cache)  # the demo's own size: its thin leads are a pixel or two wide
    test = split.real_rows("test")
    scores = [peak(reference.difference(r.path)) for r in test]
    assert roc_auc_score([r.label != GOOD for r in test], scores) >= 0.8
    inside, outside = [], []
    for r in test:
        if r.label != GOOD and r.mask:
            d, m = reference.difference(r.path)[0].astype(float), cache.mask(r.mask, 128) > 0
            inside.append(d[m].mean())
            outside.append(d[~m].mean())
    assert np.median(inside) > 3 * np.median(outside)


def test_an_image_is_never_compared_with_itself_or_its_parents(workspace, tmp_path):
    split = workspace.split(say=lambda _m: None)
    cache = ImageCache(workspace.cache_dir)
    goods = sorted(r.path for r in split.real_rows("train") if r.label == GOOD)
    reference = Reference(goods, SIZE, cache)
    good = goods[0]
    assert peak(reference.difference(good)) < 1  # compared with itself: nothing differs
    alone = reference.difference(good, {good})
    assert peak(alone) > 5
    # the same file spelled another way is still itself
    assert np.array_equal(reference.difference(good, {str(Path(good).parent / "." / Path(good).name)}), alone)
    # a synthetic image is compared without its parents: a copy of a good image, made "from" it
    copy = tmp_path / "copy.png"
    shutil.copy(good, copy)
    row = Row(path=str(copy), label="cut_lead", split="train", source="synthetic", method="cutpaste",
              parents=good, mask="", seed=0, params="{}")
    assert np.array_equal(reference.stack([row])[0], alone)
    train_good = Row(path=good, label=GOOD, split="train", source="real", method="real", parents="", mask="",
                     seed=0, params="{}")
    assert np.array_equal(reference.stack([train_good])[0], alone)


def test_channels_computed_in_worker_processes_are_the_ones_computed_here(workspace, tmp_path, monkeypatch):
    monkeypatch.setattr("defectsynth.workers.PER_WORKER", 1)  # a pool even for a handful of images
    monkeypatch.setattr("defectsynth.workers.usable_cpus", lambda: 2)
    split = workspace.split(say=lambda _m: None)
    goods = sorted(r.path for r in split.real_rows("train") if r.label == GOOD)
    monkeypatch.setattr("defectsynth.train.reference.CANDIDATES", len(goods) // 3)  # the coarse look chooses
    rows = split.real_rows("train") + split.real_rows("test")
    here = Reference(goods, SIZE).stack(rows)  # no cache: computed in this process
    cache = ImageCache(tmp_path / "cache")
    warmed = Reference(goods, SIZE, cache)
    warmed.warm(rows, progress=False)

    def computed_again(*_args):
        raise AssertionError("stack() recomputed a channel warm() should have cached")

    monkeypatch.setattr(Reference, "compare", computed_again)
    assert np.array_equal(warmed.stack(rows), here)
    # and what evaluation reads, through the reference a saved model rebuilds
    saved = Reference.of_model({"reference": warmed.describe(), "size": SIZE}, cache)
    assert np.array_equal(saved.stack(rows), here)


@pytest.fixture(scope="module")
def rotated_root(tmp_path_factory) -> Path:
    return make_demo(tmp_path_factory.mktemp("rot") / "screw", seed=0, kind="rotated", size=128, n_train_good=12,
                     n_test_good=4, n_per_defect=3, progress=False)


def test_a_rotating_part_is_compared_after_turning_the_good_parts_onto_it(rotated_root):
    goods = sorted(str(p) for p in (rotated_root / "train" / "good").glob("*.png"))
    test = sorted((rotated_root / "test").glob("*/*.png"))
    truth = [p.parent.name != GOOD for p in test]
    following = Reference(goods, 128, follow_pose=True)
    fixed = Reference(goods, 128)
    good_peaks = {name: [peak(r.difference(str(p))) for p in test if p.parent.name == GOOD]
                  for name, r in (("following", following), ("fixed", fixed))}
    # good parts at other angles look different from every good image until the good images are turned
    assert np.median(good_peaks["following"]) < 0.6 * np.median(good_peaks["fixed"])
    assert roc_auc_score(truth, [peak(following.difference(str(p))) for p in test]) >= 0.9


def test_reference_choice():
    assert use_reference("auto", "fixed") and use_reference("auto", "rotating")
    assert not use_reference("auto", "texture") and not use_reference("off", "fixed")
    assert use_reference("on", "texture")
    with pytest.raises(DefectsynthError, match="--reference 'maybe'"):
        use_reference("maybe", "fixed")


def test_saved_model_carries_its_reference_to_predict(demo_root, tmp_path):
    ws = Workspace.open(demo_root, tmp_path / "work")
    split = ws.split(say=lambda _m: None)
    spend = folds.plan(split.real_rows("train"), "none", seed=0)
    rows = [r for r in split.real_rows("train") if r not in spend.held_back]
    cache = ImageCache(ws.cache_dir)
    config = TrainConfig(**{**preset("fast"), "device": "cpu", "epochs": 1})
    goods = [r.path for r in split.real_rows("train") if r.label == GOOD]
    result = train_classifier(rows, [], split.classes, cache, config,
                              RebalanceConfig(strategy="none", sampler="none", loss="ce"), ws.root / "model",
                              progress=False, calibration_rows=spend.calibration,
                              reference=Reference(goods, config.size, cache))
    model, saved = load_classifier(result.checkpoint)
    assert saved["reference"]["paths"] and model.features[0][0].in_channels == 3 + CHANNELS
    test = split.real_rows("test")
    evaluated = predict_rows(result.checkpoint, test, cache, device="cpu")
    res = CliRunner().invoke(app, ["predict", str(result.checkpoint), *[r.path for r in test],
                                   "--out", str(tmp_path / "pred"), "--device", "cpu"])
    assert res.exit_code == 0, res.output
    predicted = list(csv.DictReader((tmp_path / "pred" / "predictions.csv").open()))
    # predict decodes each file itself, without the workspace cache: the same inputs, the same answers
    assert [r["label"] for r in predicted] == evaluated.y_pred
    np.testing.assert_allclose([float(r[f"score_{GOOD}"]) for r in predicted],
                               [s[split.classes.index(GOOD)] for s in evaluated.scores], atol=1e-3)

    gone = tmp_path / "gone"
    shutil.copytree(result.checkpoint, gone)
    text = (gone / "config.json").read_text().replace(saved["reference"]["paths"][0], str(tmp_path / "nope.png"))
    (gone / "config.json").write_text(text)
    res = CliRunner().invoke(app, ["predict", str(gone), test[0].path, "--out", str(tmp_path / "p2")])
    assert res.exit_code == 2 and "is gone" in res.output and "Traceback" not in res.output, res.output

    other = tmp_path / "other"  # made with other comparison settings: its channels could not be rebuilt
    shutil.copytree(result.checkpoint, other)
    changed = json.loads((other / "config.json").read_text())
    changed["reference"]["closest"] += 2
    (other / "config.json").write_text(json.dumps(changed))
    res = CliRunner().invoke(app, ["predict", str(other), test[0].path, "--out", str(tmp_path / "p3")])
    assert res.exit_code == 2 and "train the model again" in res.output and "Traceback" not in res.output, res.output


def test_signed_channel_tells_added_from_removed_material(workspace):
    """A bright lead where a good part has dark board reads above 128; board where a lead should be, below."""
    split = workspace.split(say=lambda _m: None)
    cache = ImageCache(workspace.cache_dir)
    goods = sorted(r.path for r in split.real_rows("train") if r.label == GOOD)
    reference = Reference(goods[1:], 128, cache)
    image = cache.image(goods[0], 128).copy()
    lead = reference.compare(image)[1]
    gray = (image.mean(2) if image.ndim == 3 else image).astype(np.float32)
    y, x = np.unravel_index(np.argmax(cv2.blur(gray, (9, 9))[8:-8, 8:-8]), (128 - 16, 128 - 16))
    y, x = y + 8, x + 8  # the centre of the brightest 9 x 9 block: a lead or the part's highlight
    brighter, darker = image.copy(), image.copy()
    brighter[4:12, 4:12] = 255  # bright metal on the board's corner
    darker[y - 4:y + 5, x - 4:x + 5] = 0  # that block made black
    assert reference.compare(brighter)[1][5:11, 5:11].mean() > 150
    assert reference.compare(darker)[1][y - 2:y + 3, x - 2:x + 3].mean() < 100
    assert abs(float(np.median(lead)) - 128) < 4


def _board_with_lead(x: int | None, size: int = 128) -> np.ndarray:
    """Plain copper board, a dark hole row at the bottom, a black body the good parts register on, and a grey
    vertical lead 4 px wide centred near x below it."""
    image = np.zeros((size, size, 3), np.uint8)
    image[:] = (196, 124, 92)
    for cx in range(12, size, 26):
        cv2.circle(image, (cx, 110), 6, (30, 22, 22), -1)
    image[4:20, 36:92] = (20, 20, 24)
    if x is not None:
        image[20:100, x - 2:x + 2] = (170, 170, 175)
    return image


def test_a_missing_lead_shows_though_good_leads_vary_in_place(tmp_path):
    """Good parts whose lead lies a pixel or two apart: the part without its lead must still differ from
    them where the lead belongs (a per-pixel minimum over the good parts finds board at each pixel in one
    of them and sees nothing), while a good part with its lead differs little."""
    paths = []
    for i, x in enumerate([61, 62, 63] * 6):
        paths.append(tmp_path / f"good{i}.png")
        cv2.imwrite(str(paths[-1]), cv2.cvtColor(_board_with_lead(x), cv2.COLOR_RGB2BGR))
    reference = Reference([str(p) for p in paths], 128)
    missing = reference.compare(_board_with_lead(None))[0]
    good = reference.compare(_board_with_lead(62))[0]
    assert missing[30:90, 60:64].mean() > 8, missing[30:90, 56:68].mean(axis=0)
    assert good[30:90, 56:68].mean() < 2, good[30:90, 56:68].mean(axis=0)


def test_a_part_lit_like_few_good_images_is_compared_with_those(tmp_path, monkeypatch):
    """Of 100 good parts 2 were lit more warmly, and they sort where a spread of CANDIDATES over the sorted
    good images does not reach: a part lit like them must be compared with them (the coarse look ranks the
    whole pool) and differ little, where the spread alone would show every board pixel as changed."""
    paths = []
    for i in range(100):
        image = _board_with_lead(62)
        if i in (49, 50):  # past the first 32, and linspace(0, 99, 32) picks 48 and 51
            image[:] = np.clip(image.astype(int) + (30, 18, 6), 0, 255).astype(np.uint8)
        paths.append(tmp_path / f"good{i:03d}.png")
        cv2.imwrite(str(paths[-1]), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    warm = cv2.imread(str(paths[49]))[:, :, ::-1].copy()
    pooled = Reference([str(p) for p in paths], 128).compare(warm, [str(paths[49].resolve())])
    monkeypatch.setattr("defectsynth.train.reference.POOL", CANDIDATES)  # the spread alone
    spread = Reference([str(p) for p in paths], 128).compare(warm, [str(paths[49].resolve())])
    assert np.median(pooled[0]) < 2, np.median(pooled[0])
    assert np.median(spread[0]) > 8, np.median(spread[0])
