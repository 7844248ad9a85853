"""train-eval: one classifier per arm x split x seed, evaluated on held-out real images only.

Split 0 of `--splits 1` is the workspace's own split. With K > 1 splits, split k is a random split
(seed k, same shots) in the sub-workspace <work>/splits/<k>/, whose synthetic images are made again
by generate() from that split's training defects only, and whose arms are rebuilt by rebalance()
with each arm's recorded RebalanceConfig. All arms of one (split, seed) share the held-back real images
(`--val`, train/folds.py), the training seed and the number of samples drawn per epoch (that of the
largest arm), so the comparison is between training sets, not between training budgets.
"""

from __future__ import annotations

import platform
import shutil
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import torch
from accelerate import PartialState

from defectsynth.balance import RebalanceConfig, arms_problem, load_training_set, rebalance
from defectsynth.data.cache import ImageCache
from defectsynth.data.guard import check_no_leakage
from defectsynth.data.layout import GOOD
from defectsynth.data.manifest import Row
from defectsynth.data.split import Split, load_split, make_split, save_split
from defectsynth.device import pick_device
from defectsynth.errors import DefectsynthError
from defectsynth.report import summary_table, write_report
from defectsynth.report.figures import MapExamples
from defectsynth.synth.partpose import PartPoses, training_augmentation
from defectsynth.train.data import without_fold
from defectsynth.train.decide import DECISION, DEFAULT_RULE
from defectsynth.train.evaluate import evaluate_heldout, heldout_metrics
from defectsynth.train.folds import DEFAULT_VAL, best_epoch
from defectsynth.train.folds import plan as val_plan
from defectsynth.train.loop import TrainConfig, flip_views, train_classifier
from defectsynth.train.models import has_map
from defectsynth.train.presets import preset as preset_settings
from defectsynth.train.reference import CANDIDATES, CLOSEST, POOL, Reference, use_reference
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


VALIDATION = {
    "fold": "15% of each class's real training images (at least one shot per defect type) select the epoch; "
            "their good images set the detection threshold; never test images",
    "none": "every real defect shot trains, fixed schedule (last epoch); 15% of train/good is held back to "
            "set the detection threshold; never test images",
    "kfold": "3 folds over the real defect shots choose the epoch count, then a refit on every shot; 15% of "
             "train/good is held back to set the detection threshold; never test images",
}


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _image_name(path: str, data: Path) -> str:
    """A held-out image as the report names it: its path inside the category folder."""
    try:
        return Path(path).relative_to(data).as_posix()
    except ValueError:
        return str(path)


MAP_EXAMPLES_PER_CLASS = 3


def map_examples(runs: list[dict], cache: ImageCache, dense: bool) -> MapExamples | None:
    """The report's defect-map figure: the first split and seed's model of the last arm (balanced, by
    default), over the first few held-out images of each class of that split."""
    if not runs or not dense:
        return None
    run = [r for r in runs if (r["split"], r["seed"]) == (runs[0]["split"], runs[0]["seed"])][-1]
    split = load_split(Path(run["split_json"]))
    test = sorted(split.real_rows("test"), key=lambda t: t.path)
    rows = [r for c in split.classes for r in [t for t in test if t.label == c][:MAP_EXAMPLES_PER_CLASS]]
    return MapExamples(Path(run["checkpoint"]), rows, cache,
                       f"{run['arm']}, split {run['split']} seed {run['seed']}")


