"""The one training loop, readable top to bottom (nanoGPT style).

    result = train_classifier(train_rows, val_rows, classes, cache, TrainConfig(...), rebalance_config, out_dir)

Runs on whatever accelerate picks (CPU, one GPU, or several under `accelerate launch`), with bf16/fp16
autocast on CUDA and channels_last training on CUDA and CPU (`channels_last`; bench/train.py measures
it). The image loss and sampler come from the training set's rebalancing settings. A defect-map model
(models.has_map) also learns a class per map cell from the masks: the same affine moves image and
mask, and a per-cell cross-entropy (background weighted down) is added.
With a `reference` (train/reference.py) every image the model sees carries more channels, how it
differs from the closest good training images; the affine moves it with the image, the lighting
jitter leaves it alone, and the checkpoint records the good images so that predict can rebuild it.
After every epoch the model is scored on the validation fold (real training images held back from
training), when there is one; the best epoch (else the last, or `stop_epoch`) is saved as safetensors
with a config JSON beside it, which also holds the detection thresholds set on `calibration_rows`
(held-back good training images) for every decision rule (train/decide.py). A model trained on mirror
images (`hflip`, `vflip`) predicts, everywhere (validation, thresholds, evaluation, predict), the mean
over the image and those mirror images (flip_views).
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_bytes
from torch import nn
from torch.utils.data import DataLoader, RandomSampler

from defectsynth.balance import RebalanceConfig, make_loss, make_sampler
from defectsynth.data.cache import ImageCache
from defectsynth.data.layout import GOOD
from defectsynth.data.manifest import Row
from defectsynth.device import pick_device
from defectsynth.errors import DefectsynthError
from defectsynth.io import write_bytes, write_text
from defectsynth.train.data import Augment, ImageSet, cell_targets, image_channels, normalize, to_unit
from defectsynth.train.decide import (
    DECISION,
    DEFAULT_RULE,
    FALSE_ALARM_TARGET,
    calibrate,
    class_scores,
    decide,
    detection_score,
    rules_for,
)
from defectsynth.train.models import BACKGROUND, create_classifier, has_map, load_state, model_outputs
from defectsynth.train.reference import CHANNELS as REFERENCE_CHANNELS
from defectsynth.train.reference import Reference, reference_channels


@dataclass
class TrainConfig:
    model: str = "resnet18"
    weights: str = "auto"
    size: int = 128
    epochs: int = 10
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 0.05
    seed: int = 0
    device: str = "auto"
    samples_per_epoch: int | None = None  # None: one pass over the training rows
    hflip: bool = False
    vflip: bool = False
    degrees: float = 8.0  # augmentation's rotation range; 180 (any angle) for parts that lie at any angle
    map_weight: float = 1.0  # weight of the per-cell map loss beside the image loss (map models)
    background_weight: float = 0.25  # class weight of background cells in the map loss: most cells are
    rule: str = DEFAULT_RULE  # decision rule of a map model for epoch selection and prediction
    stop_epoch: int | None = None  # stop after this epoch, on the schedule of `epochs` (k-fold refit)
    channels_last: bool = True  # train in channels_last memory format on CPU and CUDA: same model, faster steps


@dataclass
class TrainResult:
    checkpoint: Path  # folder with model.safetensors and config.json
    weights_note: str
    best_epoch: int
    val_score: float  # balanced accuracy on the validation fold at the best epoch
    train_size: int
    wall_s: float
    history: list[dict]


def make_accelerator(device: str) -> Accelerator:
    kind = pick_device(device).type
    precision = ("bf16" if torch.cuda.is_bf16_supported() else "fp16") if kind == "cuda" else "no"
    return Accelerator(cpu=kind == "cpu", mixed_precision=precision)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def flip_views(config: TrainConfig) -> tuple[tuple[int, ...], ...]:
    """The views a model's prediction averages over: the image itself and each mirror image it trained on
    (dims of N x C x H x W to flip). A model trained on mirrored parts is no more sure of a part than of its
    mirror, yet its two answers differ; their mean is steadier. On real transistor (the recipe's 5 balanced
    models, offline) balanced accuracy 0.615 -> 0.659, image AUROC 0.917 -> 0.930 (README)."""
    views = [()]
    if config.hflip:
        views.append((3,))
    if config.vflip:
        views.append((2,))
    if config.hflip and config.vflip:
        views.append((2, 3))
    return tuple(views)


def saved_views(config: dict) -> tuple[tuple[int, ...], ...]:
    """The views a checkpoint's thresholds were set with (config.json "views"); one view for a checkpoint
    saved before views were recorded, whose thresholds were set on the image alone."""
    return tuple(tuple(dims) for dims in config.get("views", [[]]))


@torch.no_grad()
def predict_outputs(model: nn.Module, images: torch.Tensor, device: torch.device, batch_size: int = 64,
                    channels_last: bool = False, reference_channels: int = 0,
                    flips: tuple[tuple[int, ...], ...] = ((),)) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Image logits and map logits (None for a plain classifier), float32 on the CPU, for a uint8
    N x C x H x W tensor (its last `reference_channels` the difference channels), in eval mode; averaged
    over the `flips` (flip_views), each map flipped back onto the image."""
    assert flips, "predict_outputs needs at least one view: ((),) is the image alone"
    model.eval()
    logits, maps = [], []
    for i in range(0, len(images), batch_size):
        x = normalize(images[i:i + batch_size].to(device, non_blocking=True), reference_channels)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, enabled=device.type == "cuda"):
            views = [model_outputs(model(x.flip(dims) if dims else x)) for dims in flips]
        logits.append(sum(out.float() / len(flips) for out, _ in views).cpu())
        if views[0][1] is not None:
            maps.append(sum((cells.float().flip(dims) if dims else cells.float()) / len(flips)
                            for (_, cells), dims in zip(views, flips, strict=True)).cpu())
    if not logits:
        return torch.empty(0, 0), None
    return torch.cat(logits), (torch.cat(maps) if maps else None)


