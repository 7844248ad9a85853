"""Metrics against hand-computed values, statistics on known cases, and the report on made-up runs."""

from __future__ import annotations

import json

import numpy as np
import pytest
from rich.console import Console

from defectsynth.errors import DefectsynthError
from defectsynth.io import write_png
from defectsynth.report import rich_table, summary_table, write_report
from defectsynth.report.markdown import tasks_section
from defectsynth.report.read import pooled_runs, read_report
from defectsynth.train.metrics import compute_metrics, pooled_imbalanced_report, summed_confusion
from defectsynth.train.stats import compare_arms, paired_bootstrap, summarize

CLASSES = ["good", "bent_lead", "cut_lead"]
Y_TRUE = ["good", "good", "good", "good", "bent_lead", "bent_lead", "cut_lead", "cut_lead"]
Y_PRED = ["good", "good", "good", "bent_lead", "bent_lead", "good", "cut_lead", "bent_lead"]
# columns in CLASSES order; only the defect rows (4..7) matter for the 4-way argmax
SCORES = [[0.9, 0.05, 0.05], [0.9, 0.05, 0.05], [0.9, 0.05, 0.05], [0.3, 0.6, 0.1],
          [0.1, 0.8, 0.1], [0.8, 0.15, 0.05], [0.1, 0.2, 0.7], [0.1, 0.5, 0.4]]


def test_metrics_match_hand_computed_values():
    m = compute_metrics(Y_TRUE, Y_PRED, CLASSES, scores=SCORES)
    # recalls: good 3/4, bent 1/2, cut 1/2
    assert m["balanced_accuracy"] == pytest.approx((0.75 + 0.5 + 0.5) / 3)
    assert m["accuracy"] == pytest.approx(5 / 8)
    # precisions: good 3/4, bent 1/3, cut 1/1 -> F1 0.75, 0.4, 2/3
    assert m["macro_f1"] == pytest.approx((0.75 + 0.4 + 2 / 3) / 3)
    assert m["per_class"]["bent_lead"] == pytest.approx({"recall": 0.5, "precision": 1 / 3, "f1": 0.4, "support": 2})
    assert m["per_class"]["cut_lead"]["precision"] == pytest.approx(1.0)
    assert m["geometric_mean"] == pytest.approx((0.75 * 0.5 * 0.5) ** (1 / 3))
    # defects 4..7 predicted bent, good, cut, bent for bent, bent, cut, cut: 2 right; the one called good is wrong
    assert m["defect_type_accuracy"] == pytest.approx(0.5)
    # argmax over the defect columns only: bent, bent, cut, bent -> 3 of 4
    assert m["defect_type_accuracy_4way_argmax"] == pytest.approx(0.75)
    assert m["detection_recall"] == pytest.approx(3 / 4)
    assert m["false_alarm_rate"] == pytest.approx(1 / 4)
    assert m["confusion"] == [[3, 1, 0], [1, 1, 0], [0, 1, 1]]
    assert (m["n_test"], m["n_defects"], m["n_good"]) == (8, 4, 4)
    assert "bent_lead" in m["imbalanced_report"] and "geo" in m["imbalanced_report"]
    assert json.loads(json.dumps(m)) == m  # plain JSON types only
    # without scores the argmax figure is undefined, not guessed
    assert compute_metrics(Y_TRUE, Y_PRED, CLASSES)["defect_type_accuracy_4way_argmax"] is None


def test_metrics_edge_cases_and_bad_input():
    perfect = compute_metrics(Y_TRUE, Y_TRUE, CLASSES)
    assert perfect["balanced_accuracy"] == perfect["macro_f1"] == perfect["defect_type_accuracy"] == 1.0
    assert perfect["false_alarm_rate"] == 0.0
    only_good = compute_metrics(["good", "good"], ["good", "cut_lead"], CLASSES)
    assert only_good["defect_type_accuracy"] is None and only_good["detection_recall"] is None
    assert only_good["per_class"]["bent_lead"]["recall"] is None  # no true bent_lead: undefined, not 0
    assert only_good["balanced_accuracy"] == pytest.approx(0.5)  # over classes present in y_true only
    with pytest.raises(ValueError, match="not in classes"):
        compute_metrics(["good"], ["scratch"], CLASSES)
    with pytest.raises(ValueError, match="shape"):
        compute_metrics(Y_TRUE, Y_PRED, CLASSES, scores=np.zeros((8, 2)))


