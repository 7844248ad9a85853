"""Training and inference throughput of the default preset, training in both memory layouts in one run
(channels_last, the default, against contiguous), and the share of step time spent waiting for data
(target: 5% or less). Runs the real training loop on procedural images written to a
temporary folder, so it needs no dataset.

    .venv/bin/python bench/train.py [--preset default] [--images 256] [--epochs 2] [--device auto]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from defectsynth.balance import RebalanceConfig
from defectsynth.data.cache import ImageCache
from defectsynth.data.manifest import Row
from defectsynth.io import write_png
from defectsynth.train.data import ImageSet
from defectsynth.train.loop import TrainConfig, load_classifier, predict_logits, train_classifier
from defectsynth.train.presets import preset

CLASSES = ["good", "bent_lead", "cut_lead", "damaged_case", "misplaced"]


def make_rows(folder: Path, n: int, size: int) -> list[Row]:
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        label = CLASSES[i % len(CLASSES)]
        image = np.full((size, size, 3), 60 + 30 * (i % len(CLASSES)), np.uint8)
        image += rng.integers(0, 40, image.shape, dtype=np.uint8)
        path = folder / f"{i:04d}.png"
        write_png(path, image)
        rows.append(Row(path=str(path), label=label, split="train", source="real", method="real"))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="default")
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    settings = {**preset(args.preset), "epochs": args.epochs, "weights": "none"}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        rows = make_rows(tmp / "images", args.images, 2 * settings["size"])
        cache = ImageCache(tmp / "cache")
        rates = {}
        # both memory layouts in one run, channels_last (the default) last, so the ratio is of one machine's hour
        for layout in ("contiguous", "channels_last"):
            config = TrainConfig(**settings, device=args.device, seed=0, channels_last=layout == "channels_last")
            result = train_classifier(rows, rows[:20], CLASSES, cache, config, RebalanceConfig(strategy="none"),
                                      tmp / layout, progress=False)
            # the first epoch includes one-time costs (allocator, oneDNN kernel selection): report the last
            last = result.history[-1]
            rates[layout] = last["samples"] / last["train_s"]
        wait_share = last["data_wait_s"] / last["train_s"]

        model, _config = load_classifier(result.checkpoint)
        device = torch.device("cuda" if args.device != "cpu" and torch.cuda.is_available() else "cpu")
        model = model.to(device)
        images = ImageSet(rows, CLASSES, cache, settings["size"], 3).images
        predict_logits(model, images[:64], device)
        start = time.perf_counter()
        predict_logits(model, images, device)
        infer_rate = len(images) / (time.perf_counter() - start)

    print(f"preset {args.preset}: {settings['model']} at {settings['size']} px, batch {settings['batch_size']}, "
          f"device {device}, torch threads {torch.get_num_threads()}")
    for layout, rate in rates.items():
        print(f"training:  {rate:8.1f} samples/s  {layout} (epoch {len(result.history)} of {args.images} images)")
    print(f"channels_last / contiguous: {rates['channels_last'] / rates['contiguous']:.2f}x training throughput")
    print(f"inference: {infer_rate:8.1f} samples/s")
    print(f"data wait: {100 * wait_share:8.2f} % of training step time (target <= 5%), channels_last")


if __name__ == "__main__":
    main()
