"""train-eval: one classifier per arm x split x seed, evaluated on held-out real images only.

Split 0 of `--splits 1` is the workspace's own split. With K > 1 splits, split k is a random split
(seed k, same shots) in the sub-workspace <work>/splits/<k>/, whose synthetic images are made again
by generate() from that split's training defects only, and whose arms are rebuilt by rebalance()
with each arm's recorded RebalanceConfig. All arms of one (split, seed) share the validation fold,
the training seed and the number of samples drawn per epoch (that of the largest arm), so the
comparison is between training sets, not between training budgets.
"""

from __future__ import annotations

import platform
import shutil
import time
from collections import Counter
from dataclasses import dataclass

import torch
from accelerate import PartialState

from defectsynth.balance import RebalanceConfig, load_training_set, rebalance
from defectsynth.data.cache import ImageCache
from defectsynth.data.guard import check_no_leakage
from defectsynth.data.manifest import Row
from defectsynth.data.split import Split, load_split, make_split, save_split
from defectsynth.device import pick_device
from defectsynth.errors import DefectsynthError
from defectsynth.report import summary_table, write_report
from defectsynth.synth.partpose import training_augmentation
from defectsynth.train.data import validation_fold, without_fold
from defectsynth.train.evaluate import evaluate_heldout
from defectsynth.train.loop import TrainConfig, train_classifier
from defectsynth.train.metrics import compute_metrics
from defectsynth.train.presets import preset as preset_settings
from defectsynth.workspace import Workspace

ORIGINAL = "original"
DEFAULT_ARMS = (ORIGINAL, "balanced")
SAMPLES_PER_CLASS = 4  # synthetic images per (class, method) in the report's sample grid


@dataclass
class SplitSets:
    index: int
    ws: Workspace
    split: Split
    arms: dict[str, tuple[list[Row], RebalanceConfig]]


def run_name(arms: list[str], splits: int, seeds: int, model: str, size: int, epochs: int) -> str:
    """Deterministic, so re-running the same comparison overwrites the same report."""
    return f"{'+'.join(arms)}-{splits}x{seeds}-{model}-{size}px-{epochs}ep"


def load_arm(ws: Workspace, arm: str) -> tuple[list[Row], RebalanceConfig]:
    if not ws.training_csv(arm).is_file():
        hint = "defectsynth rebalance" if arm in DEFAULT_ARMS else f"defectsynth rebalance --name {arm}"
        raise DefectsynthError(f"--arms {arm}: training set {ws.training_csv(arm)} not found; run "
                               f"'{hint} --work {ws.root}' first (or drop {arm} from --arms)")
    return load_training_set(ws, arm)


def prepare_split(ws: Workspace, k: int, splits: int, parents: dict[str, tuple[list[Row], RebalanceConfig]],
                  progress: bool) -> SplitSets:
    """The arms' training sets for split k (see the module docstring)."""
    base = ws.split(say=lambda _msg: None)
    if splits == 1:
        return SplitSets(0, ws, base, parents)
    sub = Workspace(ws.data, ws.root / "splits" / str(k))
    split = make_split(ws.data, shots=base.shots, protocol="random", seed=k)
    if sub.split_json.exists() and load_split(sub.split_json) != split:
        shutil.rmtree(sub.root)  # made for another split: its synthetic images may come from held-out ones
    if not sub.split_json.exists():
        save_split(split, sub.split_json)
    for arm, (_rows, config) in parents.items():
        # generate=True: rebalance() calls generate() for the synthetic images this split still lacks
        rebalance(sub, split, config.model_copy(update={"generate": True}), name=arm, progress=progress)
    return SplitSets(k, sub, split, {arm: load_training_set(sub, arm) for arm in parents})


def sample_paths(sets: SplitSets) -> list[str]:
    """A few synthetic images of each (class, method) the arms trained on, for the report's grid."""
    seen: Counter = Counter()
    paths = []
    for rows, _config in sets.arms.values():
        for r in rows:
            if r.source == "synthetic" and r.path not in paths and seen[(r.label, r.method)] < SAMPLES_PER_CLASS:
                seen[(r.label, r.method)] += 1
                paths.append(r.path)
    return paths