def test_summarize_and_bootstrap_known_cases():
    assert summarize([1, 2, 3]) == {"mean": 2.0, "std": 1.0, "n": 3}
    assert summarize([5.0]) == {"mean": 5.0, "std": 0.0, "n": 1}
    assert summarize([None, float("nan")]) == {"mean": None, "std": None, "n": 0}

    constant = paired_bootstrap([0.05] * 6)
    assert constant["low"] == constant["high"] == pytest.approx(0.05) and constant["excludes_zero"]
    positive = paired_bootstrap([0.02, 0.05, 0.01, 0.08, 0.03])
    assert 0 < positive["low"] <= positive["mean"] <= positive["high"] and positive["excludes_zero"]
    noise = paired_bootstrap([-0.1, 0.1, -0.05, 0.05, -0.2, 0.2])
    assert noise["low"] < 0 < noise["high"] and not noise["excludes_zero"]
    assert noise["mean"] == pytest.approx(0.0)
    assert not paired_bootstrap([0.3])["excludes_zero"]  # one pair is no evidence

    diffs = [0.03, -0.01, 0.07, 0.02, 0.0]
    assert paired_bootstrap(diffs, seed=3) == paired_bootstrap(diffs, seed=3)
    assert paired_bootstrap(diffs, seed=3) != paired_bootstrap(diffs, seed=4)


def _run(arm: str, split: int, seed: int, y_pred: list[str]) -> dict:
    return {"arm": arm, "split": split, "seed": seed, "metrics": compute_metrics(Y_TRUE, y_pred, CLASSES),
            "weights_note": "from scratch (--weights none)", "wall_s": 1.5, "train_size": 40}


def _runs() -> list[dict]:
    """original misses defects; balanced finds more of them on every split; noisy is original with noise."""
    runs = []
    for split in range(3):
        weak = ["good"] * 4 + ["good"] * (2 - split % 2) + ["bent_lead"] * (split % 2) + ["cut_lead", "good"]
        noisy = ["good", "good", "good", "cut_lead" if split == 1 else "good"] + weak[4:]
        runs += [_run("original", split, 0, weak), _run("balanced", split, 0, Y_TRUE[:7] + [Y_PRED[split + 4]]),
                 _run("noisy", split, 0, noisy)]
    return runs


def test_compare_arms_pairs_by_split_and_seed():
    runs = _runs()
    extra = _run("balanced", 9, 0, Y_TRUE)  # no original on split 9: must not be paired
    out = compare_arms(list(reversed(runs)) + [extra], "balanced_accuracy")
    assert set(out) == {"balanced", "noisy"} and out["balanced"]["n"] == 3
    by_split = {p["split"]: p["diff"] for p in out["balanced"]["pairs"]}
    for split in range(3):
        arm = {r["arm"]: r["metrics"]["balanced_accuracy"] for r in runs if r["split"] == split}
        assert by_split[split] == pytest.approx(arm["balanced"] - arm["original"])
    assert compare_arms(runs, "balanced_accuracy", baseline="missing") == {}


def test_write_report(tmp_path):
    folder = tmp_path / "synthetic" / "bent_lead" / "cutpaste"
    image = np.zeros((40, 60, 3), np.uint8)
    mask = np.zeros((40, 60), np.uint8)
    mask[10:20, 20:40] = 255
    write_png(folder / "000.png", image)
    write_png(folder / "000_mask.png", mask)
    write_png(folder / "001.png", np.full((30, 30), 128, np.uint8))  # grayscale, no mask
    samples = [str(folder / "000.png"), str(folder / "001.png"), str(folder / "missing.png")]
    settings = {"device": "cpu", "model": "resnet18", "weights": "none", "protocol": "first", "shots": 3,
                "wall_s": 12.0, "data": str(tmp_path / "transistor"), "weights_notes": ["from scratch (--weights none)"]}
    runs = _runs()

    report = write_report(tmp_path / "report", runs, settings, samples)
    text = report.read_text()
    for arm in ("original", "balanced", "noisy"):
        assert f"| {arm} |" in text
        assert (tmp_path / "report" / "figures" / f"confusion_{arm}.png").stat().st_size > 1000
    assert "**balanced** vs original" in text and "the gain is distinguishable from noise" in text
    assert "**noisy** vs original" in text and "not distinguishable from noise" in text
    assert "60.71" in text and "52.38" in text and "41.67" in text and "first-3 split" in text
    # the class counts come from the runs (3 classes here), and the published table only for transistor
    assert "3-way balanced accuracy" in text and "Defect-type acc. (2-way)" in text and "5-way" not in text
    other = write_report(tmp_path / "screw", runs, {**settings, "data": str(tmp_path / "screw")}, []).read_text()
    assert "60.71" not in other and "Beside the published" not in other
    assert "from scratch" in text and "Wall time" in text
    for name in ("recall_per_class.png", "synthetic_samples.png"):
        assert (tmp_path / "report" / "figures" / name).stat().st_size > 1000
    doc = json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert doc["settings"]["model"] == "resnet18" and len(doc["runs"]) == len(runs)
    assert doc["paired_vs_original"]["balanced_accuracy"]["balanced"]["excludes_zero"] is True
    assert doc["summary"]["balanced"]["balanced_accuracy"]["n"] == 3
    # what the benches read back: the folder or its metrics.json, one arm, or a one-line error
    read, read_settings = read_report(tmp_path / "report", "balanced")
    assert [r["split"] for r in read] == [r["split"] for r in runs if r["arm"] == "balanced"]
    assert read_settings["model"] == "resnet18" and len(read_report(report.with_name("metrics.json"))[0]) == len(runs)
    for path, arm, words in ((tmp_path / "nowhere", None, "not a train-eval report"),
                             (tmp_path / "report", "gan", "--arm gan: no run")):
        with pytest.raises(DefectsynthError, match=words):
            read_report(path, arm)
    # one comparison side pooled from two runs of other seeds; the same run twice is refused
    later = write_report(tmp_path / "seed1", [{**r, "seed": 1} for r in runs], settings, []).parent
    assert len(pooled_runs([tmp_path / "report", later])) == 2 * len(runs)
    with pytest.raises(DefectsynthError, match="seed 0 is also in"):
        pooled_runs([tmp_path / "report", report.with_name("metrics.json")])

    # re-running over the same folder is safe; no samples and no baseline still give a report
    again = write_report(tmp_path / "report", [r for r in runs if r["arm"] != "original"], settings, [])
    assert "No synthetic samples" in again.read_text() and "no paired comparison" in again.read_text()
    single = write_report(tmp_path / "single", [r for r in runs if r["split"] == 0], settings, []).read_text()
    assert "1 pair: no interval" in single and "One pair gives no interval" in single


