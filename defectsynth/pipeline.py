"""`defectsynth run RECIPE`: data → split → generate → rebalance → train-eval, skipping current steps.

A step is current when its fingerprint (its settings plus the bytes of the files it reads) matches
the one recorded in <work>/stamps/<step>.sha256 after its last successful run, and its outputs are
still there. Every step is also safe to re-run by itself: this only saves time.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

from defectsynth.balance import ORIGINAL, rebalance
from defectsynth.data.split import Split, load_split, make_split, save_split
from defectsynth.errors import DefectsynthError
from defectsynth.io import write_text
from defectsynth.recipe import Recipe
from defectsynth.synth.generate import generate
from defectsynth.workspace import Workspace, default_data

DERIVED = ("synthetic", "training", "models", "splits", "stamps")  # made from the split; stale when it changes


def fingerprint(settings: object, inputs: list[Path]) -> str:
    h = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode())
    for path in inputs:
        h.update(str(path).encode())
        h.update(path.read_bytes() if path.is_file() else b"<missing>")
    return h.hexdigest()


class Stamp:
    """The record that a step ran to the end with these settings on these input bytes."""

    def __init__(self, ws: Workspace, step: str, settings: object, inputs: list[Path], outputs: list[Path]):
        self.path = ws.root / "stamps" / f"{step}.sha256"
        self.step = step
        self.fingerprint = fingerprint(settings, inputs)
        self.outputs = outputs

    def current(self, say: Callable[[str], None]) -> bool:
        done = self.path.is_file() and self.path.read_text() == self.fingerprint
        if done and all(p.exists() for p in self.outputs):
            say(f"{self.step}: current, skipped")
            return True
        return False

    def mark(self) -> None:
        write_text(self.path, self.fingerprint)


def prepare_data(recipe: Recipe, data: Path | None, say: Callable[[str], None]) -> Path:
    path = Path(data or recipe.data.path or default_data())
    if recipe.data.demo is not None and not (path / "train" / "good").is_dir():
        from defectsynth.data.demo import make_demo

        say(f"data: making the procedural demo category in {path} ({recipe.data.demo.size} px)")
        make_demo(path, size=recipe.data.demo.size, seed=recipe.data.demo.seed)
    return path


def prepare_split(ws: Workspace, recipe: Recipe, say: Callable[[str], None]):
    wanted = make_split(ws.data, shots=recipe.split.shots, protocol=recipe.split.protocol, seed=recipe.split.seed)
    if ws.split_json.exists():
        if load_split(ws.split_json) == wanted:
            say("split: current, skipped")
            return wanted
        stale = [ws.root / d for d in DERIVED if (ws.root / d).exists()]
        say(f"split: the recipe's split differs from {ws.split_json}; removing what was made from the old one "
            f"({', '.join(p.name for p in stale) or 'nothing'})")
        for p in stale:
            shutil.rmtree(p)
    save_split(wanted, ws.split_json)
    say(f"split: wrote {ws.split_json} ({wanted.protocol}, {wanted.shots} train defects per type)")
    return wanted


def check_names(ws: Workspace, split: Split, recipe: Recipe) -> None:
    """The classes the generate steps name and the arms train_eval compares, checked before any step runs,
    so that a typo stops the recipe now rather than after generating and rebalancing."""
    for i, step in enumerate(recipe.generate):
        if step.label != "all" and step.label not in split.defect_classes:
            raise DefectsynthError(f"recipe generate.{i}.class = {step.label!r}: not a defect class of {ws.data}; "
                                   f"use one of: {', '.join(split.defect_classes)} (or all)")
    if recipe.train_eval is None:
        return
    made = {*recipe.rebalance, ORIGINAL} if recipe.rebalance else set()
    for arm in recipe.train_eval.arms:
        if arm not in made and not ws.training_csv(arm).is_file():
            have = sorted(made | {p.stem for p in (ws.root / "training").glob("*.csv")})
            raise DefectsynthError(f"recipe train_eval.arms: {arm!r} is made by no rebalance step and is not in "
                                   f"{ws.root / 'training'}; use one of: {', '.join(have) or '(none yet)'}, or add "
                                   f"a rebalance step named {arm}")


@contextmanager
def timed(timings: dict[str, float] | None, stage: str):
    start = time.perf_counter()
    yield
    if timings is not None:
        timings[stage] = timings.get(stage, 0.0) + time.perf_counter() - start


def run_recipe(recipe: Recipe, data: Path | None = None, work: Path | None = None, progress: bool = True,
               say: Callable[[str], None] = print, timings: dict[str, float] | None = None) -> dict | None:
    """Execute the recipe; return train_eval's result (or None when the recipe has no train_eval).

    `timings`, when given, receives the wall seconds of each stage (bench/e2e.py prints them)."""
    with timed(timings, "data"):
        ws = Workspace.open(prepare_data(recipe, data, say), work or recipe.work)
    say(f"workspace: {ws.root}")
    with timed(timings, "split"):
        split = prepare_split(ws, recipe, say)
    check_names(ws, split, recipe)

    for step in recipe.generate:
        for label in split.defect_classes if step.label == "all" else [step.label]:
            stamp = Stamp(ws, f"generate-{label}-{step.method or 'default'}-{step.seed}",
                          {**step.model_dump(), "label": label}, [ws.split_json], [ws.synthetic_csv])
            with timed(timings, f"generate {label}"):
                if not stamp.current(say):
                    generate(ws, split, label, step.n, method=step.method, seed=step.seed, progress=progress,
                             say=say)
                    stamp.mark()

    for name, config in recipe.rebalance.items():
        stamp = Stamp(ws, f"rebalance-{name}", config.model_dump(), [ws.split_json, ws.synthetic_csv],
                      [ws.training_csv(name), ws.training_csv("original")])
        with timed(timings, f"rebalance {name}"):
            if not stamp.current(say):
                rebalance(ws, split, config, name=name, progress=progress)
                stamp.mark()
                say(f"rebalance: wrote {ws.training_csv(name)}")

    if recipe.train_eval is None:
        return None
    from defectsynth.train.run import train_eval

    te = recipe.train_eval
    inputs = [ws.split_json]
    for arm in te.arms:
        inputs += [ws.training_csv(arm), ws.training_csv(arm).with_suffix(".json")]
    saved = ws.root / "stamps" / "train-eval.json"
    stamp = Stamp(ws, "train-eval", te.model_dump(), inputs, [saved])
    if stamp.current(say):
        result = json.loads(saved.read_text())
        result["report_dir"] = Path(result["report_dir"])
        return result
    with timed(timings, "train-eval"):
        result = train_eval(ws, te.arms, splits=te.splits, seeds=te.seeds, model=te.model, weights=te.weights,
                            size=te.size, epochs=te.epochs, device=te.device, preset=te.preset, progress=progress,
                            say=say, val=te.val, augment=te.augment, reference=te.reference,
                            first_seed=te.first_seed)
    write_text(saved, json.dumps({k: result[k] for k in ("report_dir", "summary", "settings")}, default=str))
    stamp.mark()
    return result
