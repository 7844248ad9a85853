"""Quality of the generators per defect class: train-on-synthetic / test-on-real (TSTR) recall on the
held-out real defects, a diversity figure, and wall times to fit and to sample 100 images.

TSTR: a small CNN (from scratch, whole images at --size px) is trained on the train-split good images plus
--n synthetic images per defect class of one method, and tested on the held-out real images (test good
and held-out defects). The "real" row trains on the few real train defects, repeated to --n, for
reference. Held-out defects per class are few (7 on transistor: one image is 14 points), so read the
per-class figures as coarse. Diversity: mean pairwise RMS distance (0-255 scale) between crops around
the defect masks, resized to 64 px; the "held-out" row is the same figure for the real held-out defects.
Placement: the share of each synthetic defect mask that lies on the part (mask ∩ part / mask area), the
part being where it is in the good image the defect was pasted on or in the synthetic image itself (a
missing piece was on the first, a bent one is on the second), found as in defectsynth/synth/partpose.py
and grown by 2% of the image side, since masks are drawn a little generously; per class, the share of
masks at least 0.9 on the part and the mean. A texture has no part: every mask is on it.
`--placement-only` skips the TSTR training.

    OMP_NUM_THREADS=1 .venv/bin/python bench/quality.py --data ../shared/data/mvtec_ad_512/transistor \
        --work runs/learned-real/ws --preset cpu
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from defectsynth.data.cache import ImageCache
from defectsynth.data.guard import train_rows
from defectsynth.errors import DefectsynthError
from defectsynth.io import read_image, read_mask
from defectsynth.synth.fitting import load_or_fit
from defectsynth.synth.inpaint_data import crop_box
from defectsynth.synth.partpose import PartPoses
from defectsynth.synth.registry import create_generator
from defectsynth.train.metrics import compute_metrics
from defectsynth.workspace import Workspace

CROP = 64
LEARNED = ("gan", "diffusion")


def defect_crop(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    box = crop_box(mask)
    patch = image[box.top:box.top + box.side, box.left:box.left + box.side]
    return cv2.resize(patch, (CROP, CROP), interpolation=cv2.INTER_AREA).astype(np.float32)


def diversity(crops: list[np.ndarray]) -> float:
    x = np.stack(crops).reshape(len(crops), -1)
    sq = (x**2).sum(1)
    d2 = np.maximum(sq[:, None] + sq[None] - 2 * x @ x.T, 0) / x.shape[1]
    iu = np.triu_indices(len(crops), 1)
    return float(np.sqrt(d2[iu]).mean())


ON_PART = 0.9  # a mask counts as on the part when at least this share of its area is
PART_MARGIN = 0.02  # share of the image side the part is grown by (PartPoses.on_part)


def good_parent(sample, goods: set[str]) -> str:
    if sample.params.get("good"):
        return sample.params["good"]
    return [p for p in sample.parents if p in goods][-1]


def small(image: np.ndarray, size: int) -> np.ndarray:
    im = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)
    return im if im.ndim == 3 else np.repeat(im[:, :, None], 3, axis=2)


def cnn(num_classes: int) -> nn.Module:
    layers, cin = [], 3
    for cout in (16, 32, 64, 128):
        layers += [nn.Conv2d(cin, cout, 3, 2, 1), nn.BatchNorm2d(cout), nn.ReLU()]
        cin = cout
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, num_classes))


def tstr(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, classes: list[str], epochs: int,
         seed: int) -> np.ndarray:
    """Class scores of the test images from a small CNN trained on (train_x, train_y); N x C."""
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    model = cnn(len(classes))
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    x = torch.from_numpy(train_x).permute(0, 3, 1, 2).float() / 127.5 - 1
    y = torch.from_numpy(train_y)
    weight = 1.0 / torch.bincount(y, minlength=len(classes)).clamp(min=1).float()
    for _ in range(epochs):
        model.train()
        for idx in torch.randperm(len(x), generator=g).split(32):
            shift = torch.randint(-4, 5, (2,), generator=g).tolist()
            xb = torch.roll(x[idx], shifts=shift, dims=(2, 3))
            loss = F.cross_entropy(model(xb), y[idx], weight=weight * len(classes) / weight.sum())
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        t = torch.from_numpy(test_x).permute(0, 3, 1, 2).float() / 127.5 - 1
        return torch.softmax(model(t), 1).numpy()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/mvtec_ad_512/transistor")
    ap.add_argument("--work", type=Path, default=Path("runs/learned-real/ws"))
    ap.add_argument("--methods", default="real,cutpaste,gan,diffusion")
    ap.add_argument("--preset", default="cpu", help="preset of the learned generators")
    ap.add_argument("--steps", type=int, default=None, help="diffusion sampling steps (default: the preset's)")
    ap.add_argument("--n", type=int, default=100, help="synthetic images per defect class")
    ap.add_argument("--size", type=int, default=128, help="classifier image side")
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--seeds", type=int, default=2, help="classifier seeds (averaged)")
    ap.add_argument("--placement-only", action="store_true", help="only the placement check (no TSTR training)")
    args = ap.parse_args()

    ws = Workspace.open(args.data, args.work)
    split = ws.split()
    rows = train_rows(split, "bench quality")
    cache = ImageCache(ws.cache_dir)
    classes, defects = split.classes, split.defect_classes
    goods = [r.path for r in rows if r.label == "good"]
    good_x = np.stack([small(cache.image(p, args.size), args.size) for p in goods])
    test = split.real_rows("test")
    test_x = np.stack([small(cache.image(r.path, args.size), args.size) for r in test])
    heldout_div = {c: diversity([defect_crop(read_image(Path(r.path)), read_mask(Path(r.mask)))
                                 for r in test if r.label == c]) for c in defects}
    poses = PartPoses.from_paths(goods)
    print(f"part: {poses.describe()}", flush=True)
    placements: dict[str, dict[str, list[float]]] = {}

    results = {}
    for method in args.methods.split(","):
        images: dict[str, list[np.ndarray]] = {}
        crops: dict[str, list[np.ndarray]] = {}
        sample_s: dict[str, float] = {}
        start = time.perf_counter()
        if method == "real":
            fit_s = 0.0
            for c in defects:
                reals = [(read_image(Path(r.path)), read_mask(Path(r.mask))) for r in rows if r.label == c]
                images[c] = [small(reals[i % len(reals)][0], args.size) for i in range(args.n)]
                crops[c] = [defect_crop(im, m) for im, m in reals]
        else:
            if method in LEARNED:
                sampling = {"steps": args.steps} if method == "diffusion" and args.steps else {}
                gen = load_or_fit(ws, split, method, preset=args.preset, **sampling)
                fit_s = gen.fit_seconds
            else:
                try:
                    gen = create_generator(method)
                except DefectsynthError as e:
                    print(f"skipping {method}: {e}")
                    continue
                gen.fit(rows)
                fit_s = time.perf_counter() - start
            for k, c in enumerate(defects):
                t = time.perf_counter()
                samples = list(gen.sample(c, args.n, np.random.default_rng([0, k])))
                sample_s[c] = time.perf_counter() - t
                placements.setdefault(method, {})[c] = [
                    poses.on_part(s.mask, read_image(Path(good_parent(s, set(goods)))), s.image, margin=PART_MARGIN)
                    for s in samples]
                images[c] = [small(s.image, args.size) for s in samples]
                crops[c] = [defect_crop(s.image, s.mask) for s in samples]
        if args.placement_only:
            continue
        train_x = np.concatenate([good_x, *[np.stack(images[c]) for c in defects]])
        train_y = np.array([0] * len(good_x) + [classes.index(c) for c in defects for _ in images[c]])
        recalls, type_acc = {c: [] for c in defects}, []
        for seed in range(args.seeds):
            scores = tstr(train_x, train_y, test_x, classes, args.epochs, seed)
            pred = [classes[i] for i in scores.argmax(1)]
            m = compute_metrics([r.label for r in test], pred, classes, scores=scores)
            for c in defects:
                recalls[c].append(m["per_class"][c]["recall"])
            type_acc.append(m["defect_type_accuracy_4way_argmax"])
        results[method] = {"fit_s": fit_s, "sample_s": sample_s, "recall": {c: np.mean(v) for c, v in recalls.items()},
                           "type_acc": float(np.mean(type_acc)), "div": {c: diversity(crops[c]) for c in defects}}
        r = results[method]
        print(f"{method}: fit {fit_s:.0f} s; 4-way type acc {100 * r['type_acc']:.1f}; recall "
              + ", ".join(f"{c} {100 * r['recall'][c]:.0f}" for c in defects) + "; diversity "
              + ", ".join(f"{c} {r['div'][c]:.1f}" for c in defects) + "; sample s "
              + ", ".join(f"{c} {v:.1f}" for c, v in sample_s.items())
              + f"; {time.perf_counter() - start:.0f} s in all", flush=True)

    print(f"\nPlacement: share of synthetic masks at least {ON_PART} on the part (grown by {PART_MARGIN:.0%} of the "
          f"side) / mean share on the part; {poses.describe()}")
    print(f"| method | {' | '.join(defects)} | all |")
    print("|---" * (len(defects) + 2) + "|")
    for method, per_class in placements.items():
        cells = [f"{100 * np.mean(np.array(v) >= ON_PART):.0f}% / {np.mean(v):.2f}" for v in per_class.values()]
        everything = np.concatenate([np.array(v) for v in per_class.values()])
        print(f"| {method} | " + " | ".join(cells) + f" | {100 * np.mean(everything >= ON_PART):.1f}% |")
    if args.placement_only:
        return
    n_test = {c: sum(r.label == c for r in test) for c in defects}
    print(f"\nTSTR per-class recall (%) on held-out real defects (n = {n_test}), mean of {args.seeds} classifier "
          f"seeds; diversity (RMS, 0-255) of defect crops; sample time for {args.n} images")
    print(f"| method | {' | '.join(defects)} | 4-way type acc | fit s |")
    print("|---" * (len(defects) + 3) + "|")
    for method, r in results.items():
        print(f"| {method} | " + " | ".join(f"{100 * r['recall'][c]:.0f}" for c in defects)
              + f" | {100 * r['type_acc']:.1f} | {r['fit_s']:.0f} |")
    print(f"\n| diversity | {' | '.join(defects)} |")
    print("|---" * (len(defects) + 1) + "|")
    print("| held-out real | " + " | ".join(f"{heldout_div[c]:.1f}" for c in defects) + " |")
    for method, r in results.items():
        print(f"| {method} | " + " | ".join(f"{r['div'][c]:.1f}" for c in defects) + " |")
    print(f"\n| sample {args.n} (s) | {' | '.join(defects)} |")
    print("|---" * (len(defects) + 1) + "|")
    for method, r in results.items():
        if r["sample_s"]:
            print(f"| {method} | " + " | ".join(f"{r['sample_s'][c]:.1f}" for c in defects) + " |")


if __name__ == "__main__":
    main()
