"""Build a training manifest from the train split and synthetic.csv, per a RebalanceConfig.

    <work>/training/original.csv (+ .json)   the long-tailed train split as it is
    <work>/training/<name>.csv (+ .json)     the rebalanced set; the JSON holds the config and the table

A row repeated by a strategy appears as a repeated CSV row. Same inputs and seed, same bytes.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydantic import ValidationError

from defectsynth.balance.config import RebalanceConfig, describe
from defectsynth.balance.strategies import (
    apportion,
    choose_synthetic,
    class_targets,
    oversample,
    real_rows_wanted,
    repeat_evenly,
    undersample_good,
)
from defectsynth.balance.table import before_after
from defectsynth.data.guard import check_no_leakage, train_rows
from defectsynth.data.layout import GOOD
from defectsynth.data.manifest import Row, read_manifest, write_manifest
from defectsynth.data.split import Split
from defectsynth.errors import DefectsynthError
from defectsynth.io import write_text
from defectsynth.synth.generate import default_method, generate, read_synthetic
from defectsynth.synth.registry import list_generators
from defectsynth.workspace import Workspace

ORIGINAL = "original"
ORIGINAL_CONFIG = RebalanceConfig(strategy="none")
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


@dataclass(frozen=True)
class RebalanceResult:
    rows: list[Row]
    table: list[dict]  # per class: {"class", "before": {real, synthetic, total, share}, "after": {...}}
    config: RebalanceConfig
    csv: Path
    skipped: int  # synthetic.csv rows not usable with this split (other split's parents, or file gone)


def rebalance(ws: Workspace, split: Split, config: RebalanceConfig, name: str = "balanced",
              progress: bool = True) -> RebalanceResult:
    _check_name(name, config)
    unknown = sorted(set(config.class_methods or {}) - set(split.defect_classes))
    if unknown:
        raise DefectsynthError(f"--class-methods: {unknown[0]!r} is not a defect class of {split.data_root}; "
                               f"use one of: {', '.join(split.defect_classes)}")
    real = train_rows(split, "rebalance")
    original = _write(ws, ORIGINAL, real, ORIGINAL_CONFIG, before_after(real, real, split.classes), skipped=0)
    if name == ORIGINAL:
        return original
    rows, skipped = _build(ws, split, config, real, progress)
    rows = check_no_leakage(rows, split, f"rebalance --name {name}")
    return _write(ws, name, rows, config, before_after(real, rows, split.classes), skipped)


def load_training_set(ws: Workspace, name: str) -> tuple[list[Row], RebalanceConfig]:
    csv = ws.training_csv(name)
    sidecar = csv.with_suffix(".json")
    if not csv.is_file():
        raise DefectsynthError(f"training set {csv} not found; run 'defectsynth rebalance --name {name} "
                               f"--work {ws.root}' first")
    rows = read_manifest(csv)
    try:
        doc = json.loads(sidecar.read_text())
        config = RebalanceConfig.model_validate(doc["config"])
    except FileNotFoundError:
        raise DefectsynthError(f"{sidecar} not found (it records how {csv.name} was made); "
                               f"run 'defectsynth rebalance --name {name}' again") from None
    except (ValueError, KeyError, TypeError) as e:
        if isinstance(e, ValidationError):
            e = describe(e.errors()[0])
        raise DefectsynthError(f"{sidecar}: not a valid training-set sidecar ({e}); "
                               f"run 'defectsynth rebalance --name {name}' again") from None
    check_no_leakage(rows, ws.split(say=lambda _msg: None), f"training set {csv}")
    return rows, config


def arms_problem(arms: list[str]) -> str | None:
    """What is wrong with a list of training sets to compare (train-eval's --arms, a recipe's arms), or None.
    An arm named twice would train twice and report a spread of 0 that measures nothing."""
    if not arms:
        return "name at least one training set to compare, e.g. original,balanced"
    twice = sorted({a for a in arms if arms.count(a) > 1})
    if twice:
        return f"{twice[0]} is named twice; name each training set once"
    return None


def _check_name(name: str, config: RebalanceConfig) -> None:
    if not NAME.fullmatch(name):
        raise DefectsynthError(f"--name {name!r}: use letters, digits, '_', '-' or '.', starting with a letter "
                               "or digit (it names <work>/training/<name>.csv)")
    if name == ORIGINAL and config.model_dump(exclude={"seed", "generate"}) != \
            ORIGINAL_CONFIG.model_dump(exclude={"seed", "generate"}):
        raise DefectsynthError("--name original is the unbalanced training set (strategy none, sampler none, "
                               "loss ce); choose another --name")


def _write(ws: Workspace, name: str, rows: list[Row], config: RebalanceConfig, table: list[dict],
           skipped: int) -> RebalanceResult:
    csv = ws.training_csv(name)
    doc = {"name": name, "csv": csv.name, "rows": len(rows), "config": config.model_dump(mode="json"),
           "table": table, "skipped_synthetic": skipped}
    write_manifest(csv, rows)
    write_text(csv.with_suffix(".json"), json.dumps(doc, indent=1) + "\n")
    return RebalanceResult(rows, table, config, csv, skipped)


def _build(ws: Workspace, split: Split, config: RebalanceConfig, real: list[Row],
           progress: bool) -> tuple[list[Row], int]:
    labels = [r.label for r in real]
    label_arr = np.array(labels, dtype=object)
    counts = {label: labels.count(label) for label in split.classes}
    targets = class_targets(counts, config.target, config.strategy)

    if config.strategy == "oversample":
        real_index = oversample(labels, targets, config.seed)
    elif config.strategy in ("undersample", "hybrid"):
        real_index = undersample_good(labels, targets, config.seed)
    else:
        real_index = np.arange(len(real))

    synthetic_wanted: dict[str, int] = {}  # "label/method" -> images
    if config.strategy in ("synthetic", "hybrid"):
        real_index = real_index[label_arr[real_index] == GOOD]
        for label in split.defect_classes:
            positions = np.flatnonzero(label_arr == label)
            total = max(targets[label], len(positions))
            n_real = real_rows_wanted(len(positions), total, config.real_ratio)
            real_index = np.concatenate([real_index, positions[repeat_evenly(len(positions), n_real)]])
            for method, n in apportion(total - n_real, _shares(config, label)).items():
                synthetic_wanted[f"{label}/{method}"] = n

    pool, skipped = _synthetic_pool(ws, split) if synthetic_wanted else ([], 0)
    short = _shortfall(pool, synthetic_wanted)
    if short:
        _check_methods(config)
    if short and config.generate:
        for key, (n, _have) in short.items():
            label, method = key.split("/")
            generate(ws, split, label, n, method=method, seed=config.seed, progress=progress)
        pool, skipped = _synthetic_pool(ws, split)
        short = _shortfall(pool, synthetic_wanted)
    if short:
        raise DefectsynthError(_missing_message(ws, split, config, short))
    chosen = choose_synthetic([f"{r.label}/{r.method}" for r in pool], synthetic_wanted, config.seed)

    by_class = {label: [] for label in split.classes}
    for i in real_index:
        by_class[real[i].label].append(real[i])
    for i in chosen:
        by_class[pool[i].label].append(pool[i])
    return [row for label in split.classes for row in by_class[label]], skipped


def _shares(config: RebalanceConfig, label: str) -> dict[str, float]:
    shares = config.method_shares(label)
    return {default_method(label): 1.0} if shares is None else shares


def _check_methods(config: RebalanceConfig) -> None:
    # Only when images are missing: listing the generators imports them all, which takes seconds.
    named = list(config.method_shares() or {}) + [m for ms in (config.class_methods or {}).values() for m in ms]
    unknown = [m for m in named if m not in list_generators()]
    if unknown:
        raise DefectsynthError(f"--methods/--mix: generator {unknown[0]!r} is unknown; use one of: "
                               f"{', '.join(list_generators())}")


def _synthetic_pool(ws: Workspace, split: Split) -> tuple[list[Row], int]:
    """The synthetic.csv rows this split may use, sorted by path so the choice does not depend on
    the order they were generated in; and how many rows were left out (duplicates aside)."""
    train_paths = {r.path for r in split.real_rows("train")}
    heldout = split.heldout_paths()
    rows = [r for r in read_synthetic(ws) if r.source == "synthetic"]
    unique = {r.path: r for r in reversed(rows)}  # a path listed twice counts once (its first row)
    usable = [r for r in unique.values()
              if r.path not in heldout and r.parent_paths and all(p in train_paths for p in r.parent_paths)
              and Path(r.path).is_file()]
    return sorted(usable, key=lambda r: r.path), len(unique) - len(usable)


def _shortfall(pool: list[Row], wanted: dict[str, int]) -> dict[str, tuple[int, int]]:
    have = Counter(f"{r.label}/{r.method}" for r in pool)
    return {key: (n, have[key]) for key, n in wanted.items() if have[key] < n}


def _missing_message(ws: Workspace, split: Split, config: RebalanceConfig, short: dict[str, tuple[int, int]]) -> str:
    needs = ", ".join(f"{key.split('/')[0]} needs {n} {key.split('/')[1]} images (has {have})"
                      for key, (n, have) in short.items())
    tail = (f" --seed {config.seed}" if config.seed else "") + f" --data {ws.data} --work {ws.root}"
    counts = {n for n, _have in short.values()}
    if config.method_shares() is None and not config.class_methods and len(short) == len(split.defect_classes) and len(counts) == 1:
        commands = f"defectsynth generate --class all --n {counts.pop()}{tail}"  # each class's default method
    else:
        commands = " && ".join(f"defectsynth generate --class {key.split('/')[0]} --n {n} "
                               f"--method {key.split('/')[1]}{tail}" for key, (n, _have) in short.items())
    return (f"not enough synthetic images for --strategy {config.strategy} in {ws.synthetic_csv}: {needs}; "
            f"run '{commands}', or pass --generate")