def predict_logits(model: nn.Module, images: torch.Tensor, device: torch.device, batch_size: int = 64,
                   channels_last: bool = False, reference_channels: int = 0) -> torch.Tensor:
    """Image logits (float32, on the CPU) of the images alone (one view) for a uint8 N x C x H x W tensor,
    in eval mode."""
    return predict_outputs(model, images, device, batch_size, channels_last, reference_channels)[0]


def _balanced_accuracy(labels: torch.Tensor, preds: torch.Tensor) -> float:
    recalls = [(preds[labels == c] == c).float().mean().item() for c in labels.unique()]
    return float(np.mean(recalls)) if recalls else 0.0


def train_classifier(train_rows: list[Row], val_rows: list[Row], classes: list[str], cache: ImageCache,
                     config: TrainConfig, rebalance: RebalanceConfig, out_dir: Path,
                     progress: bool = True, description: str = "training",
                     calibration_rows: list[Row] | None = None, reference: Reference | None = None) -> TrainResult:
    start = time.perf_counter()
    if not train_rows:
        raise DefectsynthError("the training set is empty after carving the validation fold; add training images")
    if has_map(config.model) and classes.index(GOOD) != BACKGROUND:
        raise DefectsynthError(f"classes {', '.join(classes)}: a defect-map model needs {GOOD!r} first (its "
                               "background channel); make the split again with defectsynth split")
    accelerator = make_accelerator(config.device)
    device = accelerator.device
    cuda = device.type == "cuda"
    fast_layout = config.channels_last and device.type in ("cpu", "cuda")
    seed_everything(config.seed)
    deterministic = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(not cuda, warn_only=True)  # cuDNN determinism costs too much speed

    # data: decoded once into memory; the sampler comes from the rebalancing settings
    channels = image_channels(train_rows, cache, config.size)
    dense = has_map(config.model)
    compare = REFERENCE_CHANNELS if reference is not None else 0  # how images differ from good parts
    train_set = ImageSet(train_rows, classes, cache, config.size, channels, masks=dense, reference=reference)
    val_set = ImageSet(val_rows, classes, cache, config.size, channels, reference=reference) if val_rows else None
    counts = torch.bincount(train_set.labels, minlength=len(classes)).tolist()
    num_samples = config.samples_per_epoch or len(train_set)
    loader_gen = torch.Generator().manual_seed(config.seed)
    sampler = make_sampler(rebalance.sampler, train_set.labels.numpy(), num_samples, loader_gen)
    if sampler is None:
        sampler = RandomSampler(train_set, num_samples=num_samples, generator=loader_gen)
    loader = DataLoader(train_set, batch_size=config.batch_size, sampler=sampler,
                        drop_last=num_samples > config.batch_size, pin_memory=cuda)
    augment = Augment(degrees=config.degrees, hflip=config.hflip, vflip=config.vflip)
    views = flip_views(config)  # every prediction sees the mirror images the model trains on
    aug_gen = torch.Generator().manual_seed(config.seed + 1)

    # model, loss, optimizer, schedule
    model, weights_note = create_classifier(config.model, len(classes), channels, config.weights, compare)
    if fast_layout:
        model = model.to(memory_format=torch.channels_last)
    loss_fn = make_loss(rebalance.loss, counts)
    good = classes.index(GOOD)
    cell_weight = torch.ones(len(classes), device=device)
    cell_weight[good] = config.background_weight
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    loss_fn = loss_fn.to(device)
    steps_per_epoch = max(1, len(loader))
    total_steps = config.epochs * steps_per_epoch
    # Not prepared by accelerate: stepped once per optimizer step, on every process alike.
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr, total_steps=total_steps,
                                                   pct_start=0.15)

    columns = [TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total} steps"),
               TextColumn("loss {task.fields[loss]:.3f}  val {task.fields[val]}"),
               TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn()]
    bar = Progress(*columns, disable=not (progress and accelerator.is_main_process), transient=True)
    best = {"score": -1.0, "loss": float("inf"), "epoch": 0, "state": None}
    history = []
    with bar:
        task = bar.add_task(description, total=total_steps, loss=float("nan"), val="-")
        for epoch in range(1, config.epochs + 1):
            model.train()
            running, seen, data_s, epoch_start = 0.0, 0, 0.0, time.perf_counter()
            fetch_start = epoch_start
            for images, labels, *masks in loader:
                data_s += time.perf_counter() - fetch_start  # time the step waited for its batch
                labels = labels.to(device)
                x = to_unit(images.to(device, non_blocking=True))
                if dense:  # the mask follows its image through the same affine
                    x, moved = augment(x, aug_gen, masks[0], jitter_channels=channels)
                else:
                    x = augment(x, aug_gen, jitter_channels=channels)
                x = normalize(x, compare)
                if fast_layout:
                    x = x.contiguous(memory_format=torch.channels_last)
                with accelerator.autocast():
                    logits, maps = model_outputs(model(x))
                    loss = loss_fn(logits.float(), labels)
                    if dense:
                        target = cell_targets(moved, labels, tuple(maps.shape[-2:]), good)
                        if (target >= 0).any():
                            loss = loss + config.map_weight * nn.functional.cross_entropy(
                                maps.float(), target, weight=cell_weight, ignore_index=-100)
                optimizer.zero_grad(set_to_none=True)
                accelerator.backward(loss)
                optimizer.step()
                schedule.step()
                running += loss.item() * len(labels)
                seen += len(labels)
                bar.update(task, advance=1, loss=loss.item())
                fetch_start = time.perf_counter()

            # model selection on the validation fold: balanced accuracy, then validation loss
            record = {"epoch": epoch, "train_loss": running / max(seen, 1), "samples": seen,
                      "train_s": time.perf_counter() - epoch_start, "data_wait_s": data_s}
            if val_set is not None:
                logits, maps = predict_outputs(accelerator.unwrap_model(model), val_set.images, device,
                                               channels_last=fast_layout, reference_channels=compare,
                                               flips=views)
                record["val_loss"] = nn.functional.cross_entropy(logits, val_set.labels).item()
                scores = class_scores(logits, maps, config.rule if dense else "image", good)
                record["val_balanced_accuracy"] = _balanced_accuracy(val_set.labels,
                                                                     torch.from_numpy(decide(scores, good)))
                bar.update(task, val=f"{record['val_balanced_accuracy']:.3f}")
            history.append(record)
            score, vloss = record.get("val_balanced_accuracy", 0.0), record.get("val_loss", 0.0)
            if val_set is None or score > best["score"] or (score == best["score"] and vloss < best["loss"]):
                state = accelerator.unwrap_model(model).state_dict()
                best = {"score": score, "loss": vloss, "epoch": epoch,
                        "state": {k: v.detach().to("cpu", copy=True).contiguous() for k, v in state.items()}}
            if config.stop_epoch is not None and epoch >= config.stop_epoch:
                break

    # detection thresholds of every decision rule, on held-back good training images
    final = accelerator.unwrap_model(model)
    final.load_state_dict(best["state"])
    if not cuda:  # thresholds from the very numbers evaluation and predict get from the saved, contiguous model
        final = final.to(memory_format=torch.contiguous_format)
    rule = config.rule if dense else "image"
    thresholds = {}
    if calibration_rows:
        held = ImageSet(calibration_rows, classes, cache, config.size, channels, reference=reference)
        logits, maps = predict_outputs(final, held.images, device, channels_last=cuda, reference_channels=compare,
                                       flips=views)
        thresholds = {rule: calibrate(detection_score(class_scores(logits, maps, rule, good), good))
                      for rule in rules_for(maps)}

    config_doc = {"model": config.model, "num_classes": len(classes), "in_channels": channels,
                  "classes": classes, "size": config.size, "weights_note": weights_note,
                  "best_epoch": best["epoch"], "train": asdict(config), "rebalance": rebalance.model_dump(),
                  "rule": rule, "decision": DECISION[rule], "thresholds": thresholds,
                  "calibration_size": len(calibration_rows or []), "false_alarm_target": FALSE_ALARM_TARGET,
                  "calibration": [r.path for r in calibration_rows or []],
                  "views": [list(dims) for dims in views], "history": history,
                  "reference": reference.describe() if compare else None}
    if accelerator.is_main_process:
        save_checkpoint(out_dir, best["state"], config_doc)
    accelerator.wait_for_everyone()
    torch.use_deterministic_algorithms(deterministic)
    return TrainResult(Path(out_dir), weights_note, best["epoch"], best["score"], len(train_set),
                       time.perf_counter() - start, history)


def save_checkpoint(out_dir: Path, state: dict[str, torch.Tensor], config: dict) -> None:
    write_bytes(Path(out_dir) / "model.safetensors", safetensors_bytes(state, metadata={"model": config["model"]}))
    write_text(Path(out_dir) / "config.json", json.dumps(config, indent=1, default=str) + "\n")


def load_classifier(out_dir: Path) -> tuple[nn.Module, dict]:
    """The model saved by train_classifier in `out_dir` (eval mode, CPU) and its config."""
    out_dir = Path(out_dir)
    try:
        config = json.loads((out_dir / "config.json").read_text())
        state = load_file(str(out_dir / "model.safetensors"))
    except (OSError, ValueError) as e:
        raise DefectsynthError(f"{out_dir}: no readable classifier checkpoint ({e}); train it again") from None
    model, _ = create_classifier(config["model"], config["num_classes"], config["in_channels"], "none",
                                 reference_channels(config))
    load_state(model, state)
    return model.eval(), config
