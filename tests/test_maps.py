"""Defect maps: the dense head, masks as supervision, decision rules, the three tasks' metrics, predict.

Determinism of the map model is tested in test_train.py (the fast preset is a map model)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from defectsynth.balance import RebalanceConfig
from defectsynth.cli import app
from defectsynth.data.cache import ImageCache
from defectsynth.data.layout import GOOD
from defectsynth.data.manifest import Row
from defectsynth.errors import DefectsynthError
from defectsynth.io import write_png
from defectsynth.train import folds, loop, models
from defectsynth.train.data import NO_MASK, Augment, ImageSet, cell_targets
from defectsynth.train.decide import FALSE_ALARM_TARGET, calibrate, class_scores, decide
from defectsynth.train.evaluate import heldout_metrics, predict_images, predict_rows
from defectsynth.train.loop import TrainConfig, flip_views, load_classifier, predict_outputs, train_classifier
from defectsynth.train.metrics import detection_metrics, pixel_metrics
from defectsynth.train.presets import preset
from defectsynth.workspace import Workspace

runner = CliRunner()
ORIGINAL = RebalanceConfig(strategy="none", sampler="none", loss="ce")
MAP = "mobilenet_v3_small_050_map"


@pytest.fixture(scope="module")
def trained(demo_root, tmp_path_factory):
    """One tiny map model on the demo split (none mode: every shot trains, goods held back)."""
    ws = Workspace.open(demo_root, tmp_path_factory.mktemp("maps") / "work")
    split = ws.split(say=lambda _m: None)
    spend = folds.plan(split.real_rows("train"), "none", seed=0)
    rows = [r for r in split.real_rows("train") if r not in spend.held_back]
    cache = ImageCache(ws.cache_dir)
    config = TrainConfig(**{**preset("fast"), "model": MAP, "device": "cpu", "epochs": 3})
    result = train_classifier(rows, spend.val, split.classes, cache, config, ORIGINAL, ws.root / "model",
                              progress=False, calibration_rows=spend.calibration)
    return ws, split, rows, cache, result


@pytest.mark.parametrize("channels", [1, 3])
def test_map_model_shapes_any_channels_and_size(channels):
    model, _note = models.create_classifier(MAP, num_classes=5, in_channels=channels, weights="none")
    logits, maps = models.model_outputs(model.eval()(torch.zeros(2, channels, 64, 96)))
    assert logits.shape == (2, 5) and maps.shape == (2, 5, 16, 24)  # stride 4
    plain, _ = models.create_classifier("mobilenet_v3_small_050", 5, channels, "none")
    assert models.model_outputs(plain.eval()(torch.zeros(2, channels, 64, 64)))[1] is None


def test_region_head_names_from_where_the_map_finds_a_defect():
    torch.manual_seed(0)
    model, _note = models.create_classifier(MAP, num_classes=5, weights="none")
    model.eval()
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        model.region_head.bias.zero_()
        model.map_head.bias.copy_(torch.tensor([50.0, 0, 0, 0, 0]))  # every cell background
        background = model(x).logits
        model.map_head.bias.copy_(torch.tensor([-50.0, 50, 0, 0, 0]))  # every cell defective
        found = model(x).logits
        global_only = model.classifier(torch.flatten(model.avgpool(model._taps(x)[-1]), 1))
    assert torch.allclose(background, global_only, atol=1e-4)  # a part with no defective cell: no say
    assert not torch.allclose(found, global_only, atol=1e-3)
    # a checkpoint saved before the region head loads and predicts by its global head alone
    old = {k: v for k, v in model.state_dict().items() if not k.startswith("region_head.")}
    again, _note = models.create_classifier(MAP, num_classes=5, weights="none")
    models.load_state(again, old)
    with torch.no_grad():
        assert again.region_head is None and torch.allclose(again.eval()(x).logits, global_only, atol=1e-5)
    model.map_head.bias.data.zero_()
    model(x).logits.sum().backward()  # the image loss trains the decoder's features, never the map's head
    assert model.map_head.weight.grad is None and model.region_head.weight.grad.abs().sum() > 0


def test_map_model_needs_good_as_its_background_channel(trained, tmp_path):
    ws, split, rows, cache, _result = trained
    classes = [*split.defect_classes, GOOD]
    config = TrainConfig(**{**preset("fast"), "model": MAP, "device": "cpu", "epochs": 1})
    with pytest.raises(DefectsynthError, match="needs 'good' first"):
        train_classifier(rows, [], classes, cache, config, ORIGINAL, tmp_path / "model", progress=False)


@pytest.mark.parametrize("mask_side", [64, 16])
def test_augment_moves_the_mask_with_its_image(mask_side):
    # a bright square; its mask at image resolution or at the map's (1/4)
    x = torch.zeros(8, 1, 64, 64)
    x[:, :, 20:36, 28:44] = 1
    masks = torch.zeros(8, 1, mask_side, mask_side, dtype=torch.uint8)
    s = mask_side / 64
    masks[:, :, int(20 * s):int(36 * s), int(28 * s):int(44 * s)] = 200
    aug = Augment(degrees=30, translate=0.15, scale=0.1, brightness=0, contrast=0)
    moved_x, moved = aug(x, torch.Generator().manual_seed(3), masks)
    assert torch.equal(moved_x, aug(x, torch.Generator().manual_seed(3)))  # masks do not change the images
    small = torch.nn.functional.adaptive_avg_pool2d(moved_x, mask_side)
    inside, outside = small[moved > 0], small[moved == 0]
    assert inside.numel() > 0 and inside.mean() > 0.8 and outside.mean() < 0.1
    assert set(moved.unique().tolist()) <= {0, 200}  # nearest: no blended coverage values


def test_cell_targets_good_defect_and_missing_mask():
    masks = torch.zeros(3, 1, 8, 8, dtype=torch.uint8)
    masks[1, :, :4, :4] = 254  # covers the top-left cell of a 2 x 2 map
    masks[2] = NO_MASK
    target = cell_targets(masks, torch.tensor([0, 3, 2]), (2, 2), good=0)
    assert target[0].eq(0).all() and target[2].eq(-100).all()
    assert target[1].tolist() == [[3, 0], [0, 0]]


def test_map_loss_falls_and_checkpoint_round_trip(trained):
    ws, split, rows, cache, result = trained
    losses = [h["train_loss"] for h in result.history]
    assert losses[-1] < losses[0]
    model, config = load_classifier(result.checkpoint)
    assert config["rule"] in ("image", "map", "combined") and set(config["thresholds"]) == {"image", "map",
                                                                                           "combined"}
    preds = predict_rows(result.checkpoint, split.real_rows("test"), cache, device="cpu")
    metrics, rules = heldout_metrics(preds, cache)
    for key in ("image_auroc", "pixel_auroc", "pixel_ap", "pixel_f1_max", "balanced_accuracy"):
        assert 0 <= metrics[key] <= 1
    assert set(rules) == {f"{r}/{d}" for r in ("image", "map", "combined") for d in ("argmax", "calibrated")}
    assert set(metrics["pixel_per_class"]) == set(split.defect_classes)
    assert (config["rule"], config["decision"]) == ("combined", "argmax")  # the default (train/decide.py)


def test_predict_decides_as_the_checkpoint_records(trained):
    """The decision a checkpoint was evaluated with is the one predict applies, whatever today's default:
    the argmax ignores the threshold; a checkpoint saved before decisions were recorded is calibrated."""
    _ws, split, _rows, cache, result = trained
    model, config = load_classifier(result.checkpoint)
    images = ImageSet(split.real_rows("test"), split.classes, cache, config["size"], config["in_channels"]).images
    good = split.classes.index(GOOD)
    for rule in ("image", "map"):
        decided = {}
        for t in (-1.0, 2.0):  # every image exceeds the first threshold (none is good), none the second
            made = {**config, "rule": rule, "thresholds": {r: t for r in config["thresholds"]}}
            older = {k: v for k, v in made.items() if k != "decision"}
            for decision, saved in (("argmax", {**made, "decision": "argmax"}),
                                    ("calibrated", {**made, "decision": "calibrated"}), ("older", older)):
                _logits, _maps, scores, labels = predict_images(model, saved, images, "cpu")
                decided[decision, t] = labels.tolist()
            assert decided["calibrated", t] == decided["older", t] == decide(scores, good, t).tolist()
        assert decided["argmax", -1.0] == decided["argmax", 2.0] == decide(scores, good).tolist()
        assert decided["calibrated", -1.0] != decided["calibrated", 2.0], rule  # else the test shows nothing


def test_a_mirror_trained_model_sees_a_part_and_its_mirror_alike(trained, tmp_path, monkeypatch):
    ws, split, _rows, cache, _result = trained
    # `fold`: a real shot per type also selects the epoch, so that every path a prediction takes is seen
    spend = folds.plan(split.real_rows("train"), "fold", seed=0)
    rows = [r for r in split.real_rows("train") if r not in spend.held_back]
    config = TrainConfig(**{**preset("fast"), "model": MAP, "device": "cpu", "epochs": 3, "hflip": True})
    assert flip_views(config) == ((), (3,))
    assert flip_views(TrainConfig(hflip=True, vflip=True)) == ((), (3,), (2,), (2, 3))
    seen = []  # the views of every prediction during training: each epoch's validation, the thresholds

    def spy(*args, flips=((),), **kwargs):
        seen.append(flips)
        return predict_outputs(*args, flips=flips, **kwargs)
    monkeypatch.setattr(loop, "predict_outputs", spy)
    mirrored = train_classifier(rows, spend.val, split.classes, cache, config, ORIGINAL, tmp_path / "m",
                                progress=False, calibration_rows=spend.calibration)
    assert seen == [((), (3,))] * (config.epochs + 1)
    model, saved = load_classifier(mirrored.checkpoint)
    assert saved["views"] == [[], [3]] and saved["calibration"] == [r.path for r in spend.calibration]
    assert saved["false_alarm_target"] == FALSE_ALARM_TARGET  # what bench/ re-sets the thresholds at
    one_view = {**saved, "views": [[]]}  # also what a checkpoint saved before views were recorded gets

    def outputs(views, rows, mirror=False):
        images = ImageSet(rows, split.classes, cache, saved["size"], saved["in_channels"]).images
        return predict_images(model, views, images.flip(-1) if mirror else images, "cpu")[:2]

    test, good = split.real_rows("test"), split.classes.index(GOOD)
    for views, alike in ((saved, True), (one_view, False)):
        (logits, maps), (mirror_logits, mirror_maps) = outputs(views, test), outputs(views, test, mirror=True)
        assert maps.std(dim=0).max() > 1e-3  # the map depends on the image (a 3-epoch image head may not)
        # averaged over the image and its mirror: the mirror image gets the same scores, its map mirrored
        assert torch.allclose(maps, mirror_maps.flip(-1), atol=1e-4) == alike
        assert torch.allclose(logits, mirror_logits, atol=1e-4) or not alike
        # the thresholds were set on held-back good images seen the same way as every later image
        threshold = calibrate(1 - class_scores(*outputs(views, spend.calibration), "map", good)[:, good],
                              saved["false_alarm_target"])
        assert (threshold == saved["thresholds"]["map"]) == alike


def test_pixel_and_detection_metrics_by_hand():
    m = pixel_metrics(np.array([[0.9, 0.8], [0.3, 0.1]]), np.array([[True, False], [True, False]]))
    assert m["pixel_auroc"] == pytest.approx(0.75)  # 3 of the 4 (defect, background) pairs ordered right
    assert m["pixel_ap"] == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)
    assert m["pixel_f1_max"] == pytest.approx(0.8)  # threshold 0.3: precision 2/3, recall 1
    assert pixel_metrics(np.zeros((1, 2, 2)), np.zeros((1, 2, 2), bool))["pixel_auroc"] is None
    d = detection_metrics([False, False, True, True], [0.1, 0.6, 0.5, 0.9], threshold=0.55)
    assert d["image_auroc"] == pytest.approx(0.75)
    assert d["recall_at_threshold"] == 0.5 and d["false_alarms_at_threshold"] == 0.5


def test_decision_rules_and_calibration_by_hand():
    assert calibrate(np.linspace(0, 1, 21), false_alarms=0.1) == pytest.approx(0.9)
    assert calibrate(np.array([])) is None
    scores = np.array([[0.6, 0.3, 0.1], [0.5, 0.1, 0.4], [0.9, 0.02, 0.08]])
    assert decide(scores).tolist() == [0, 0, 0]
    assert decide(scores, threshold=0.3).tolist() == [1, 2, 0]  # defect score 0.4, 0.5, 0.1
    logits = torch.zeros(1, 3)
    maps = torch.full((1, 3, 2, 2), -10.0)
    maps[0, 0] = 10
    maps[0, 0, 0, 1], maps[0, 2, 0, 1] = -10, 10  # one cell of class 2
    from_map = class_scores(logits, maps, "map")
    assert from_map[0, 2] == pytest.approx(1, abs=1e-6) and from_map[0, 0] == pytest.approx(0, abs=1e-6)
    combined = class_scores(logits, maps, "combined")
    assert combined[0, 2] == pytest.approx((1 / 3 + 1) / 2, abs=1e-6)


def test_val_modes_spend_the_shots(workspace):
    real = workspace.split(say=lambda _m: None).real_rows("train")
    none, fold, kfold = (folds.plan(real, mode, seed=0) for mode in ("none", "fold", "kfold"))
    assert all(r.label == GOOD for r in none.held_back) and none.val == [] and none.calibration
    assert {r.label for r in fold.val} - {GOOD} and fold.calibration == none.calibration
    assert len(kfold.kfolds) == 3 and kfold.val == []
    shots = [[r.path for r in f if r.label != GOOD] for f in kfold.kfolds]
    assert all(len(s) == 4 for s in shots) and len({p for s in shots for p in s}) == 12  # each shot once
    with pytest.raises(DefectsynthError, match="--val"):
        folds.plan(real, "loo", 0)
    histories = [[{"val_balanced_accuracy": v} for v in h] for h in ([0.2, 0.5, 0.1], [0.4, 0.3, 0.9])]
    assert folds.best_epoch(histories) == 3  # mean 0.3, 0.4, 0.5


def test_predict_cli_on_a_folder_and_its_errors(trained, tmp_path):
    ws, split, _rows, _cache, result = trained
    folder = Path(split.real_rows("test")[0].path).parent
    out = tmp_path / "pred"
    res = runner.invoke(app, ["predict", str(result.checkpoint.parent), str(folder), "--out", str(out),
                              "--device", "cpu"])
    assert res.exit_code == 0, res.output
    rows = list(csv.DictReader((out / "predictions.csv").open()))
    images = [p for p in folder.iterdir() if p.suffix == ".png"]
    assert len(rows) == len(images) and {r["label"] for r in rows} <= set(split.classes)
    assert {f"score_{c}" for c in split.classes} | {"path", "label", "defect_area"} == set(rows[0])
    assert all(0 <= float(r["defect_area"]) <= 1 for r in rows)
    assert len(list((out / "overlays").glob("*.png"))) == len(images)

    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    gray = tmp_path / "gray.png"
    write_png(gray, np.zeros((32, 32), np.uint8))
    for args, message in ([str(tmp_path / "nope"), str(folder)], "no trained model"), \
                         ([str(result.checkpoint), str(bad)], "unreadable"), \
                         ([str(result.checkpoint), str(gray)], "1 channel"), \
                         ([str(result.checkpoint), str(tmp_path / "*.jpg")], "no image found"):
        res = runner.invoke(app, ["predict", *args, "--out", str(tmp_path / "p2")])
        text = res.output + (res.stderr if res.stderr_bytes is not None else "")
        assert res.exit_code == 2 and message in text and "Traceback" not in text, text
    assert not (tmp_path / "p2" / "predictions.csv").exists()


def test_defect_without_mask_is_left_out_of_the_map_loss(trained):
    _ws, split, _rows, cache, _result = trained
    row = next(r for r in split.real_rows("train") if r.label != GOOD)
    bare = Row(**{**row.__dict__, "mask": ""})
    data = ImageSet([row, bare], split.classes, cache, 48, 3, masks=True)
    assert data.masks[0].max() > 0 and data.masks[0].max() < NO_MASK and data.masks[1].eq(NO_MASK).all()