def run_name(arms: list[str], splits: int, seeds: int, model: str, size: int, epochs: int,
             reference: bool = False) -> str:
    """Deterministic, so re-running the same comparison overwrites the same report."""
    return f"{'+'.join(arms)}-{splits}x{seeds}-{model}{'-ref' if reference else ''}-{size}px-{epochs}ep"


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
               progress: bool = True, say=print, val: str | None = None, augment: str = "auto",
               reference: str | None = None, first_seed: int = 0) -> dict:
    """Train and evaluate every arm x split x seed, write the report; return {report_dir, runs, settings,
    summary (the rows of report.summary_table)}. The seeds are first_seed .. first_seed + seeds - 1, so that
    a comparison can be extended by more seeds without training the first ones again."""
    start = time.perf_counter()
    arms = list(DEFAULT_ARMS if arms is None else arms)
    if arms_problem(arms):
        raise DefectsynthError(f"--arms {','.join(arms)!r}: {arms_problem(arms)}")
    if splits < 1 or seeds < 1:
        raise DefectsynthError(f"--splits {splits} --seeds {seeds}: both must be 1 or more")
    if first_seed < 0:
        raise DefectsynthError(f"--first-seed {first_seed}: must be 0 or more")
    settings = preset_settings(preset)
    for key, value in {"model": model, "weights": weights, "size": size, "epochs": epochs}.items():
        if value is not None:
            settings[key] = value
    val = val or DEFAULT_VAL
    val_plan([], val, 0)  # an unknown --val fails before any work
    reference = reference or "auto"
    use_reference(reference, "")  # an unknown --reference fails before any work
    # the augmentation follows the part: any angle for parts that lie at any angle (synth/partpose.py);
    # a part fixed in one pose is also compared with good parts (train/reference.py)
    goods = [r.path for r in ws.split(say=lambda _msg: None).real_rows("train") if r.label == GOOD]
    poses = PartPoses.from_paths(goods) if "auto" in (augment, reference) else None
    part_pose, overrides = training_augmentation(goods, augment, poses)
    settings.update(overrides)
    compare = use_reference(reference, poses.kind if poses else "")
    rotating = poses.kind == "rotating" if poses else augment == "rotating"
    say(part_pose + ("; input: image + difference to the closest good training images" if compare else ""))
    parents = {arm: load_arm(ws, arm) for arm in arms}
    state = PartialState(cpu=pick_device(device).type == "cpu")
    cache = ImageCache(ws.cache_dir)
    real = ws.split(say=lambda _msg: None).rows  # every real image: the training and held-out ones of any split
    cache.warm([r.path for r in real] + [r.path for rows, _config in parents.values() for r in rows],
               [r.mask for r in real if r.mask], settings["size"], progress)
    name = run_name(arms, splits, seeds, settings["model"], settings["size"], settings["epochs"], compare)
    name += "" if val == DEFAULT_VAL else f"-val{val}"
    name += "" if augment == "auto" else f"-aug{augment}"  # an ablation must not overwrite the default's report
    name += f"-from-seed{first_seed}" if first_seed else ""
    rule = DEFAULT_RULE if has_map(settings["model"]) else "image"
    runs, samples, notes = [], [], set()
    for k in range(splits):
        with state.main_process_first():
            sets = prepare_split(ws, k, splits, parents, progress)
        samples = samples or sample_paths(sets)
        goods_k = [r.path for r in sets.split.real_rows("train") if r.label == GOOD]
        ref = Reference(goods_k, settings["size"], cache, follow_pose=rotating) if compare else None
        if ref is not None:
            with state.main_process_first():  # the other processes then find every channel cached
                ref.warm([r for rows, _config in sets.arms.values() for r in rows] + sets.split.real_rows("test"),
                         progress)
        for seed in range(first_seed, first_seed + seeds):
            spend = val_plan(sets.split.real_rows("train"), val, seed)
            fold = spend.held_back
            train_sets = {arm: check_no_leakage(without_fold(rows, fold), sets.split, f"train-eval {arm}")
                          for arm, (rows, _config) in sets.arms.items()}
            budget = max(len(rows) for rows in train_sets.values())
            for arm in arms:
                config = TrainConfig(**settings, seed=seed, device=device, samples_per_epoch=budget)
                out_dir = ws.root / "classifiers" / name / arm / f"split{k}-seed{seed}"
                what = f"{arm} split {k + 1}/{splits} seed {seed}"
                extra_s, stop = 0.0, None
                if spend.kfolds:  # choose the epoch count on the shots' folds, then refit on every shot
                    histories = []
                    for j, kfold in enumerate(spend.kfolds):
                        r = train_classifier(without_fold(train_sets[arm], kfold), kfold, sets.split.classes,
                                             cache, config, sets.arms[arm][1], out_dir / f"fold{j}",
                                             progress=progress, description=f"{what} fold {j + 1}",
                                             reference=ref)
                        histories.append(r.history)
                        extra_s += r.wall_s
                    stop = best_epoch(histories)
                    config.stop_epoch = stop
                result = train_classifier(train_sets[arm], spend.val, sets.split.classes, cache, config,
                                          sets.arms[arm][1], out_dir, progress=progress, description=what,
                                          calibration_rows=spend.calibration, reference=ref)
                preds = evaluate_heldout(result.checkpoint, sets.split, train_sets[arm] + fold, cache, device)
                metrics, rules = heldout_metrics(preds, cache)
                notes.add(result.weights_note)
                runs.append({"arm": arm, "split": k, "seed": seed, "metrics": metrics, "rules": rules,
                             "weights_note": result.weights_note, "wall_s": round(result.wall_s + extra_s, 1),
                             "train_size": result.train_size, "val_size": len(spend.val),
                             "calibration_size": len(spend.calibration), "kfold_epoch": stop,
                             "best_epoch": result.best_epoch, "val_balanced_accuracy": result.val_score,
                             "test_size": len(preds.rows), "checkpoint": str(result.checkpoint),
                             "split_json": str(sets.ws.split_json),
                             "predictions": [{"image": _image_name(row.path, ws.data), "label": row.label,
                                              "predicted": label} for row, label in zip(preds.rows, preds.y_pred,
                                                                                        strict=True)]})
                pixel = metrics.get("pixel_auroc")
                say(f"{arm:<12} split {k} seed {seed}: balanced accuracy {metrics['balanced_accuracy']:.3f}, "
                    f"false alarms {metrics['false_alarm_rate']:.3f}, image AUROC "
                    f"{_num(metrics['image_auroc'])}, pixel AUROC {_num(pixel)} "
                    f"(epoch {result.best_epoch}, {result.wall_s + extra_s:.0f} s)")
    base = ws.split(say=lambda _msg: None)
    views = flip_views(TrainConfig(**settings))
    doc = {**settings, "preset": preset, "arms": arms, "splits": splits, "seeds": seeds, "first_seed": first_seed,
           "device": device,
           "protocol": base.protocol if splits == 1 else "random (seed = split index)", "shots": base.shots,
           "data": str(ws.data), "work": str(ws.root), "run": name, "weights_notes": sorted(notes),
           "samples_per_epoch": "the largest arm's training size, for every arm of a split",
           "val": val, "rule": f"{rule}, {DECISION[rule]}", "decision": DECISION[rule],
           "validation": VALIDATION[val], "part_pose": part_pose,
           "prediction": "the image alone" if len(views) == 1 else
           f"the mean of the logits over the image and the {len(views) - 1} mirror image(s) it trained on",
           "reference": (f"image + its difference to the {CLOSEST} closest of {CANDIDATES} good training images "
                         f"(for a fixed part, chosen from up to {POOL} by a coarse look; train/reference.py)")
           if compare else "image only",
           "torch": torch.__version__, "threads": torch.get_num_threads(), "machine": platform.machine(),
           "wall_s": round(time.perf_counter() - start, 1)}
    report_dir = ws.report_dir(name)
    if state.is_main_process:
        write_report(report_dir, runs, doc, samples, map_examples(runs, cache, has_map(settings["model"])))
    return {"report_dir": report_dir, "runs": runs, "settings": doc, "summary": summary_table(runs)}
