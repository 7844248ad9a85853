"""Rebalancing: exact counts per strategy and target, the leakage rule, determinism, losses, samplers, CLI.

The demo workspace's train split has 24 good images and 3 real images of each of 4 defect types.
Synthetic rows are written by hand here (tiny PNGs with provenance), except in the --generate test.
"""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from defectsynth.balance import (
    RebalanceConfig,
    load_training_set,
    make_config,
    make_loss,
    make_sampler,
    rebalance,
)
from defectsynth.balance.strategies import apportion
from defectsynth.cli import app
from defectsynth.data.manifest import Row, read_manifest, write_manifest
from defectsynth.errors import DefectsynthError, LeakageError
from defectsynth.io import write_png
from defectsynth.synth.generate import default_method, read_synthetic

DEFECTS = ["bent_lead", "cut_lead", "damaged_case", "misplaced"]
TINY = np.zeros((4, 4, 3), np.uint8)


def synthetic_row(ws, split, label, method, i, parents=None, path=None):
    path = path or ws.synthetic_dir(label, method) / f"{i:04d}.png"
    write_png(path, TINY)
    if parents is None:
        parents = [split.train_defects(label)[i % 3].path, split.real_rows("train")[i % 5].path]
    return Row(path=str(path), label=label, split="train", source="synthetic", method=method,
               parents=";".join(parents), seed="0", params="{}")


def add_synthetic(ws, split, n, methods=None, extra=(), start=0):
    """n more synthetic rows per defect class and method (default: each class's default method)."""
    rows = list(read_synthetic(ws))
    for label in DEFECTS:
        for method in methods or [default_method(label)]:
            rows += [synthetic_row(ws, split, label, method, i) for i in range(start, start + n)]
    write_manifest(ws.synthetic_csv, rows + list(extra))


def per_class(rows):
    real = Counter(r.label for r in rows if r.source == "real")
    synthetic = Counter(r.label for r in rows if r.source == "synthetic")
    return {label: (real[label], synthetic[label]) for label in ["good", *DEFECTS]}


def run(ws, **options):
    split = ws.split(say=lambda _msg: None)
    return rebalance(ws, split, make_config(**options), name="test", progress=False)


def expect(good, defect):
    return {"good": good, **{label: defect for label in DEFECTS}}


@pytest.mark.parametrize("options, counts", [
    ({"strategy": "none"}, expect((24, 0), (3, 0))),
    ({"strategy": "oversample"}, expect((24, 0), (24, 0))),
    ({"strategy": "oversample", "target": "sqrt"}, expect((24, 0), (8, 0))),  # round(sqrt(3 * 24))
    ({"strategy": "oversample", "target": "10"}, expect((24, 0), (10, 0))),
    ({"strategy": "undersample"}, expect((3, 0), (3, 0))),
    ({"strategy": "undersample", "target": "sqrt"}, expect((8, 0), (3, 0))),  # round(sqrt(24 * 3))
    ({"strategy": "undersample", "target": 10}, expect((10, 0), (3, 0))),
    ({"strategy": "synthetic"}, expect((24, 0), (3, 21))),
    ({"strategy": "synthetic", "target": "sqrt"}, expect((24, 0), (3, 5))),
    ({"strategy": "synthetic", "target": "12"}, expect((24, 0), (3, 9))),
    ({"strategy": "synthetic", "real_ratio": 0.5}, expect((24, 0), (12, 12))),
    ({"strategy": "hybrid"}, expect((7, 0), (3, 4))),  # auto: the mean class count, round(36 / 5)
    ({"strategy": "hybrid", "target": "sqrt"}, expect((13, 0), (3, 2))),  # round(sqrt(24*7)), round(sqrt(3*7))
    ({"strategy": "hybrid", "target": "10"}, expect((10, 0), (3, 7))),
])
def test_exact_counts(workspace, options, counts):
    split = workspace.split(say=lambda _msg: None)
    add_synthetic(workspace, split, 25)
    result = run(workspace, **options)
    assert per_class(result.rows) == counts
    train = {r.path for r in split.real_rows("train")}
    heldout = split.heldout_paths()
    assert all(r.path in train for r in result.rows if r.source == "real")
    assert not any(r.path in heldout or set(r.parent_paths) & heldout for r in result.rows)
    # the original set is always written, and is the train split as it is
    assert read_manifest(workspace.training_csv("original")) == split.real_rows("train")
    assert [e["after"]["total"] for e in result.table] == [sum(counts[c]) for c in ["good", *DEFECTS]]


