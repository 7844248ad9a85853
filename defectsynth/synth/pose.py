"""Object-pose defects (MVTec's `misplaced`): the part missing, rotated or shifted on a good image.

The part is segmented with PartModel (defectsynth/synth/part.py). Where the part was, the background
is rebuilt from the image itself, shifted by whole periods of its own pattern (a perforated board
repeats every few millimetres), with cv2.inpaint for what that cannot reach. The moved part is pasted
back with a feathered edge. The mask is the union of where the part should be and where it is.

A part that lies at any angle (synth/partpose.py measures that from the good images) is found by its
own outline instead, and turning or moving it makes no defect: for it, `rotated` and `shifted` give way
to `flipped`, the part mirrored across its own axis in place (a nut turned upside down), which is a
defect unless the part is mirror-symmetric; `missing` stays.
"""

from __future__ import annotations

from collections.abc import Iterator

import cv2
import numpy as np

from defectsynth.data.layout import GOOD
from defectsynth.data.manifest import Row
from defectsynth.errors import DefectsynthError
from defectsynth.io import read_image
from defectsynth.synth.base import Generator, Sample
from defectsynth.synth.cutpaste import alpha_blend
from defectsynth.synth.part import PartModel, _disk
from defectsynth.synth.partpose import PartPoses, transfer_matrix
from defectsynth.synth.partpose import Pose as PoseOf
from defectsynth.synth.registry import register_generator

MODES = ("missing", "rotated", "shifted", "flipped")
FREE_MODES = ("missing", "flipped")  # the modes that are defects for a part lying at any angle


@register_generator("pose")
class Pose(Generator):
    def __init__(self, modes: dict[str, float] | None = None, max_angle: float = 35.0, quarter_turns: float = 0.3,
                 max_shift: float = 0.35, **_ignored):
        modes = modes or {"missing": 1.0, "rotated": 1.0, "shifted": 1.0}
        unknown = [m for m in modes if m not in MODES]
        if unknown:
            raise DefectsynthError(f"pose mode {unknown[0]!r} is unknown; use some of: {', '.join(MODES)}")
        total = sum(modes.values())
        # rotated: mostly tilts up to max_angle, sometimes turned by 90/180/270 degrees as in MVTec's images
        self.config = dict(modes={m: v / total for m, v in modes.items()}, max_angle=max_angle,
                           quarter_turns=quarter_turns, max_shift=max_shift)
        self.goods: list[str] = []
        self.part: PartModel | None = None
        self.poses: PartPoses | None = None
        self.modes = dict(self.config["modes"])  # those that make a defect on this category (fit)

    def fit(self, rows: list[Row]) -> None:
        self.goods = [r.path for r in rows if r.label == GOOD]
        if not self.goods:
            raise DefectsynthError("pose needs good training images (train/good is empty)")
        self.part = PartModel.from_paths(self.goods)
        self.poses = PartPoses.from_paths(self.goods)
        self.modes = dict(self.config["modes"])
        if self.poses.kind == "rotating":
            # a mirrored part is a defect only when it is not mirror-symmetric and not seen both ways
            free = [m for m in FREE_MODES if not (m == "flipped" and self.poses.flips)]
            self.modes = {m: 1 / len(free) for m in free}
        elif "flipped" in self.modes:
            raise DefectsynthError(f"pose mode 'flipped' needs a part that lies at any angle; {self.poses.describe()}")

    def notes(self, label: str) -> list[str]:
        if self.poses is None or self.poses.kind != "rotating":
            return []
        return [f"pose {label}: {self.poses.describe()}; a turned or moved part is no defect here, so only: "
                f"{', '.join(self.modes)}"]

    def sample(self, label: str, n: int, rng: np.random.Generator) -> Iterator[Sample]:
        c = self.config
        names = list(self.modes)
        free = self.poses is not None and self.poses.kind == "rotating"
        for _ in range(n):
            mode = names[rng.choice(len(names), p=[self.modes[m] for m in names])]
            good_path = self.goods[rng.integers(len(self.goods))]
            good = read_image(good_path)
            h, w = good.shape[:2]
            side = min(h, w)
            if free:  # no usual place: the part is where its own outline is
                part = cv2.dilate(self.poses.foreground(good).astype(np.uint8), _disk(max(1, side // 128))) > 0
                where = part
            else:
                part = self.part.region(good, grow=max(1, side // 128), usual=False)
                where = self.part.extend(good, part | self.part.usual_place(good))
            where = cv2.dilate(where.astype(np.uint8), _disk(side / 64)) > 0
            background = self.part.fill(good, where)
            params = {"mode": mode, "good": good_path}
            if mode == "missing":
                image, moved = background, np.zeros((h, w), bool)
            else:
                ys, xs = np.nonzero(part)
                cy, cx = ys.mean(), xs.mean()
                if mode == "flipped":  # mirrored across its own axis, in place
                    pose = self.poses.pose(good_path, good)
                    mirror = PoseOf(pose.cx, pose.cy, pose.angle, not pose.flip)
                    angle, dy, dx = 0.0, 0.0, 0.0
                elif mode == "rotated":
                    if rng.random() < c["quarter_turns"]:
                        angle = float(rng.choice([90.0, 180.0, 270.0]) + rng.normal(0, 3))
                    else:
                        angle = float(rng.choice([-1, 1]) * rng.uniform(10, c["max_angle"]))
                    dy = dx = 0.0
                else:
                    angle = float(rng.normal(0, 3))
                    size = np.array([np.ptp(ys), np.ptp(xs)], float)
                    theta = rng.uniform(0, 2 * np.pi)
                    dy, dx = (size * rng.uniform(0.15, c["max_shift"]) * [np.sin(theta), np.cos(theta)]).tolist()
                m = cv2.getRotationMatrix2D((float(cx), float(cy)), angle, 1.0)
                m[:, 2] += (dx, dy)
                if mode == "flipped":
                    m = transfer_matrix(pose, mirror)
                warped = cv2.warpAffine(good, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
                moved = cv2.warpAffine(part.astype(np.uint8), m, (w, h), flags=cv2.INTER_NEAREST) > 0
                image = background
                if moved.any():  # else the part was moved out of the picture: only its absence shows
                    ys, xs = np.nonzero(moved)
                    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
                    image = alpha_blend(background, warped[y0:y1, x0:x1], moved[y0:y1, x0:x1], y0, x0,
                                        feather=max(0.5, side / 512))
                params.update(angle=round(angle, 2), shift=[round(dy, 1), round(dx, 1)])
            mask = where | moved
            yield Sample(image=image, mask=mask, label=label, parents=[good_path], params={**params, **c})
