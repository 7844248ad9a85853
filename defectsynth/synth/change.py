"""Where a real defect image differs from good parts: the region cut-paste moves.

A mask marks the defect, not everything that changed. MVTec's `bent_lead` mask covers where the bent
lead is now, not where the straight lead was; pasting only the mask onto a good part leaves the
straight lead in place and adds a loose fragment. So the defect image is registered to the good
training images (phase correlation of the whole picture, then half-pixel steps), and the change region
is where it differs from every one of the closest few, near the annotated mask. Taking the minimum over
several good images, each a pixel or two either way, lets ordinary part-to-part variation (lead shape,
lighting, hole positions) pass as good; only what no good part shows is change.

Registration is judged by how much of the image away from the mask still differs after it: a part
that is not at the same place and angle from image to image, or a texture, fails that test and the
caller falls back to the mask alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from defectsynth.io import read_image
from defectsynth.synth.part import PartModel, _disk, _dist, _lab, translate

CANDIDATES = 64  # good images considered; the closest REFERENCES of them are compared pixel by pixel
REFERENCES = 5
NEAR = 0.12  # change is looked for within this share of the image side around the annotated mask
THRESHOLD = 28.0  # LAB distance above which a pixel differs from a good part
STRAY_LIMIT = 0.04  # registration is unreliable when more of the image than this differs away from the mask
SEARCH_PX = 1  # search around the phase-correlation shift, in half work pixels
TOLERANCE_PX = 2  # a good image shifted this far (work pixels) still counts as showing the same thing


@dataclass
class Change:
    region: np.ndarray  # bool, image size: the change region united with the annotated mask
    reference: str  # the good training image closest to the defect image after registration
    reliable: bool  # False: registration failed, region is the annotated mask only
    stray: float  # share of the image away from the mask that still differs (the reliability measure)


def _touching(mask: np.ndarray, seed: np.ndarray) -> np.ndarray:
    """The connected regions of `mask` that overlap `seed`."""
    _, labels = cv2.connectedComponents(mask.astype(np.uint8))
    hit = np.unique(labels[seed & (mask > 0)])
    return np.isin(labels, hit[hit > 0])


class ChangeFinder:
    """Change regions of defect images against the good training images of one category."""

    def __init__(self, good_paths: list[str], part: PartModel):
        self.part = part
        idx = np.linspace(0, len(good_paths) - 1, min(CANDIDATES, len(good_paths))).round().astype(int)
        self.paths = [good_paths[i] for i in sorted(set(idx.tolist()))]
        smalls = [part._small(read_image(p)) for p in self.paths]
        keep = [i for i, s in enumerate(smalls) if s.shape == smalls[0].shape]
        self.paths = [self.paths[i] for i in keep]
        self.labs = [_lab(smalls[i]) for i in keep]
        self.grays = [self.labs[i][:, :, 0] for i in range(len(keep))]
        h, w = smalls[0].shape[:2]
        self.window = cv2.createHanningWindow((w, h), cv2.CV_32F)

    def find(self, image: np.ndarray, mask: np.ndarray) -> Change:
        small = self.part._small(image)
        h, w = image.shape[:2]
        work = small.shape[:2]
        side = min(work)
        msmall = cv2.resize(mask.astype(np.uint8), work[::-1], interpolation=cv2.INTER_AREA) > 0
        if not msmall.any():
            msmall = cv2.resize(mask.astype(np.uint8) * 255, work[::-1], interpolation=cv2.INTER_LINEAR) > 0
        near = cv2.dilate(msmall.astype(np.uint8), _disk(NEAR * side)) > 0
        away = ~near
        lab = _lab(small)
        gray = lab[:, :, 0]
        # the whole image is registered (the board dominates it); the part must then match by itself,
        # so the closest images are those whose part sits on the board as this one's does
        scored = []
        for k, ggray in enumerate(self.grays):
            (sx, sy), _ = cv2.phaseCorrelate(ggray, gray, self.window)
            moved = translate(self.labs[k], sy, sx)
            scored.append((float(np.median(_dist(lab, moved)[away][::5])), k, sy, sx))
        scored.sort(key=lambda s: s[0])
        refined = []
        for _err, k, sy, sx in scored[:3 * REFERENCES]:  # the best few, nudged by half pixels
            best = None
            for dy in range(-SEARCH_PX, SEARCH_PX + 1):
                for dx in range(-SEARCH_PX, SEARCH_PX + 1):
                    moved = translate(self.labs[k], sy + dy / 2, sx + dx / 2)
                    err = float(np.median(_dist(lab, moved)[away][::5]))
                    if best is None or err < best[0]:
                        best = (err, k, moved)
            refined.append(best)
        closest = sorted(refined, key=lambda s: s[0])[:REFERENCES]
        # a pixel is changed when it differs from every close good image, each a pixel or two either way
        diff = np.full(work, np.inf, np.float32)
        for _err, _k, moved in closest:
            for dy in range(-TOLERANCE_PX, TOLERANCE_PX + 1):
                for dx in range(-TOLERANCE_PX, TOLERANCE_PX + 1):
                    diff = np.minimum(diff, _dist(lab, translate(moved, dy, dx)))
        changed = (diff > THRESHOLD).astype(np.uint8)
        changed = cv2.morphologyEx(changed, cv2.MORPH_OPEN, _disk(1))
        stray = float(changed[away].mean()) if away.any() else 0.0
        reference = self.paths[closest[0][1]]
        annotated = mask.astype(bool)
        if stray > STRAY_LIMIT or not self.part.found:
            return Change(annotated, reference, False, stray)
        changed = cv2.morphologyEx(changed, cv2.MORPH_CLOSE, _disk(side / 128))
        # the changed blobs that reach the annotated defect, cut to its neighbourhood
        touch = cv2.dilate(msmall.astype(np.uint8), _disk(side / 24)) > 0
        region = _touching(changed, touch) & near
        big = cv2.resize(region.astype(np.uint8) * 255, (w, h), interpolation=cv2.INTER_LINEAR) > 127
        return Change(big | annotated, reference, True, stray)