def test_reals_are_repeated_evenly_and_kept(workspace):
    split = workspace.split(say=lambda _msg: None)
    add_synthetic(workspace, split, 25)
    rows = run(workspace, real_ratio=0.5).rows
    reals = Counter(r.path for r in rows if r.source == "real" and r.label == "bent_lead")
    assert sorted(reals.values()) == [4, 4, 4]  # 12 real rows from 3 reals


def test_mix_apportions_methods(workspace):
    split = workspace.split(say=lambda _msg: None)
    add_synthetic(workspace, split, 10, methods=["cutpaste", "pose"])
    rows = run(workspace, mix="cutpaste=0.75,pose=0.25", target=11).rows
    got = Counter((r.label, r.method) for r in rows if r.source == "synthetic")
    assert got == {(label, m): n for label in DEFECTS for m, n in (("cutpaste", 6), ("pose", 2))}
    with pytest.raises(DefectsynthError, match="generator 'cutpast' is unknown"):
        run(workspace, methods="cutpast", target=11)
    assert apportion(7, {"a": 0.5, "b": 0.5}) == {"a": 4, "b": 3}
    assert apportion(10, {"a": 1 / 3, "b": 1 / 3, "c": 1 / 3}) == {"a": 4, "b": 3, "c": 3}


def test_class_methods_override_methods_for_their_classes(workspace):
    split = workspace.split(say=lambda _msg: None)
    add_synthetic(workspace, split, 10, methods=["cutpaste", "pose"])
    rows = run(workspace, methods="cutpaste", class_methods="misplaced=pose", target=11).rows
    got = Counter((r.label, r.method) for r in rows if r.source == "synthetic")
    assert got == {**{(label, "cutpaste"): 8 for label in DEFECTS[:3]}, ("misplaced", "pose"): 8}
    rows = run(workspace, class_methods={"damaged_case": ["cutpaste", "pose"]}, target=11).rows
    got = Counter((r.label, r.method) for r in rows if r.source == "synthetic" and r.label == "damaged_case")
    assert got == {("damaged_case", "cutpaste"): 4, ("damaged_case", "pose"): 4}
    with pytest.raises(DefectsynthError, match="--class-methods: 'scratch' is not a defect class"):
        run(workspace, class_methods="scratch=pose", target=11)


def test_missing_synthetic_names_the_generate_command(workspace):
    split = workspace.split(say=lambda _msg: None)
    with pytest.raises(DefectsynthError) as e:
        run(workspace)
    msg = str(e.value)
    assert "\n" not in msg and "--generate" in msg
    assert f"'defectsynth generate --class all --n 21 --data {workspace.data} --work {workspace.root}'" in msg

    add_synthetic(workspace, split, 5)  # then bent_lead complete, cut_lead empty, the others 5 of 21
    bent = [synthetic_row(workspace, split, "bent_lead", default_method("bent_lead"), i) for i in range(5, 21)]
    write_manifest(workspace.synthetic_csv, [r for r in read_synthetic(workspace) if r.label != "cut_lead"] + bent)
    with pytest.raises(DefectsynthError) as e:
        run(workspace, seed=4)
    msg = str(e.value)
    assert "bent_lead" not in msg
    assert f"cut_lead needs 21 {default_method('cut_lead')} images (has 0)" in msg
    assert f"damaged_case needs 21 {default_method('damaged_case')} images (has 5)" in msg
    assert f"'defectsynth generate --class cut_lead --n 21 --method {default_method('cut_lead')} --seed 4 " \
           f"--data {workspace.data} --work {workspace.root} && defectsynth generate --class damaged_case" in msg
    assert f"--class misplaced --n 21 --method {default_method('misplaced')} --seed 4" in msg


