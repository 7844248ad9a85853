"""Golden-template comparison as a model input: where an image differs from every close good part.

An inspector compares a part with good ones; a small from-scratch network given only the picture has
to learn what "good" looks like from a few hundred images and misses a 3 px lead that is gone. So
for a part that sits at the same place in every image, each image gets one more channel: its
distance (LAB) to the closest of a few good training images (those that look closest to it at a coarse
size, out of up to POOL good training images) after registering it to them (phase correlation), each
shifted a pixel either way, so that ordinary part-to-part variation reads as good;
averaged over a small neighbourhood (WINDOW) per good image, and the good image that matches that
neighbourhood best gives the pixel its distance and lightness difference (a part that lies at any
angle, turned onto each good image first, is compared pixel by pixel). A pixel-by-pixel minimum over
the good images (the first version) found board in one of them wherever their leads lie a pixel or two
apart, so a missing lead hardly showed (README, "Compared per neighbourhood"). The same channel is
computed for every image the model sees: training, calibration, held-out and `predict` inputs alike,
against the same good training images; an image is never compared with itself or with the good images
it was made from, so a training image looks to the channel as a new one would.

    reference = Reference(good_paths, size=128, cache=cache)
    channel = reference.difference(path, exclude={path})  # size x size uint8
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import cv2
import numpy as np
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from defectsynth.data.cache import ImageCache
from defectsynth.data.manifest import Row
from defectsynth.errors import DefectsynthError
from defectsynth.io import read_image
from defectsynth.synth.part import _dist, _lab, translate
from defectsynth.synth.partpose import PartPoses, transfer_matrix
from defectsynth.workers import auto_workers, worker_pool

CANDIDATES = 32  # good images registered to each image at full size
POOL = 256  # good training images a fixed part's CANDIDATES are chosen from by a COARSE look (spread when more)
COARSE = 32  # side (px) of that look: each pool image registered to the image and ranked by its median distance
CLOSEST = 5  # of them, compared pixel by pixel; 3 scored better alone but trained worse (README)
TOLERANCE_PX = 1  # each compared good image also shifted this far, so a 1 px misregistration is not change
SCALE = 2.0  # LAB distance per uint8 step above 127 is halved: 0-127 keeps full resolution
CHANNELS = 2  # the distance, and the signed lightness difference to the good image that came closest
MEAN, STD = (0.08, 0.5), (0.12, 0.06)  # of each channel in [0, 1] on good parts, for the network's input
CHOICES = ("auto", "on", "off")
WINDOW = 0.04  # side (share of the image side) of the neighbourhood a fixed part's good images are compared over
COMPARISON = {"channels": CHANNELS, "closest": CLOSEST, "tolerance_px": TOLERANCE_PX, "candidates": CANDIDATES,
              "coarse": COARSE}  # a saved model must match


def _settings(comparison: dict) -> str:
    window = comparison.get("window")
    return (f"{comparison['channels']} channel(s), the closest {comparison['closest']} of "
            f"{comparison['candidates']} good images (coarse look {comparison['coarse']} px) "
            f"±{comparison['tolerance_px']} px, " + (f"over {window:g} of the side" if window else "pixel by pixel"))


def _encode(distance: np.ndarray, lightness: np.ndarray) -> np.ndarray:
    """2 x H x W uint8: the distance (most good pixels lie under 30 and defects reach 150+: the low range
    kept exact, the top compressed) and the lightness difference, 128 = none (bright metal where a good
    part has dark board is above, board where a lead should be below)."""
    d = np.where(distance <= 127, distance, 127 + (distance - 127) / SCALE)
    signed = 128 + lightness / 2
    return np.clip(np.round(np.stack([d, signed])), 0, 255).astype(np.uint8)


class Reference:
    """The difference channel of images against good training images, at the model's input size."""

    def __init__(self, good_paths: list[str], size: int, cache: ImageCache | None = None, spread: bool = True,
                 follow_pose: bool = False):
        """`spread`: keep at most POOL (a fixed part) or CANDIDATES (a part that lies at any angle) of the
        sorted `good_paths`, spread over them; False: use them as given. `follow_pose`: for a part that
        lies at any angle, each good image is first turned and moved onto the part as it lies in the
        compared image (synth/partpose.py), then registered as for a fixed one."""
        if not good_paths:
            raise DefectsynthError("--reference on needs good training images to compare with; the split has none")
        paths = sorted(str(Path(p).resolve()) for p in good_paths)  # resolved, so exclusion sees through spellings
        # turning every good image onto each part would cost too much: a rotating part keeps CANDIDATES
        keep = CANDIDATES if follow_pose else POOL
        idx = np.linspace(0, len(paths) - 1, min(keep, len(paths))).round().astype(int) if spread \
            else np.arange(len(paths))
        self.paths = [paths[i] for i in sorted(set(idx.tolist()))]
        self.size, self.cache = size, cache
        goods = [self.read(p) for p in self.paths]
        self.labs = [_lab(g) for g in goods]
        self.window = cv2.createHanningWindow((size, size), cv2.CV_32F)
        self.follow_pose = follow_pose
        self.coarse = [] if follow_pose else [cv2.resize(lab, (COARSE, COARSE), interpolation=cv2.INTER_AREA)
                                              for lab in self.labs]
        self.coarse_window = cv2.createHanningWindow((COARSE, COARSE), cv2.CV_32F)
        # a part turned onto each good image is compared pixel by pixel: the neighbourhood blurred its small
        # scratches more than it helped (rotated demo, channel alone: image AUROC 0.988 -> 0.964)
        self.neighbourhood = 0.0 if follow_pose else WINDOW
        self.poses = PartPoses(goods) if follow_pose else None
        self.good_poses = [self.poses.pose(p, g) for p, g in zip(self.paths, goods, strict=True)] if follow_pose else []
        # the comparison settings (describe()) name the cache entries, so changing one is never served stale
        self.ident = hashlib.sha1(json.dumps(self.describe(), sort_keys=True).encode()).hexdigest()[:12]

    @classmethod
    def of_model(cls, config: dict, cache: ImageCache | None = None) -> Reference | None:
        """The reference a saved model (its config.json) was trained with, or None; a one-line error when
        its good images are gone."""
        saved = config.get("reference")
        if not saved:
            return None
        # saved before the coarse look: 32 good images, all registered, which a 32 px look over 32 keeps
        made = {"channels": saved.get("channels", 1), "closest": saved.get("closest"),
                "tolerance_px": saved.get("tolerance_px"), "window": saved.get("window", 0.0),
                "candidates": saved.get("candidates", 32), "coarse": saved.get("coarse", 32)}
        now = {**COMPARISON, "window": 0.0 if saved.get("follow_pose") else WINDOW}
        if made != now:
            raise DefectsynthError(f"this model's difference channels were made with {_settings(made)}; this "
                                   f"version of defectsynth makes them with {_settings(now)}: train the "
                                   "model again")
        missing = [p for p in saved["paths"] if not Path(p).is_file()]
        if missing:
            raise DefectsynthError(f"{missing[0]}: a good image this model compares every input with is gone "
                                   f"({len(missing)} of {len(saved['paths'])} missing); restore the category "
                                   "folder it was trained on, or train the model again")
        return cls(saved["paths"], config["size"], cache, spread=False, follow_pose=saved.get("follow_pose", False))

    def read(self, path: str) -> np.ndarray:
        """An image as the channel sees it: size x size, decoded through the cache when there is one."""
        if self.cache is not None:
            return self.cache.image(path, self.size)
        return cv2.resize(read_image(path), (self.size, self.size), interpolation=cv2.INTER_AREA)

    def describe(self) -> dict:
        """What a saved model needs to rebuild this channel (train/predict.py)."""
        return {"paths": self.paths, "follow_pose": self.follow_pose, **COMPARISON, "window": self.neighbourhood}

    def difference(self, path: str, exclude: set[str] | frozenset = frozenset()) -> np.ndarray:
        """CHANNELS x size x size uint8: how the image differs from the closest good images (see _encode),
        leaving out the good images in `exclude` (the image itself, the good images it was made from)."""
        skip = self._skip(exclude)
        if self.cache is None:
            return self.compare(self.read(path), skip)
        return self.cache.derived(path, self.size, self._kind(skip), lambda: self.compare(self.read(path), skip))

    def _skip(self, exclude: set[str] | frozenset) -> list[str]:
        return sorted(set(self.paths) & {str(Path(e).resolve()) for e in exclude})

    def _kind(self, skip: list[str]) -> str:
        return f"reference{CHANNELS}-{self.ident}-{'|'.join(skip)}"

    def warm(self, rows: list[Row], progress: bool = True) -> None:
        """Compute and cache now, in worker processes (workers.auto_workers), the channels stack(rows) will
        read: a split's new synthetic images are hundreds, each compared with CANDIDATES good images on
        one core. Without a cache, or with too few missing to be worth a pool, stack() computes them as
        it goes."""
        if self.cache is None:
            return
        jobs = {}  # one per cache entry: (resolved path, kind), as difference() names them
        for r in rows:
            exclude = frozenset({r.path, *r.parent_paths})
            key = (str(Path(r.path).resolve()), self._kind(self._skip(exclude)))
            if key not in jobs and not self.cache.has(r.path, self.size, key[1]):
                jobs[key] = (r.path, exclude)
        workers = auto_workers(len(jobs))
        if workers < 2:
            return
        columns = (TextColumn("difference channels"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
        with Progress(*columns, disable=not progress, transient=True) as bar, \
                worker_pool(workers, _init_worker, self) as pool:
            task = bar.add_task("reference", total=len(jobs))
            for _ in pool.map(_difference, list(jobs.values()), chunksize=8):
                bar.advance(task)

    def compare(self, image: np.ndarray, skip: list[str] = ()) -> np.ndarray:
        """The difference channels of a size x size image, leaving out the good images in `skip`
        (resolved paths)."""
        lab = _lab(image)
        gray = lab[:, :, 0]
        pose = self.poses.measure(image) if self.poses is not None else None
        scored = []
        for k in self.candidates(lab, set(skip)):
            ref = self.labs[k]
            if pose is not None and pose.found and self.good_poses[k].found:
                ref = cv2.warpAffine(ref, transfer_matrix(self.good_poses[k], pose), gray.shape[::-1],
                                     flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            (sx, sy), _ = cv2.phaseCorrelate(ref[:, :, 0], gray, self.window)
            moved = translate(ref, sy, sx)
            scored.append((float(np.median(_dist(lab, moved)[::2, ::2])), len(scored), moved))
        scored.sort(key=lambda s: s[:2])
        distances, lightnesses = [], []
        for _err, _k, moved in scored[:CLOSEST]:
            distance = np.full(gray.shape, np.inf, np.float32)
            lightness = np.zeros(gray.shape, np.float32)
            for dy in range(-TOLERANCE_PX, TOLERANCE_PX + 1):
                for dx in range(-TOLERANCE_PX, TOLERANCE_PX + 1):
                    good = translate(moved, dy, dx)
                    d = _dist(lab, good)
                    closer = d < distance
                    distance = np.where(closer, d, distance)
                    lightness = np.where(closer, gray - good[:, :, 0], lightness)
            distances.append(distance)
            lightnesses.append(lightness)
        # per neighbourhood, not per pixel: a pixel-wise minimum over the good images finds board in one
        # of them wherever their leads lie a pixel or two apart, so a lead that is gone shows nothing
        side = max(1, round(self.neighbourhood * min(gray.shape))) | 1
        local = np.stack([cv2.blur(d, (side, side)) for d in distances])
        best = local.argmin(axis=0)[None]
        return _encode(np.take_along_axis(local, best, 0)[0], np.take_along_axis(np.stack(lightnesses), best, 0)[0])

    def candidates(self, lab: np.ndarray, skip: set[str]) -> list[int]:
        """Indices of the good images to register at full size: of a fixed part's pool, the CANDIDATES that
        look closest at COARSE px. Spread over the sorted training goods (the first version), the closest
        ones often sat higher or lower on the board than the compared part, whose leads then lit up as
        changed (real transistor, channel alone: image AUROC 0.890 -> 0.938, README)."""
        ks = [k for k, path in enumerate(self.paths) if path not in skip]
        if self.follow_pose or len(ks) <= CANDIDATES:
            return ks
        small = cv2.resize(lab, (COARSE, COARSE), interpolation=cv2.INTER_AREA)
        errors = []
        for k in ks:
            (sx, sy), _ = cv2.phaseCorrelate(self.coarse[k][:, :, 0], small[:, :, 0], self.coarse_window)
            errors.append(float(np.median(_dist(small, translate(self.coarse[k], sy, sx)))))
        return sorted(ks[i] for i in np.argsort(errors, kind="stable")[:CANDIDATES])

    def stack(self, rows: list[Row]) -> np.ndarray:
        """N x CHANNELS x size x size uint8 difference channels of `rows`, each compared without itself
        and without the images it was made from."""
        out = np.empty((len(rows), CHANNELS, self.size, self.size), np.uint8)
        for i, r in enumerate(rows):
            out[i] = self.difference(r.path, {r.path, *r.parent_paths})
        return out


_REFERENCE: Reference | None = None  # worker state: the reference of the pool's process, set once


def _init_worker(reference: Reference) -> None:
    global _REFERENCE
    _REFERENCE = reference  # (no cv2.setNumThreads here: in a forked worker it waits for the parent's threads)


def _difference(job: tuple[str, frozenset]) -> None:
    path, exclude = job
    _REFERENCE.difference(path, exclude)  # cached (atomically) for the parent's stack() to read


def reference_channels(config: dict) -> int:
    """How many difference channels a saved model (its config.json) takes."""
    saved = config.get("reference")
    return saved.get("channels", 1) if saved else 0


def use_reference(choice: str, kind: str) -> bool:
    """Whether the model gets the difference channel: `auto` for a part (`kind` from synth/partpose.py:
    fixed, or rotating, compared after turning the good parts onto it); a texture has no frame to
    compare in."""
    if choice not in CHOICES:
        raise DefectsynthError(f"--reference {choice!r} is unknown; use one of: {', '.join(CHOICES)}")
    return choice == "on" or (choice == "auto" and kind in ("fixed", "rotating"))