def test_summary_table_and_pooled_report():
    runs = _runs()
    rows = summary_table(runs)
    assert [r["Arm"] for r in rows] == ["original", "balanced", "noisy"]
    assert rows[0]["Δ bal. acc. vs original [95% CI]"] == "baseline"
    assert rows[1]["Balanced acc. (3-way)"].count("±") == 1 and rows[1]["Runs"] == "3"
    console = Console(record=True, width=80)  # a plain terminal: every figure must print whole
    console.print(rich_table(rows[:2]))
    text = console.export_text()
    assert rows[1]["Δ bal. acc. vs original [95% CI]"] in text and rows[1]["Balanced acc. (3-way)"] in text
    confusion = summed_confusion([r for r in runs if r["arm"] == "balanced"])
    assert confusion.sum() == 3 * len(Y_TRUE)
    assert "cut_lead" in pooled_imbalanced_report(confusion, CLASSES)


def test_missed_section_lists_the_images_most_often_decided_wrong():
    """An image wrong in 2 of its 3 runs is listed with what it was taken for; one right in 2 of 3 is not;
    a good part called a defect in every run is listed first; runs without predictions give no section."""
    from defectsynth.report.markdown import missed_section

    def run(split: int, decided: dict[str, str]) -> dict:
        truth = {"test/bent_lead/002.png": "bent_lead", "test/cut_lead/001.png": "cut_lead",
                 "test/good/044.png": "good"}
        return {"arm": "balanced", "split": split, "seed": 0,
                "predictions": [{"image": i, "label": truth[i], "predicted": d} for i, d in decided.items()]}

    runs = [run(0, {"test/bent_lead/002.png": "cut_lead", "test/cut_lead/001.png": "cut_lead",
                    "test/good/044.png": "cut_lead"}),
            run(1, {"test/bent_lead/002.png": "cut_lead", "test/cut_lead/001.png": "good",
                    "test/good/044.png": "misplaced"}),
            run(2, {"test/bent_lead/002.png": "bent_lead", "test/cut_lead/001.png": "cut_lead",
                    "test/good/044.png": "cut_lead"})]
    text = missed_section(runs)
    rows = [line for line in text.splitlines() if line.startswith("| balanced |")]
    assert rows == ["| balanced | test/good/044.png | good | 0 / 3 | cut_lead (2), misplaced (1) |",
                    "| balanced | test/bent_lead/002.png | bent_lead | 1 / 3 | cut_lead (2) |"]
    assert missed_section([{k: v for k, v in r.items() if k != "predictions"} for r in runs]) == ""


def test_the_report_names_the_operating_point_the_models_decided_at():
    argmax = tasks_section({"rule": "combined, argmax", "decision": "argmax"})
    calibrated = tasks_section({"rule": "image, calibrated", "decision": "calibrated"})
    older = tasks_section({"rule": "image, calibrated"})  # a report written before the decision was recorded
    assert "is the argmax" in argmax and "false-alarm target" not in argmax
    assert "false-alarm target" in calibrated and calibrated == older