def test_heldout_synthetic_rows_are_refused(workspace):
    split = workspace.split(say=lambda _msg: None)
    heldout = sorted(split.heldout_paths())
    held_defect = next(p for p in heldout if "/bent_lead/" in p)
    method = default_method("bent_lead")
    injected = [
        synthetic_row(workspace, split, "bent_lead", method, 900, parents=[held_defect]),  # made from held-out
        Row(path=held_defect, label="bent_lead", split="train", source="synthetic", method=method,
            parents=split.train_defects("bent_lead")[0].path),  # a held-out image posing as synthetic
    ]
    add_synthetic(workspace, split, 20, extra=injected)  # one short of 21: only the injected rows could fill it
    with pytest.raises(DefectsynthError, match="bent_lead needs 21"):
        run(workspace)
    add_synthetic(workspace, split, 1, start=20)  # now 21 usable
    result = run(workspace)
    assert result.skipped == 2
    assert not {r.path for r in injected} & {r.path for r in result.rows}
    # a tampered training set is refused when it is loaded
    tampered = result.rows + [Row(path=held_defect, label="bent_lead", split="train", source="real", method="real")]
    write_manifest(workspace.training_csv("test"), tampered)
    with pytest.raises(LeakageError):
        load_training_set(workspace, "test")


def test_same_seed_same_bytes(workspace):
    split = workspace.split(say=lambda _msg: None)
    add_synthetic(workspace, split, 30)
    csv = workspace.training_csv("test")

    def once(seed):
        run(workspace, strategy="hybrid", target=20, seed=seed)
        return csv.read_bytes(), csv.with_suffix(".json").read_bytes()

    first = once(1)
    assert once(1) == first
    assert once(2)[0] != first[0]
    # a different order of synthetic.csv changes nothing either
    write_manifest(workspace.synthetic_csv, read_synthetic(workspace)[::-1])
    assert once(1) == first


def test_sidecar_round_trip(workspace):
    split = workspace.split(say=lambda _msg: None)
    add_synthetic(workspace, split, 21)
    result = run(workspace, sampler="sqrt", loss="focal", seed=3)
    rows, config = load_training_set(workspace, "test")
    assert rows == result.rows
    assert config == RebalanceConfig(sampler="sqrt", loss="focal", seed=3)
    rows, config = load_training_set(workspace, "original")
    assert (config.strategy, config.sampler, config.loss) == ("none", "none", "ce")
    assert rows == split.real_rows("train")
    with pytest.raises(DefectsynthError, match="--name original"):
        rebalance(workspace, split, make_config(), name="original")


@pytest.mark.parametrize("options, option", [
    ({"strategy": "smote"}, "--strategy"),
    ({"target": "most"}, "--target"),
    ({"target": "0"}, "--target"),
    ({"mix": "cutpaste"}, "--mix"),
    ({"mix": "cutpaste=0"}, "--mix"),
    ({"real_ratio": 1.5}, "--real-ratio"),
    ({"strategy": "oversample", "methods": "cutpaste"}, "--methods"),
    ({"methods": "cutpaste", "mix": "pose=1"}, "--mix"),
    ({"class_methods": "misplaced"}, "--class-methods"),
    ({"strategy": "oversample", "class_methods": "misplaced=pose"}, "--class-methods"),
    ({"loss": "dice"}, "--loss"),
    ({"sampler": "smart"}, "--sampler"),
    ({"seed": -1}, "--seed"),
])
def test_config_errors_name_the_option(options, option):
    with pytest.raises(DefectsynthError) as e:
        make_config(**options)
    assert str(e.value).startswith(option) or f" {option} " in f" {e.value}"


# --- losses, against values computed by hand --------------------------------------------------------

LOGITS = [[1.0, 2.0, 0.0], [0.5, 0.0, -1.0]]
TARGETS = [1, 0]
COUNTS = [10, 2, 1]


def hand_ce(logits, target, offset=(0.0, 0.0, 0.0)):
    z = [a + b for a, b in zip(logits, offset, strict=True)]
    return -(z[target] - math.log(sum(math.exp(v) for v in z)))


def loss_of(name, **kw):
    return make_loss(name, COUNTS, **kw)(torch.tensor(LOGITS), torch.tensor(TARGETS)).item()