def train_eval(ws: Workspace, arms: list[str] | None = None, splits: int = 1, seeds: int = 1,
               model: str | None = None, weights: str | None = None, size: int | None = None,
               epochs: int | None = None, device: str = "auto", preset: str = "default",
               progress: bool = True, say=print, augment: str = "auto") -> dict:
    """Train and evaluate every arm x split x seed, write the report; return {report_dir, runs, settings,
    summary (the rows of report.summary_table)}."""
    start = time.perf_counter()
    arms = list(arms or DEFAULT_ARMS)
    if splits < 1 or seeds < 1:
        raise DefectsynthError(f"--splits {splits} --seeds {seeds}: both must be 1 or more")
    settings = preset_settings(preset)
    for key, value in {"model": model, "weights": weights, "size": size, "epochs": epochs}.items():
        if value is not None:
            settings[key] = value
    # the augmentation follows the part: any angle for parts that lie at any angle (synth/partpose.py)
    goods = [r.path for r in ws.split(say=lambda _msg: None).real_rows("train") if r.label == "good"]
    part_pose, overrides = training_augmentation(goods, augment)
    settings.update(overrides)
    say(part_pose)
    parents = {arm: load_arm(ws, arm) for arm in arms}
    state = PartialState(cpu=pick_device(device).type == "cpu")
    cache = ImageCache(ws.cache_dir)
    name = run_name(arms, splits, seeds, settings["model"], settings["size"], settings["epochs"])
    runs, samples, notes = [], [], set()
    for k in range(splits):
        with state.main_process_first():
            sets = prepare_split(ws, k, splits, parents, progress)
        samples = samples or sample_paths(sets)
        for seed in range(seeds):
            fold = validation_fold(sets.split.real_rows("train"), seed=seed)
            train_sets = {arm: check_no_leakage(without_fold(rows, fold), sets.split, f"train-eval {arm}")
                          for arm, (rows, _config) in sets.arms.items()}
            budget = max(len(rows) for rows in train_sets.values())
            for arm in arms:
                config = TrainConfig(**settings, seed=seed, device=device, samples_per_epoch=budget)
                out_dir = ws.root / "classifiers" / name / arm / f"split{k}-seed{seed}"
                result = train_classifier(train_sets[arm], fold, sets.split.classes, cache, config,
                                          sets.arms[arm][1], out_dir, progress=progress,
                                          description=f"{arm} split {k + 1}/{splits} seed {seed}")
                preds = evaluate_heldout(result.checkpoint, sets.split, train_sets[arm] + fold, cache, device)
                metrics = compute_metrics(preds.y_true, preds.y_pred, sets.split.classes, scores=preds.scores)
                notes.add(result.weights_note)
                runs.append({"arm": arm, "split": k, "seed": seed, "metrics": metrics,
                             "weights_note": result.weights_note, "wall_s": round(result.wall_s, 1),
                             "train_size": result.train_size, "val_size": len(fold),
                             "best_epoch": result.best_epoch, "val_balanced_accuracy": result.val_score,
                             "test_size": len(preds.rows), "checkpoint": str(result.checkpoint)})
                say(f"{arm:<12} split {k} seed {seed}: balanced accuracy {metrics['balanced_accuracy']:.3f}, "
                    f"defect-type accuracy {metrics['defect_type_accuracy']:.3f} "
                    f"(best epoch {result.best_epoch}, {result.wall_s:.0f} s)")
    base = ws.split(say=lambda _msg: None)
    doc = {**settings, "preset": preset, "arms": arms, "splits": splits, "seeds": seeds, "device": device,
           "protocol": base.protocol if splits == 1 else "random (seed = split index)", "shots": base.shots,
           "data": str(ws.data), "work": str(ws.root), "run": name, "weights_notes": sorted(notes),
           "samples_per_epoch": "the largest arm's training size, for every arm of a split",
           "validation": "15% of each class's real training images (at least one), never test images",
           "part_pose": part_pose,
           "torch": torch.__version__, "threads": torch.get_num_threads(), "machine": platform.machine(),
           "wall_s": round(time.perf_counter() - start, 1)}
    report_dir = ws.report_dir(name)
    if state.is_main_process:
        write_report(report_dir, runs, doc, samples)
    return {"report_dir": report_dir, "runs": runs, "settings": doc, "summary": summary_table(runs)}
