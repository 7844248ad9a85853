"""Classifier training and evaluation: models, determinism, checkpoints, leakage, and train-eval end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from defectsynth.balance import RebalanceConfig
from defectsynth.cli import app
from defectsynth.data.cache import ImageCache
from defectsynth.data.manifest import Row
from defectsynth.errors import DefectsynthError, LeakageError
from defectsynth.train import models
from defectsynth.train.data import ImageSet, validation_fold, without_fold
from defectsynth.train.decide import class_scores
from defectsynth.train.evaluate import evaluate_heldout, predict_rows
from defectsynth.train.loop import TrainConfig, load_classifier, predict_outputs, train_classifier
from defectsynth.train.presets import preset

runner = CliRunner()
ORIGINAL = RebalanceConfig(strategy="none", sampler="none", loss="ce")


def fast_config(**kw) -> TrainConfig:
    return TrainConfig(**{**preset("fast"), "device": "cpu", **kw})


def train_once(workspace, out: Path, seed: int = 0):
    split = workspace.split(say=lambda _m: None)
    fold = validation_fold(split.real_rows("train"), seed=seed)
    rows = without_fold(split.real_rows("train"), fold)
    cache = ImageCache(workspace.cache_dir)
    result = train_classifier(rows, fold, split.classes, cache, fast_config(seed=seed), ORIGINAL, out,
                              progress=False)
    return split, rows, fold, cache, result


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v3_small_050"])
def test_classifier_head_and_grayscale_input(name):
    model, note = models.create_classifier(name, num_classes=5, in_channels=1, weights="none")
    assert "from scratch" in note
    assert model.eval()(torch.zeros(2, 1, 64, 64)).shape == (2, 5)


def test_weights_errors_are_one_line(monkeypatch, tmp_path):
    with pytest.raises(DefectsynthError, match="--model"):
        models.create_classifier("resnet9000", 5)
    with pytest.raises(DefectsynthError, match="no such file"):
        models.create_classifier("resnet18", 5, weights=str(tmp_path / "missing.safetensors"))

    def offline(name):
        raise OSError("Name or service not known")
    monkeypatch.setattr(models, "_imagenet_state", offline)  # nothing downloads in tests
    with pytest.raises(DefectsynthError, match="--weights imagenet: cannot load resnet18") as e:
        models.create_classifier("resnet18", 5, weights="imagenet")
    assert "\n" not in str(e.value)
    _model, note = models.create_classifier("resnet18", 5, weights="auto")
    assert "from scratch" in note and "not downloadable" in note


def test_same_seed_same_weights_and_checkpoint_round_trip(workspace, tmp_path):
    split, rows, fold, cache, a = train_once(workspace, tmp_path / "a")
    *_, b = train_once(workspace, tmp_path / "b")
    wa, wb = load_file(str(a.checkpoint / "model.safetensors")), load_file(str(b.checkpoint / "model.safetensors"))
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    assert a.history == [{**h, "train_s": a.history[i]["train_s"], "data_wait_s": a.history[i]["data_wait_s"]}
                         for i, h in enumerate(b.history)]
    *_, c = train_once(workspace, tmp_path / "c", seed=1)
    wc = load_file(str(c.checkpoint / "model.safetensors"))
    assert any(not torch.equal(wa[k], wc[k]) for k in wa if wa[k].is_floating_point())

    # the checkpoint loaded back predicts exactly what the same weights predict in memory
    model, config = load_classifier(a.checkpoint)
    assert config["classes"] == split.classes and config["model"] == preset("fast")["model"]
    test = split.real_rows("test")
    logits, maps = predict_outputs(model, ImageSet(test, split.classes, cache, config["size"], 3).images,
                                   torch.device("cpu"))
    direct = torch.from_numpy(class_scores(logits, maps, config["rule"]))
    preds = evaluate_heldout(a.checkpoint, split, rows + fold, cache, device="cpu")
    assert torch.equal(direct, torch.tensor(preds.scores, dtype=torch.float64))
    assert preds.y_pred == predict_rows(b.checkpoint, test, cache, device="cpu").y_pred


def test_validation_fold_and_training_never_touch_test_rows(workspace):
    split = workspace.split(say=lambda _m: None)
    test_paths = {r.path for r in split.real_rows("test")}
    fold = validation_fold(split.real_rows("train"), seed=0)
    assert fold and not test_paths & {r.path for r in fold}
    assert {r.label for r in fold} == set(split.classes)  # stratified: every class, real images only
    assert all(r.source == "real" for r in fold)
    # a synthetic image made from a validation image is dropped from training with it
    child = Row(path="/s/x.png", label=fold[-1].label, split="train", source="synthetic", method="cutpaste",
                parents=fold[-1].path)
    kept = without_fold(split.real_rows("train") + [child], fold)
    assert child not in kept and not {r.path for r in fold} & {r.path for r in kept}
    # evaluation refuses a model that trained on a held-out image
    with pytest.raises(LeakageError):
        evaluate_heldout(Path("unused"), split, kept + split.real_rows("test")[:1], ImageCache(workspace.cache_dir))


def cli(*args: str):
    result = runner.invoke(app, list(args))
    return result, result.output + (result.stderr if result.stderr_bytes is not None else "")


def report_path(out: str) -> Path:
    """The report.md a train-eval run printed (Rich may wrap the path)."""
    return Path(out.split("Report: ")[1].split(" (")[0].replace("\n", ""))


def test_train_eval_end_to_end_and_missing_arm(workspace):
    where = ["--data", str(workspace.data), "--work", str(workspace.root)]
    result, out = cli("train-eval", *where, "--preset", "fast")
    assert result.exit_code == 2 and "defectsynth rebalance" in out and "Traceback" not in out

    assert cli("generate", *where, "--class", "all", "--n", "21")[0].exit_code == 0  # 24 good - 3 real
    assert cli("rebalance", *where)[0].exit_code == 0
    result, out = cli("train-eval", *where, "--preset", "fast", "--splits", "2")
    assert result.exit_code == 0, out
    report = report_path(out)
    assert report.name == "report.md" and report.is_file()
    metrics = json.loads((report.parent / "metrics.json").read_text())
    assert any(report.parent.glob("figures/*.png"))
    assert "balanced" in out and "original" in out

    # each split's sub-workspace regenerated its synthetic images from that split's training defects only
    from defectsynth.balance import load_training_set
    from defectsynth.data.split import load_split
    from defectsynth.workspace import Workspace
    for k in (0, 1):
        sub = Workspace(workspace.data, workspace.root / "splits" / str(k))
        split = load_split(sub.split_json)
        assert split.protocol == "random" and split.seed == k
        rows, config = load_training_set(sub, "balanced")
        train_paths = {r.path for r in split.real_rows("train")}
        synthetic = [r for r in rows if r.source == "synthetic"]
        assert synthetic and all(set(r.parent_paths) <= train_paths for r in synthetic)
    assert json.dumps(metrics)  # every run's raw numbers are there
    # and every held-out image's decision, named by its place in the category folder
    for run in metrics["runs"]:
        assert len(run["predictions"]) == run["test_size"]
        assert all(p["image"].startswith("test/") and p["image"].split("/")[1] == p["label"]
                   for p in run["predictions"])
    assert "## Held-out images decided wrong" in report.read_text()

    # an ablation of the augmentation writes its own report beside the default run's, not over it
    result, out = cli("train-eval", *where, "--preset", "fast", "--arms", "original", "--augment", "fixed")
    assert result.exit_code == 0, out
    ablation = report_path(out)
    assert ablation.parent.name.endswith("-augfixed") and ablation.is_file() and report.is_file()

    # more seeds for a comparison already run: --first-seed trains exactly the models the longer run trains
    classifiers = workspace.root / "classifiers"
    assert cli("train-eval", *where, "--preset", "fast", "--arms", "original", "--seeds", "2")[0].exit_code == 0
    result, out = cli("train-eval", *where, "--preset", "fast", "--arms", "original", "--first-seed", "1")
    assert result.exit_code == 0, out
    later = report_path(out)
    assert later.parent.name.endswith("-from-seed1")
    assert [r["seed"] for r in json.loads((later.parent / "metrics.json").read_text())["runs"]] == [1]
    both, alone = (next(classifiers.glob(f"original-1x{n}-*{tail}")) / "original" / "split0-seed1" / "model.safetensors"
                   for n, tail in ((2, "ep"), (1, "-from-seed1")))
    wa, wb = load_file(str(both)), load_file(str(alone))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    result, out = cli("train-eval", *where, "--preset", "fast", "--first-seed", "-1")
    assert result.exit_code != 0 and "--first-seed -1: must be 0 or more" in out and "Traceback" not in out
