"""What the learned inpainting generators (diffusion, gan) share: presets and device, the one training
loop (pretrain on good images with random holes, then adapt on the train defects of every class),
sampling into placed train masks with paste-back, and save/load tied to the split they were trained on.

A subclass builds its networks (`build`), takes one optimisation step (`train_step`), names the module
whose EMA weights are used and saved (`ema_module`), and fills holes deterministically given per-image
noise (`inpaint`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import torch
from diffusers.training_utils import EMAModel
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from safetensors.torch import load_file, save_file

from defectsynth.data.cache import ImageCache
from defectsynth.data.layout import GOOD
from defectsynth.data.manifest import Row
from defectsynth.device import pick_device
from defectsynth.errors import DefectsynthError
from defectsynth.io import atomic_path, read_image, read_mask, write_text
from defectsynth.synth.base import Generator, Sample
from defectsynth.synth.inpaint_data import CropData, crop_box, cut, paste_back, place_mask

CONFIG = "config.json"
WEIGHTS = "model.safetensors"


def describe_identity(identity: dict | None) -> str:
    if not identity:
        return "an unrecorded split"
    return (f"the {identity.get('protocol')} split (shots {identity.get('shots')}, seed {identity.get('seed')}) "
            f"of {identity.get('data_root')}")


class InpaintGenerator(Generator):
    trainable = True
    presets: dict[str, dict] = {}
    sample_settings: tuple[str, ...] = ()  # settings recorded in each sample's provenance

    def __init__(self, preset: str = "cpu", device: str = "auto", seed: int = 0, identity: dict | None = None,
                 cache_dir: Path | None = None, progress: bool = True, **overrides):
        if preset not in self.presets:
            raise DefectsynthError(f"--preset {preset!r} is unknown for {self.name}; use one of: "
                                   f"{', '.join(self.presets)}")
        unknown = sorted(set(overrides) - set(self.presets[preset]))
        if unknown:
            raise DefectsynthError(f"{self.name}: unknown setting(s) {', '.join(unknown)}; "
                                   f"known: {', '.join(self.presets[preset])}")
        self.preset, self.settings, self.overrides = preset, {**self.presets[preset], **overrides}, overrides
        self.device = pick_device(device)
        self.seed, self.identity, self.progress = seed, identity, progress
        self.cache = ImageCache(cache_dir) if cache_dir is not None else None
        self.classes: list[str] = []
        self.channels = 3
        self.goods: list[str] = []
        self.sources: dict[str, list[tuple[str, str]]] = {}
        self.fit_seconds = 0.0

    # --- what a subclass provides -------------------------------------------------------------
    def build(self) -> None:
        raise NotImplementedError

    def ema_module(self) -> torch.nn.Module:
        raise NotImplementedError

    def train_step(self, x0: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor) -> float:
        raise NotImplementedError

    def inpaint(self, known: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor,
                noise: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    # --- shared -------------------------------------------------------------------------------
    @property
    def null_label(self) -> int:
        """The extra class index used for classifier-free guidance (and class dropout in training)."""
        return len(self.classes)

    def autocast(self):
        amp = self.settings.get("amp", False) and self.device.type == "cuda"
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=amp)

    def _read(self, path: str, kind: str) -> np.ndarray:
        size = self.settings["image_size"]
        if self.cache is not None:
            return self.cache.mask(path, size) > 0 if kind == "mask" else self.cache.image(path, size)
        if kind == "mask":
            return cv2.resize(read_mask(Path(path)).astype(np.uint8), (size, size),
                              interpolation=cv2.INTER_NEAREST) > 0
        return cv2.resize(read_image(Path(path)), (size, size), interpolation=cv2.INTER_AREA)

    def _defect(self, path: str, mask_path: str) -> tuple[np.ndarray, np.ndarray]:
        mask = self._read(mask_path, "mask")
        if not mask.any():
            raise DefectsynthError(f"{mask_path}: the mask has no white (defect) pixels; fix or remove it "
                                   "(see 'defectsynth data check')")
        return self._read(path, "image"), mask

    def fit(self, rows: list[Row]) -> None:
        goods = [r for r in rows if r.label == GOOD and r.source == "real"]
        defects = [r for r in rows if r.label != GOOD and r.source == "real" and r.mask]
        if not goods or not defects:
            raise DefectsynthError(f"{self.name}: training needs good images and defects with masks in the "
                                   "train split; check split.json ('defectsynth split')")
        self.classes = [GOOD, *sorted({r.label for r in defects})]
        self.goods = [r.path for r in goods]
        self.sources = {c: [(r.path, r.mask) for r in defects if r.label == c] for c in self.classes[1:]}
        good_images = [self._read(p, "image") for p in self.goods]
        self.channels = 1 if good_images[0].ndim == 2 else 3
        data = CropData(good_images, {c: [self._defect(p, m) for p, m in src] for c, src in self.sources.items()},
                        self.classes, self.settings["crop"], self.settings["replay"])
        torch.manual_seed(self.seed)
        self.torch_rng = torch.Generator(self.device).manual_seed(self.seed)
        rng = np.random.default_rng(self.seed)
        self.build()
        phases = [("pretrain", self.settings["pretrain_steps"]), ("adapt", self.settings["adapt_steps"])]
        start = time.perf_counter()
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   TextColumn("ETA"), TimeRemainingColumn())
        with Progress(*columns, disable=not self.progress, transient=False) as bar:
            task = bar.add_task(f"fit {self.name}", total=sum(n for _, n in phases))
            for phase, steps in phases:
                # The EMA restarts with each phase, so the few adaptation steps are not averaged away.
                ema = EMAModel(self.ema_module().parameters(), decay=self.settings["ema_decay"],
                               use_ema_warmup=True, power=2 / 3)
                for _ in range(steps):
                    x0, mask, labels = (t.to(self.device) for t in data.batch(phase, self.settings["batch"], rng))
                    loss = self.train_step(x0, mask, labels)
                    ema.step(self.ema_module().parameters())
                    bar.update(task, advance=1, description=f"fit {self.name}: {phase} loss {loss:.3f}")
            ema.copy_to(self.ema_module().parameters())
        self.fit_seconds = time.perf_counter() - start

    def sample(self, label: str, n: int, rng: np.random.Generator) -> Iterator[Sample]:
        if not self.classes:
            raise DefectsynthError(f"{self.name}: not trained; run 'defectsynth fit --method {self.name}'")
        if label not in self.sources:
            raise DefectsynthError(f"{self.name} was trained without {label!r} defects; classes: "
                                   f"{', '.join(self.sources)}")
        module = self.ema_module()
        module.eval()
        crop, size = self.settings["crop"], self.settings["sample_batch"]
        for start in range(0, n, size):
            plans = []
            for _ in range(min(size, n - start)):
                good_path = self.goods[rng.integers(len(self.goods))]
                src_path, src_mask = self.sources[label][rng.integers(len(self.sources[label]))]
                good = read_image(Path(good_path))
                mask = place_mask(read_mask(Path(src_mask)), good.shape[:2], rng)
                box = crop_box(mask)
                known, m = cut(good, mask, box, crop)
                noise_seed = int(rng.integers(2**63))
                noise = torch.randn((self.channels, crop, crop), generator=torch.Generator().manual_seed(noise_seed))
                plans.append((good_path, src_path, good, mask, box, known, m, noise, noise_seed))
            known = torch.from_numpy(np.stack([p[5] for p in plans])).to(self.device)
            masks = torch.from_numpy(np.stack([p[6] for p in plans])).to(self.device)
            noise = torch.stack([p[7] for p in plans]).to(self.device)
            labels = torch.full((len(plans),), self.classes.index(label), dtype=torch.long, device=self.device)
            with torch.no_grad(), self.autocast():
                crops = self.inpaint(known, masks, labels, noise).float().cpu().numpy()
            for (good_path, src_path, good, mask, box, *_, noise_seed), out in zip(plans, crops, strict=True):
                parents = list(dict.fromkeys([good_path, src_path, *(p for p, _ in self.sources[label])]))
                yield Sample(paste_back(good, mask, box, out), mask, label, parents,
                             {"good": good_path, "mask_from": src_path, "box": [box.top, box.left, box.side],
                              "noise_seed": noise_seed, "preset": self.preset,
                              **{k: self.settings[k] for k in self.sample_settings}})

    def save(self, folder: Path) -> None:
        if not self.classes:
            raise DefectsynthError(f"{self.name}: nothing to save; fit it first")
        folder = Path(folder)
        state = {k: v.detach().cpu().contiguous() for k, v in self.ema_module().state_dict().items()}
        with atomic_path(folder / WEIGHTS) as tmp:
            save_file(state, str(tmp))
        doc = {"method": self.name, "preset": self.preset, "settings": self.settings, "seed": self.seed,
               "classes": self.classes, "channels": self.channels, "identity": self.identity,
               "goods": self.goods, "sources": self.sources, "fit_seconds": round(self.fit_seconds, 1)}
        write_text(folder / CONFIG, json.dumps(doc, indent=1) + "\n")

    def load(self, folder: Path) -> None:
        folder = Path(folder)
        if not (folder / CONFIG).is_file() or not (folder / WEIGHTS).is_file():
            raise DefectsynthError(f"{folder}: no trained {self.name} model; run 'defectsynth fit --method {self.name}'")
        try:
            doc = json.loads((folder / CONFIG).read_text())
            method, preset, identity = doc["method"], doc["preset"], doc["identity"]
        except (ValueError, KeyError) as e:
            raise DefectsynthError(f"{folder / CONFIG} is damaged ({e}); delete {folder} and run "
                                   f"'defectsynth fit --method {self.name}'") from e
        if method != self.name:
            raise DefectsynthError(f"{folder} holds a {method} model, not {self.name}; pass --method {method}")
        if self.identity is not None and identity != self.identity:
            raise DefectsynthError(f"{folder} was trained on {describe_identity(identity)}, not on this workspace's "
                                   f"split; run 'defectsynth fit --method {self.name}' to train it for this split")
        if preset != self.preset:
            raise DefectsynthError(f"{folder} was trained with --preset {preset}, not {self.preset}; pass "
                                   f"--preset {preset}, or run 'defectsynth fit --method {self.name} --preset "
                                   f"{self.preset}'")
        # A trained model keeps its training settings; only how it samples can be changed.
        sampling = {k: v for k, v in self.overrides.items() if k in (*self.sample_settings, "sample_batch")}
        self.settings, self.seed, self.identity = {**doc["settings"], **sampling}, doc["seed"], identity
        self.classes, self.channels, self.goods = doc["classes"], doc["channels"], doc["goods"]
        self.sources = {c: [tuple(s) for s in src] for c, src in doc["sources"].items()}
        self.fit_seconds = doc.get("fit_seconds", 0.0)
        self.torch_rng = torch.Generator(self.device).manual_seed(self.seed)
        self.build()
        self.ema_module().load_state_dict(load_file(str(folder / WEIGHTS), device=str(self.device)))
