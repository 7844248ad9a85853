"""Train a learned generator on a workspace's split, or re-use the one in <work>/models/<method>/ when it
was trained on the same split (and preset)."""

from __future__ import annotations

import json
from collections.abc import Callable

import torch

from defectsynth.data.check import require_usable_defects
from defectsynth.data.guard import train_rows
from defectsynth.data.split import Split
from defectsynth.errors import DefectsynthError
from defectsynth.synth.base import Generator
from defectsynth.synth.inpaint import CONFIG
from defectsynth.synth.registry import create_generator
from defectsynth.workspace import Workspace


def resolve_preset(preset: str | None) -> str:
    """"auto" (or nothing): gpu when a CUDA GPU is visible, else cpu."""
    if preset in (None, "auto"):
        return "gpu" if torch.cuda.is_available() else "cpu"
    return preset


def _create(ws: Workspace, split: Split, method: str, preset: str, device: str, seed: int,
            progress: bool, **overrides) -> Generator:
    gen = create_generator(method, preset=preset, device=device, seed=seed, identity=split.identity(),
                           cache_dir=ws.cache_dir, progress=progress, **overrides)
    if not gen.trainable:
        raise DefectsynthError(f"--method {method} has nothing to train; 'defectsynth generate --method {method}' "
                               "works without fitting")
    return gen


def fit_generator(ws: Workspace, split: Split, method: str, preset: str | None = "auto", device: str = "auto",
                  seed: int = 0, progress: bool = True, **overrides) -> Generator:
    """Train `method` on the split's train images and save it to ws.model_dir(method)."""
    gen = _create(ws, split, method, resolve_preset(preset), device, seed, progress, **overrides)
    rows = train_rows(split, f"fit {method}")
    require_usable_defects(rows)
    gen.fit(rows)
    gen.save(ws.model_dir(method))
    return gen


def load_or_fit(ws: Workspace, split: Split, method: str, preset: str | None = None, device: str = "auto",
                seed: int = 0, progress: bool = True, say: Callable[[str], None] = print, **overrides) -> Generator:
    """The saved model when it fits this split; otherwise train one (saying why) and save it.
    Without a preset, the saved model's preset is kept. `overrides` change preset settings; a loaded
    model takes only the sampling ones (e.g. diffusion steps, sampler, guidance)."""
    folder = ws.model_dir(method)
    if preset is None and (folder / CONFIG).is_file():
        try:
            preset = json.loads((folder / CONFIG).read_text())["preset"]
        except (ValueError, KeyError):
            preset = None
    gen = _create(ws, split, method, resolve_preset(preset), device, seed, progress, **overrides)
    if not (folder / CONFIG).is_file():
        say(f"No trained {method} model in {folder}: training one now (preset {gen.preset}).")
    else:
        try:
            gen.load(folder)
            return gen
        except DefectsynthError as e:
            say(f"{e}. Training {method} again now (preset {gen.preset}).")
    return fit_generator(ws, split, method, gen.preset, device, seed, progress, **overrides)