def test_cross_entropy():
    assert loss_of("ce") == pytest.approx((hand_ce(LOGITS[0], 1) + hand_ce(LOGITS[1], 0)) / 2, rel=1e-6)


def test_class_balanced_loss():
    beta = 0.999
    raw = [(1 - beta) / (1 - beta ** n) for n in COUNTS]
    w = [3 * x / sum(raw) for x in raw]
    want = (w[1] * hand_ce(LOGITS[0], 1) + w[0] * hand_ce(LOGITS[1], 0)) / 2
    assert loss_of("class-balanced", beta=beta) == pytest.approx(want, rel=1e-5)


def test_focal_loss():
    def one(logits, t):
        p = math.exp(-hand_ce(logits, t))
        return -((1 - p) ** 2) * math.log(p)
    assert loss_of("focal") == pytest.approx((one(LOGITS[0], 1) + one(LOGITS[1], 0)) / 2, rel=1e-5)


def test_logit_adjusted_and_balanced_softmax():
    prior = [math.log(n / sum(COUNTS)) for n in COUNTS]
    want = (hand_ce(LOGITS[0], 1, prior) + hand_ce(LOGITS[1], 0, prior)) / 2
    assert loss_of("logit-adjust") == pytest.approx(want, rel=1e-5)
    half = [0.5 * p for p in prior]
    assert loss_of("logit-adjust", tau=0.5) == pytest.approx(
        (hand_ce(LOGITS[0], 1, half) + hand_ce(LOGITS[1], 0, half)) / 2, rel=1e-5)
    logn = [math.log(n) for n in COUNTS]
    assert loss_of("balanced-softmax") == pytest.approx(
        (hand_ce(LOGITS[0], 1, logn) + hand_ce(LOGITS[1], 0, logn)) / 2, rel=1e-5)
    assert loss_of("balanced-softmax") > loss_of("ce")  # the rare target class 1 is made harder


def test_unknown_loss():
    with pytest.raises(DefectsynthError, match="--loss"):
        make_loss("dice", COUNTS)


# --- samplers ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, shares", [
    ("weighted", [1 / 3, 1 / 3, 1 / 3]),
    ("sqrt", [math.sqrt(n) / (math.sqrt(90) + 3 + 1) for n in (90, 9, 1)]),
])
def test_sampler_class_frequencies(name, shares):
    labels = np.array([0] * 90 + [1] * 9 + [2])
    sampler = make_sampler(name, labels, 30000, torch.Generator().manual_seed(0))
    drawn = np.bincount(labels[list(sampler)], minlength=3) / 30000
    assert drawn == pytest.approx(shares, abs=0.015)


def test_no_sampler():
    assert make_sampler("none", np.array([0, 1]), 10, None) is None


# --- command line -----------------------------------------------------------------------------------

def test_cli(workspace):
    split = workspace.split(say=lambda _msg: None)
    add_synthetic(workspace, split, 8)
    runner = CliRunner()
    base = ["rebalance", "--data", str(workspace.data), "--work", str(workspace.root)]
    result = runner.invoke(app, [*base, "--target", "sqrt", "--loss", "logit-adjust", "--name", "sq"])
    assert result.exit_code == 0, result.output
    assert "bent_lead" in result.output and "share" in result.output
    assert per_class(read_manifest(workspace.training_csv("sq"))) == expect((24, 0), (3, 5))
    assert load_training_set(workspace, "sq")[1].loss == "logit-adjust"

    result = runner.invoke(app, base)  # auto needs 21 per class; there are 8
    assert result.exit_code == 2
    assert "defectsynth generate --class all --n 21 --data" in result.output
    assert "Traceback" not in result.output

    result = runner.invoke(app, [*base, "--strategy", "smote"])
    assert result.exit_code == 2 and "--strategy 'smote'" in result.output


def test_generate_flag_makes_missing_images(workspace):
    split = workspace.split(say=lambda _msg: None)
    result = rebalance(workspace, split, make_config(target="sqrt", generate=True), name="gen", progress=False)
    assert per_class(result.rows) == expect((24, 0), (3, 5))
    assert {r.method for r in result.rows if r.source == "synthetic" and r.label == "misplaced"} == \
           {default_method("misplaced")}
    assert all(r.path for r in result.rows)
